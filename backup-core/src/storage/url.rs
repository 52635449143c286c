//! Repository URLs -> object stores. The one place a repository is built from a string.
//!
//! Accepted: a plain path or `file:///path` (local directory, created if missing), `memory://NAME`
//! (an in-process store shared by every `Target` opened with the same NAME: for tests and the FFI).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::target::{Capabilities, Target};
use crate::error::{Error, Result};
use crate::model::redact_str;

/// A parsed repository locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// Local directory.
    Local {
        /// Absolute or relative directory.
        path: std::path::PathBuf,
    },
    /// Process-local in-memory store.
    Memory {
        /// Registry name.
        name: String,
    },
}

impl RepoUrl {
    /// Parses a repository URL.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::InvalidInput("empty repository URL".into()));
        }
        if let Some(rest) = s.strip_prefix("memory://") {
            return Ok(RepoUrl::Memory { name: rest.trim_matches('/').to_string() });
        }
        if s == "memory:" {
            return Ok(RepoUrl::Memory { name: String::new() });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::InvalidInput(format!(
                    "bad repository URL {s}: file:// needs an absolute path (file:///srv/backups)"
                )));
            }
            return Ok(RepoUrl::Local { path: rest.into() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::InvalidInput(format!(
                "unsupported repository scheme {scheme:?} in {} (this build knows: a path, file://, memory://)",
                redact_str(s)
            )));
        }
        Ok(RepoUrl::Local { path: s.into() })
    }
}

fn memory_registry() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static REG: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    REG.get_or_init(Mutex::default)
}

/// Opens the repository at `url`. Local directories are created if missing.
pub fn open(url: &str) -> Result<Target> {
    match RepoUrl::parse(url)? {
        RepoUrl::Local { path } => {
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("create repository directory {}", path.display()), e))?;
            let store = LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| Error::storage(format!("open repository {}", path.display()), e))?
                .with_automatic_cleanup(true);
            let display = path.display().to_string();
            Ok(Target::new(Arc::new(store), "", display, Capabilities::default()))
        }
        RepoUrl::Memory { name } => {
            let store = {
                let mut reg = memory_registry().lock().unwrap_or_else(|p| p.into_inner());
                reg.entry(name.clone()).or_insert_with(|| Arc::new(InMemory::new())).clone()
            };
            let store: Arc<dyn ObjectStore> = store;
            Ok(Target::new(store, "", format!("memory://{name}"), Capabilities::default()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(RepoUrl::parse("/srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("rel/b").unwrap(), RepoUrl::Local { path: "rel/b".into() });
        assert_eq!(RepoUrl::parse("file:///srv/b").unwrap(), RepoUrl::Local { path: "/srv/b".into() });
        assert_eq!(RepoUrl::parse("memory://t1").unwrap(), RepoUrl::Memory { name: "t1".into() });
        assert!(RepoUrl::parse("file://rel").is_err());
        assert!(RepoUrl::parse("").is_err());
        let e = RepoUrl::parse("ftp://u:pw@h/x").unwrap_err().to_string();
        assert!(e.contains("ftp") && !e.contains("pw"), "{e}");
    }
}
