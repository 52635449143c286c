//! MD5 (RFC 1321) of many short messages at once: [`LANES`] messages run through the compression
//! function side by side, one message per 32-bit lane of `wide`'s SIMD vectors (SSE2 on every
//! x86-64, AVX2 when the build targets it, NEON on aarch64; no `unsafe` here). One message's MD5
//! is a chain of dependent steps that leaves most of a core idle; independent lanes fill it.
//! (Plain arrays of lanes are not vectorised by the compiler for baseline x86-64: it runs them as
//! 8 scalar chains, about half the speed.) Each lane has its own message, length and padding: when a
//! lane's message ends, its digest is handed out and the lane takes the next message, so lanes
//! of different lengths never wait for each other until the last messages drain. The `md5` crate
//! (the scalar reference) digests the few messages that cannot fill the lanes.

/// Messages hashed side by side: two 128-bit vectors per state word with SSE2, two independent
/// dependency chains per step.
pub(crate) const LANES: usize = 8;

/// One state or message word of every lane.
type W = wide::u32x8;

/// Fewer messages than this go through the scalar `md5` crate.
const SCALAR_BELOW: usize = 3;

type V = [u32; LANES];

/// The sines table: `K[i] = floor(|sin(i + 1)| * 2^32)`.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// The initial state (A, B, C, D).
const IV: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

#[inline(always)]
fn f(x: W, y: W, z: W) -> W {
    // (x & y) | (!x & z), with one operation less
    z ^ (x & (y ^ z))
}

#[inline(always)]
fn g(x: W, y: W, z: W) -> W {
    // (x & z) | (y & !z)
    y ^ (z & (x ^ y))
}

#[inline(always)]
fn h(x: W, y: W, z: W) -> W {
    x ^ y ^ z
}

#[inline(always)]
fn i(x: W, y: W, z: W) -> W {
    y ^ (x | (z ^ W::splat(u32::MAX)))
}

/// One step in every lane: `a = b + ((a + fun(b, c, d) + m + k) <<< s)` (additions mod 2^32).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step(a: &mut W, b: &W, c: &W, d: &W, m: &W, k: u32, s: u32, fun: fn(W, W, W) -> W) {
    let t = *a + fun(*b, *c, *d) + W::splat(k) + *m;
    *a = *b + ((t << s) | (t >> (32 - s)));
}

/// The compression function on one 64-byte block per lane (`w[j][lane]`: the block's word `j`,
/// little-endian), added into `state`.
#[inline(never)]
fn compress(state: &mut [V; 4], w: &[V; 16]) {
    let [mut a, mut b, mut c, mut d] = state.map(W::from);
    let w = w.map(W::from);
    // Four steps with the registers rotating as in RFC 1321 section 3.4: [abcd k s i], [dabc ...],
    // [cdab ...], [bcda ...]; `$n` is the first step's index (0-based) into K.
    macro_rules! four {
        ($fun:ident, $n:expr, $k0:expr, $k1:expr, $k2:expr, $k3:expr, $s0:expr, $s1:expr, $s2:expr, $s3:expr) => {
            step(&mut a, &b, &c, &d, &w[$k0], K[$n], $s0, $fun);
            step(&mut d, &a, &b, &c, &w[$k1], K[$n + 1], $s1, $fun);
            step(&mut c, &d, &a, &b, &w[$k2], K[$n + 2], $s2, $fun);
            step(&mut b, &c, &d, &a, &w[$k3], K[$n + 3], $s3, $fun);
        };
    }
    // Round 1: word i.
    four!(f, 0, 0, 1, 2, 3, 7, 12, 17, 22);
    four!(f, 4, 4, 5, 6, 7, 7, 12, 17, 22);
    four!(f, 8, 8, 9, 10, 11, 7, 12, 17, 22);
    four!(f, 12, 12, 13, 14, 15, 7, 12, 17, 22);
    // Round 2: word (5i + 1) mod 16.
    four!(g, 16, 1, 6, 11, 0, 5, 9, 14, 20);
    four!(g, 20, 5, 10, 15, 4, 5, 9, 14, 20);
    four!(g, 24, 9, 14, 3, 8, 5, 9, 14, 20);
    four!(g, 28, 13, 2, 7, 12, 5, 9, 14, 20);
    // Round 3: word (3i + 5) mod 16.
    four!(h, 32, 5, 8, 11, 14, 4, 11, 16, 23);
    four!(h, 36, 1, 4, 7, 10, 4, 11, 16, 23);
    four!(h, 40, 13, 0, 3, 6, 4, 11, 16, 23);
    four!(h, 44, 9, 12, 15, 2, 4, 11, 16, 23);
    // Round 4: word 7i mod 16.
    four!(i, 48, 0, 7, 14, 5, 6, 10, 15, 21);
    four!(i, 52, 12, 3, 10, 1, 6, 10, 15, 21);
    four!(i, 56, 8, 15, 6, 13, 6, 10, 15, 21);
    four!(i, 60, 4, 11, 2, 9, 6, 10, 15, 21);
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = (W::from(*s) + v).to_array();
    }
}

/// Blocks of a message of `len` bytes once padded: the bytes, 0x80, zeros, the bit length (64
/// bits, little-endian), a multiple of 64 bytes.
fn blocks_of(len: usize) -> usize {
    (len + 8) / 64 + 1
}

