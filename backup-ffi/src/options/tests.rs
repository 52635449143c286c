//! The FFI options read like the CLI's flags.

use super::values::{Secs, Size};
use super::*;

#[test]
fn cli_flag_names_map_to_core_options() {
    let (common, a): (Common, CreateArgs) = parse(Some(
        r#"{"source":"sqlite:///x.db","repo":["/a","/b"],"compression":"gzip:6","jobs":3,
            "tag":"nightly,pre","password":"pw","timeout_ms":1500}"#,
    ))
    .unwrap();
    let o = a.into_core().unwrap();
    assert_eq!(o.repos, vec!["/a", "/b"]);
    assert_eq!(o.compression.to_string(), "gzip:6");
    assert_eq!(o.jobs, 3);
    assert_eq!(o.tags, vec!["nightly", "pre"]);
    assert_eq!(o.password.unwrap().expose(), "pw");
    assert_eq!(common.timeout, Some(Duration::from_millis(1500)));

    let (_, r): (Common, RestoreArgs) =
        parse(Some(r#"{"repo":"/a","backup":"tag:x","into":"sqlite:///y.db","force":true,"tables":"a,b"}"#))
            .unwrap();
    let r = r.into_core().unwrap();
    assert_eq!((r.backup.as_str(), r.force), ("tag:x", true));
    assert_eq!(r.tables, Some(vec!["a".to_string(), "b".to_string()]));

    let (_, v): (Common, VerifyArgs) = parse(Some(r#"{"repo":"/a","level":"quick"}"#)).unwrap();
    let v = v.into_core().unwrap();
    assert_eq!((v.backup.as_str(), v.level.as_str()), ("latest", "quick"));
}

#[test]
fn mistakes_are_usage_errors() {
    for (text, needle) in [
        (r#"{"repo":"/a","levle":"quick"}"#, "levle"),
        ("[1]", "JSON object"),
        ("{", "valid JSON"),
        (r#"{"repo":"/a","timeout_ms":-1}"#, "timeout_ms"),
    ] {
        let e = parse::<VerifyArgs>(Some(text)).unwrap_err();
        assert_eq!(e.kind().exit_code(), 2, "{text}");
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
    let (_, l): (Common, ListArgs) = parse(None).unwrap();
    assert!(l.into_core().unwrap_err().to_string().contains("repo is required"));
    let (_, l): (Common, ListArgs) = parse(Some(r#"{"repo":["/a","/b"]}"#)).unwrap();
    assert!(l.into_core().is_err());
}

#[test]
fn sizes_and_durations_like_the_cli() {
    assert_eq!(Size::Text("50GiB".into()).bytes().unwrap(), 50 << 30);
    assert_eq!(Size::Text("500MB".into()).bytes().unwrap(), 500_000_000);
    assert_eq!(Size::Bytes(7).bytes().unwrap(), 7);
    assert!(Size::Text("lots".into()).bytes().is_err());
    assert_eq!(Secs::Text("26h".into()).secs().unwrap(), 26 * 3600);
    assert_eq!(Secs::Text("1h 30m".into()).secs().unwrap(), 5400);
    assert_eq!(Secs::Text("7d".into()).secs().unwrap(), 7 * 86400);
    assert_eq!(Secs::Secs(5).secs().unwrap(), 5);
    assert!(Secs::Text("soon".into()).secs().is_err());
    let (_, p): (Common, PruneArgs) =
        parse(Some(r#"{"repo":"/a","keep_last":3,"dry_run":true,"orphan_grace":"1h"}"#)).unwrap();
    let p = p.into_core().unwrap();
    assert_eq!((p.policy.keep_last, p.dry_run, p.orphan_grace_secs), (Some(3), true, 3600));
    let (_, st): (Common, StatusArgs) = parse(Some(r#"{"repo":["/a","/b"],"max_age":"26h"}"#)).unwrap();
    let st = st.into_core().unwrap();
    assert_eq!((st.repos.len(), st.max_age_secs), (2, Some(93600)));
}

#[test]
fn engine_switches_reach_the_engine_options() {
    let (_, c): (Common, CreateArgs) =
        parse(Some(r#"{"source":"postgres://h/db","keep_owners":true,"no_definer":false}"#)).unwrap();
    let c = c.into_core().unwrap();
    assert_eq!(c.engine_options.pairs().iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["keep_owners"]);
    let (_, r): (Common, RestoreArgs) = parse(Some(
        r#"{"repo":"/a","into":"mysql://h/db","no_definer":true,"full_checksum":true,"keep_owners":false}"#,
    ))
    .unwrap();
    let r = r.into_core().unwrap();
    assert_eq!(
        r.engine_options.pairs().iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["full_checksum", "no_definer"]
    );
    assert!(r.engine_options.pairs().iter().all(|(_, v)| v == "true"));
    let (_, r): (Common, RestoreArgs) = parse(Some(r#"{"repo":"/a","into":"sqlite:x"}"#)).unwrap();
    assert!(r.into_core().unwrap().engine_options.pairs().is_empty());
    let (_, g): (Common, GuardArgs) = parse(Some(
        r#"{"source":"mysql://h/db","repo":"/a","lock_timeout":"5s","connect_timeout":"10","statement_timeout":"1h"}"#,
    ))
    .unwrap();
    let g = g.into_core().unwrap();
    assert!(!g.staged_rollback, "off unless asked");
    let o = g.engine_options;
    assert_eq!(
        o.pairs().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        ["connect_timeout=10", "lock_timeout=5s", "statement_timeout=1h"]
    );
    let (_, g): (Common, GuardArgs) =
        parse(Some(r#"{"source":"mysql://h/db","repo":"/a","staged_rollback":true}"#)).unwrap();
    assert!(g.into_core().unwrap().staged_rollback, "--staged-rollback from the FFI's options");
}
