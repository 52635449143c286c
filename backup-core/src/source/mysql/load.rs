//! The restore side's entry: [`MysqlLoader`] checks what the manifest gives the server and
//! opens a session in the mode asked for — [`Shadow`] (a shadow database swapped in, see
//! [`super::shadow`]) or [`InPlace`] (`--in-place`, see [`super::in_place`]). The session's
//! shared part is [`super::session`]; chunks load through [`super::infile`]; the lock, the
//! journal and the recovery of killed restores are [`super::swap`].

use async_trait::async_trait;

use super::conn::Server;
use super::in_place::InPlace;
use super::session;
use super::shadow::Shadow;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::model::{DatabaseUrl, Engine};
use crate::progress::Context;
use crate::source::{LoadOptions, LoadSession, Loader};

/// The restore side.
pub(crate) struct MysqlLoader {
    server: Server,
}

impl MysqlLoader {
    pub(crate) fn new(url: &DatabaseUrl) -> Result<Self> {
        Ok(MysqlLoader { server: Server::new(url)? })
    }
}

/// The manifest's `charset` and `collation` are pasted into `CREATE`/`ALTER DATABASE` as bare
/// names (they cannot be quoted there): a manifest is input from a repository, so anything but
/// a plain name is refused before the restore touches the server.
fn check_name_props(props: &std::collections::BTreeMap<String, serde_json::Value>) -> Result<()> {
    for key in ["charset", "collation"] {
        let Some(v) = props.get(key) else { continue };
        let ok = v.as_str().is_some_and(|n| {
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !ok {
            return Err(Error::UnsupportedFormat {
                what: "manifest".into(),
                reason: format!(
                    "database {key} {v} is not a character set or collation name; refusing to restore"
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl Loader for MysqlLoader {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    async fn begin(
        &self,
        manifest: &Manifest,
        opts: &LoadOptions,
        _ctx: &Context,
    ) -> Result<Box<dyn LoadSession>> {
        check_name_props(&manifest.properties)?;
        let (tables, props) = (manifest.tables.clone(), manifest.properties.clone());
        if opts.in_place {
            session::open::<InPlace>(&self.server, opts, tables, props).await
        } else {
            session::open::<Shadow>(&self.server, opts, tables, props).await
        }
    }

    async fn begin_script(&self, opts: &LoadOptions, _ctx: &Context) -> Result<Box<dyn LoadSession>> {
        if opts.tables.is_some() {
            return Err(Error::Unsupported(
                "--tables with a plain dump script: restore it whole into a scratch database, then copy the tables".into(),
            ));
        }
        if opts.in_place {
            session::open::<InPlace>(&self.server, opts, Vec::new(), Default::default()).await
        } else {
            session::open::<Shadow>(&self.server, opts, Vec::new(), Default::default()).await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_charset_and_collation_must_be_plain_names() {
        let props = |cs: &str| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("charset".to_string(), serde_json::json!(cs));
            m.insert("collation".to_string(), serde_json::json!("utf8mb4_unicode_ci"));
            m
        };
        assert!(super::check_name_props(&props("utf8mb4")).is_ok());
        for bad in ["utf8mb4; DROP DATABASE mysql", "utf8mb4 COLLATE x", "", "a'b", "x`"] {
            let e = super::check_name_props(&props(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{bad}: {e}");
        }
        let mut m = props("utf8mb4");
        m.insert("collation".into(), serde_json::json!(42));
        assert!(super::check_name_props(&m).is_err());
    }
}
