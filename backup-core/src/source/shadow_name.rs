//! The names a run derives from its target for the databases it creates beside it (a restore's
//! shadow, the database renamed aside, `guard`'s copy, MySQL's tables moved aside): a prefix that
//! names the target and the role, then a fixed number of random lower-case hex digits. The next
//! run finds what a killed run left by the same prefix and a tail of the same length, so the
//! names must stay byte-for-byte what older versions made (pinned by the tests in
//! `postgres/swap.rs` and `mysql/swap.rs`). Each engine builds its prefix (PostgreSQL cuts the
//! target to fit 63 bytes, MySQL to 30 characters plus a hash of the whole name); the random
//! tail, the cutting and the matching are here. SQLite's files have fixed names beside the target
//! (`sqlite/swap.rs`), and its one random name comes from `tempfile`.

/// The names of one role for one target: `prefix` followed by `digits` hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShadowName {
    prefix: String,
    digits: usize,
}

impl ShadowName {
    /// Names `prefix` + `digits` (1 to 8) hex digits.
    pub(crate) fn new(prefix: String, digits: usize) -> Self {
        ShadowName { prefix, digits: digits.clamp(1, 8) }
    }

    /// A new name of the family, with a random tail.
    pub(crate) fn fresh(&self) -> String {
        self.with(&random_tail(self.digits))
    }

    /// The name with the given tail (a run id shared by several roles).
    pub(crate) fn with(&self, tail: &str) -> String {
        format!("{}{tail}", self.prefix)
    }

    /// The tail of `name` when it belongs to the family: the prefix, then exactly `digits` hex
    /// digits (either case, as older versions accepted).
    pub(crate) fn tail_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix.as_str())
            .filter(|t| t.len() == self.digits && t.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Whether `name` belongs to the family.
    pub(crate) fn owns(&self, name: &str) -> bool {
        self.tail_of(name).is_some()
    }
}

/// `digits` (1 to 8) random lower-case hex digits.
pub(crate) fn random_tail(digits: usize) -> String {
    let digits = digits.clamp(1, 8);
    let mask = if digits == 8 { u32::MAX } else { (1u32 << (4 * digits)) - 1 };
    format!("{:0digits$x}", rand::random::<u32>() & mask)
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut_bytes(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The first `max` characters of `s`.
pub(crate) fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_family_are_found_and_others_are_not() {
        let f = ShadowName::new("app_x_".into(), 6);
        let n = f.fresh();
        assert_eq!(f.tail_of(&n).map(str::len), Some(6), "{n}");
        assert!(n.bytes().skip(6).all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{n}");
        assert_eq!(f.with("00ab0C"), "app_x_00ab0C");
        assert!(f.owns("app_x_00ab0C"));
        for other in ["app_x_00ab0", "app_x_00ab0c1", "app_x_00ab0g", "app_y_00ab0c", "xapp_x_00ab0c"] {
            assert!(!f.owns(other), "{other}");
        }
        for digits in 1..=8 {
            let t = random_tail(digits);
            assert!(t.len() == digits && u32::from_str_radix(&t, 16).is_ok(), "{t}");
        }
        assert_eq!(cut_bytes("aéb", 2), "a");
        assert_eq!(cut_bytes("aéb", 3), "aé");
        assert_eq!(cut_bytes("ab", 9), "ab");
        assert_eq!(cut_chars("aéb", 2), "aé");
        assert_eq!(cut_chars("ab", 9), "ab");
    }
}
