//! Where backups live: repositories built from URLs ([`url`]) and the [`Target`] wrapper that
//! gives the use-cases streaming, bounded-memory, create-only access to them.

#[cfg(any(test, feature = "testing"))]
pub mod fault;
#[cfg(feature = "cloud")]
pub mod http;
pub mod target;
pub mod upload;
pub mod url;

pub use target::Target;
pub use upload::OpenUpload;
