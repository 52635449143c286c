//! What opening a repository gives: the store, its key prefix, its display name, what it can
//! do and how its unfinished uploads are found.

use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::Result;
use crate::storage::upload::Uploads;

/// What a store can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Conditional create (`If-None-Match: *`). Backblaze B2 lacks it.
    pub conditional_put: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities { conditional_put: true }
    }
}

/// A store opened from a URL: what a [`Target`](crate::storage::Target) wraps.
pub(crate) struct OpenedStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    pub(crate) display: String,
    pub(crate) caps: Capabilities,
    /// `DBBACKUP_STORE_LEASE_TTL`, when set.
    pub(crate) lease_ttl: Option<std::time::Duration>,
    /// How the store's unfinished uploads are found and removed.
    pub(crate) uploads: Uploads,
}

pub(super) fn opened(
    store: Arc<dyn ObjectStore>,
    prefix: &str,
    display: String,
    caps: Capabilities,
    uploads: Uploads,
) -> Result<OpenedStore> {
    Ok(OpenedStore { store, prefix: prefix.to_string(), display, caps, lease_ttl: None, uploads })
}
