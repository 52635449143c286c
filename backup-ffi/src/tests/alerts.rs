//! The CLI's alerts through the C ABI: decided alike, undeliverable ones reported, returned to
//! the caller with their texts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::undocumented_unsafe_blocks)]

use super::*;

#[test]
fn the_same_alerts_as_the_cli_once_per_change_and_guard_rollbacks_with_their_command() {
    use dbbackup_tests::receiver::{http_server, take_posts};
    let (url, seen) = http_server();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    let source = format!("sqlite://{}", src.display());
    let alerts =
        json!({"webhook_url": format!("{url}/hook"), "DBBACKUP_STATE_DIR": dir.path().join("state")});
    let h = Handle::new();
    // A failing create, twice: one FAILING alert (state kept beside the backups).
    for _ in 0..2 {
        let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "alerts": alerts}));
        assert_eq!(code, DBB_NOT_FOUND, "{report}");
    }
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "failing twice must alert once: {hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("FAILING: create (database a.sqlite)") && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(
        (hooks[0]["outcome"].as_str(), hooks[0]["alerts"][0]["transition"].as_str()),
        (Some("failure"), Some("failing"))
    );
    // It works again: one RECOVERED.
    make_db(&src, 1);
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "alerts": alerts}));
    assert_eq!(code, DBB_OK, "{report}");
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0]["message"].as_str().unwrap().starts_with("RECOVERED: create"), "{hooks:?}");
    // status: never verified is a failing check, alerted once, its state in the report.
    for round in 0..2 {
        let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": alerts}));
        assert_eq!(code, DBB_UNHEALTHY, "{report}");
        let c = report["checks"].as_array().unwrap().iter().find(|c| c["ok"] == false).unwrap().clone();
        assert_eq!(c["state"], "failing", "{report}");
        let hooks = take_posts(&seen, "/hook");
        assert_eq!(hooks.len(), 1 - round, "{hooks:?}");
        if round == 0 {
            assert!(hooks[0]["message"].as_str().unwrap().starts_with("FAILING: "), "{hooks:?}");
            assert_eq!(hooks[0]["outcome"], "unhealthy");
        }
    }
    // A guarded command that fails: the rollback alert names the command given in command_line.
    let text = CString::new(
        json!({"source": source, "repo": repo, "alerts": alerts, "command_line": "php artisan migrate --force"}).to_string(),
    )
    .unwrap();
    let data = (src.clone(), 3);
    let mut out: *mut c_char = std::ptr::null_mut();
    let code = unsafe {
        dbb_guard(h.0, text.as_ptr(), Some(command_exits_with), (&raw const data).cast_mut().cast(), &mut out)
    };
    assert_eq!(code, DBB_OK, "{}", take(out));
    let hooks = take_posts(&seen, "/hook");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let msg = hooks[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("ROLLED BACK: guarded command `php artisan migrate --force` failed (exit status 3)"),
        "{msg}"
    );
    assert_eq!(hooks[0]["details"]["rollback_succeeded"], true);
    // No alert settings: nothing sent; a typo in them: a usage error before anything runs.
    let (code, _) = h.call(dbb_status, &json!({"repo": repo}));
    assert_eq!(code, DBB_UNHEALTHY);
    assert!(take_posts(&seen, "/hook").is_empty());
    let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": {"slack_webhok": "x"}}));
    assert_eq!(code, DBB_USAGE, "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("slack_webhok"), "{report}");
}

#[test]
fn status_and_guard_alerts_that_cannot_be_delivered_are_in_the_report() {
    // Nothing listens on port 1: every alert fails to go out, and says so in `alert_warnings`,
    // as the CLI prints them (sent while the operation ran, not only after it).
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    make_db(&src, 1);
    let source = format!("sqlite://{}", src.display());
    let alerts = json!({"webhook_url": "http://127.0.0.1:1/hook", "state_dir": dir.path().join("state")});
    let h = Handle::new();
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo}));
    assert_eq!(code, DBB_OK, "{report}");
    let (code, report) = h.call(dbb_status, &json!({"repo": repo, "alerts": alerts}));
    assert_eq!(code, DBB_UNHEALTHY, "{report}");
    let w = report["alert_warnings"].as_array().unwrap_or_else(|| panic!("no alert_warnings: {report}"));
    assert!(w.iter().any(|w| w.as_str().unwrap().contains("webhook")), "{report}");
    let text = CString::new(json!({"source": source, "repo": repo, "alerts": alerts}).to_string()).unwrap();
    let data = (src.clone(), 3);
    let mut out: *mut c_char = std::ptr::null_mut();
    let code = unsafe {
        dbb_guard(h.0, text.as_ptr(), Some(command_exits_with), (&raw const data).cast_mut().cast(), &mut out)
    };
    let report = take(out);
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!(report["rolled_back"], true, "{report}");
    let w = report["alert_warnings"].as_array().unwrap_or_else(|| panic!("no alert_warnings: {report}"));
    assert!(w.iter().any(|w| w.as_str().unwrap().contains("webhook")), "{report}");
}

#[test]
fn return_alerts_hands_the_decided_alerts_back_with_their_texts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let src = dir.path().join("a.sqlite");
    let source = format!("sqlite://{}", src.display());
    let h = Handle::new();
    // Failing twice: the first failure returns one FAILING alert, the second none (state kept).
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_NOT_FOUND, "{report}");
    let returned = report["error"]["returned_alerts"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(returned.len(), 1, "{report}");
    let a = &returned[0];
    assert_eq!((a["command"].as_str(), a["outcome"].as_str()), (Some("create"), Some("failure")), "{a}");
    assert!(a["subject"].as_str().unwrap().starts_with("[dbbackup] create failure"), "{a}");
    let body = a["body"].as_str().unwrap();
    assert!(body.contains("FAILING: create") && body.contains("expected:   `create` succeeds"), "{body}");
    assert!(a["slack_text"].as_str().unwrap().contains("FAILING: create"), "{a}");
    assert_eq!(last_error()["returned_alerts"].as_array().map(Vec::len), Some(1));
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_NOT_FOUND, "{report}");
    assert_eq!(report["error"]["returned_alerts"], json!([]), "failing twice alerts once: {report}");
    // Recovering: the report carries one RECOVERED.
    make_db(&src, 1);
    let (code, report) = h.call(dbb_create, &json!({"source": source, "repo": repo, "return_alerts": true}));
    assert_eq!(code, DBB_OK, "{report}");
    assert_eq!(report["returned_alerts"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["returned_alerts"][0]["outcome"], "recovered", "{report}");
    // Without the option: no field; a non-boolean is a usage error.
    let (_, report) = h.call(dbb_list, &json!({"repo": repo}));
    assert!(report.get("returned_alerts").is_none(), "{report}");
    let (code, _) = h.call(dbb_list, &json!({"repo": repo, "return_alerts": "yes"}));
    assert_eq!(code, DBB_USAGE);
}
