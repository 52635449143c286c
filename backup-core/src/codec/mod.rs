//! Pure stream transforms: compression, encryption (age) and checksums. No storage or database knowledge.

pub(crate) mod buffers;
pub mod checksum;
pub mod compress;
pub mod encrypt;
#[cfg(feature = "mysql")]
pub(crate) mod md5_lanes;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;

/// The currency between pipeline stages: a fallible stream of byte chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;
