//! Hostile bytes into the zstd and gzip stream decoders: an error or some bytes, never a panic,
//! a hang or an unbounded allocation (the zstd window is capped).
#![no_main]

use std::sync::OnceLock;

use backup_core::{Codec, decompress};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Zstd, Codec::Gzip] {
        let input = futures::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(data))]).boxed();
        rt().block_on(async {
            let mut s = decompress(input, codec, "fuzz".into());
            let mut total = 0usize;
            while let Some(item) = s.next().await {
                match item {
                    Ok(b) => total += b.len(),
                    Err(_) => break,
                }
                // A hostile frame may claim a huge output; stop reading well before memory matters.
                if total > 64 << 20 {
                    break;
                }
            }
        });
    }
});