/// Writes block `n` of message `m` (padded) into lane `lane` of `w`.
#[inline(always)]
fn load_block(w: &mut [V; 16], lane: usize, m: &[u8], n: usize) {
    let start = n * 64;
    let mut tail = [0u8; 64];
    let block: &[u8] = match m.get(start..start + 64) {
        Some(b) => b,
        None => {
            // A padded block: what is left of the message, 0x80 right after it (when it falls in
            // this block), and the length in the last 8 bytes of the final block.
            let rest = m.get(start..).unwrap_or_default();
            tail[..rest.len()].copy_from_slice(rest);
            if start <= m.len() {
                tail[rest.len()] = 0x80;
            }
            if n + 1 == blocks_of(m.len()) {
                tail[56..].copy_from_slice(&((m.len() as u64).wrapping_mul(8)).to_le_bytes());
            }
            &tail
        }
    };
    for (j, word) in block.chunks_exact(4).enumerate() {
        w[j][lane] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    }
}

/// Calls `each(index, digest)` with the MD5 of every message of `msgs`, in no particular order.
pub(crate) fn digest_each(msgs: &[&[u8]], mut each: impl FnMut(usize, [u8; 16])) {
    if msgs.len() < SCALAR_BELOW {
        use md5::Digest;
        for (n, m) in msgs.iter().enumerate() {
            each(n, md5::Md5::digest(m).into());
        }
        return;
    }
    // Per lane: (message index, next block, blocks in all); `None` once no message is left.
    let mut job: [Option<(usize, usize, usize)>; LANES] = [None; LANES];
    let mut state = [[0u32; LANES]; 4];
    let mut next = 0;
    let mut w = [[0u32; LANES]; 16];
    let start = |lane: usize, state: &mut [V; 4], next: &mut usize| {
        if *next >= msgs.len() {
            return None;
        }
        for (s, iv) in state.iter_mut().zip(IV) {
            s[lane] = iv;
        }
        *next += 1;
        Some((*next - 1, 0, blocks_of(msgs[*next - 1].len())))
    };
    for (lane, j) in job.iter_mut().enumerate() {
        *j = start(lane, &mut state, &mut next);
    }
    while job.iter().any(Option::is_some) {
        for (lane, j) in job.iter().enumerate() {
            if let Some((m, n, _)) = *j {
                load_block(&mut w, lane, msgs[m], n);
            }
        }
        compress(&mut state, &w);
        for (lane, j) in job.iter_mut().enumerate() {
            let Some((m, n, blocks)) = j else { continue };
            *n += 1;
            if *n == *blocks {
                let mut d = [0u8; 16];
                for (out, s) in d.chunks_exact_mut(4).zip(&state) {
                    out.copy_from_slice(&s[lane].to_le_bytes());
                }
                each(*m, d);
                *j = start(lane, &mut state, &mut next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;

    fn lanes(msgs: &[&[u8]]) -> Vec<[u8; 16]> {
        let mut out = vec![None; msgs.len()];
        digest_each(msgs, |n, d| {
            assert!(out[n].replace(d).is_none(), "message {n} digested twice");
        });
        out.into_iter().map(|d| d.expect("every message digested")).collect()
    }

    fn reference(m: &[u8]) -> [u8; 16] {
        md5::Md5::digest(m).into()
    }

    /// RFC 1321's test suite (appendix A.5).
    #[test]
    fn rfc_1321_test_suite() {
        let suite: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        // Repeated so the lanes are full and the scalar path is not taken.
        let msgs: Vec<&[u8]> = suite.iter().cycle().take(3 * LANES).map(|(m, _)| *m).collect();
        let want: Vec<&str> = suite.iter().cycle().take(3 * LANES).map(|(_, d)| *d).collect();
        let got: Vec<String> = lanes(&msgs).iter().map(hex::encode).collect();
        assert_eq!(got, want);
    }

    /// Every length 0..2000 in every lane, next to messages of random lengths, at every count of
    /// messages from 0 to a few lanes' worth (each lane's tail at every padding boundary: 55, 56,
    /// 63, 64 bytes into a block), equals the scalar MD5.
    #[test]
    fn equals_the_scalar_md5_for_any_lengths_and_counts() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let data: Vec<u8> = (0..4096).map(|_| rnd() as u8).collect();
        // Every length, in each lane position in turn, among random-length neighbours.
        for len in 0..2000usize {
            let lane = len % (LANES + 1);
            let count = LANES + 1 + (rnd() % (2 * LANES as u64)) as usize;
            let mut msgs: Vec<&[u8]> = Vec::new();
            for n in 0..count {
                let l = if n == lane { len } else { (rnd() % 2000) as usize };
                let off = (rnd() % 2000) as usize;
                msgs.push(&data[off..off + l]);
            }
            let want: Vec<[u8; 16]> = msgs.iter().map(|m| reference(m)).collect();
            assert_eq!(lanes(&msgs), want, "length {len} at {lane} of {count}");
        }
        // Every count of messages, lengths near the padding boundaries and random.
        for count in 0..=4 * LANES {
            for _ in 0..20 {
                let msgs: Vec<&[u8]> = (0..count)
                    .map(|_| {
                        let l = match rnd() % 3 {
                            0 => [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128][(rnd() % 12) as usize],
                            1 => (rnd() % 300) as usize,
                            _ => (rnd() % 2000) as usize,
                        };
                        &data[..l]
                    })
                    .collect();
                let want: Vec<[u8; 16]> = msgs.iter().map(|m| reference(m)).collect();
                assert_eq!(lanes(&msgs), want, "{count} messages");
            }
        }
    }
}
