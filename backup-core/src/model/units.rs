//! Quantities as people write them: fractions (`50%`), sizes (`50GiB`), durations (`26h`).

use crate::error::{Error, Result};

/// A fraction as people write it: `50%` or `0.5` (between 0 and 1). Shared by the CLI flags and
/// the FFI options (`--max-shrink`).
pub fn parse_fraction(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(Error::InvalidInput(format!("bad fraction {s:?}: use a percentage (50%) or 0..1 (0.5)"))),
    }
}

/// A size as people write it: `50GiB`, `500MB`, `1.5T`, `1024` (bytes); binary (`KiB`, `K`) and
/// decimal (`KB`) units. Shared by the CLI flags and the FFI options.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| Error::InvalidInput(format!("bad size {s:?} (e.g. 50GiB, 500MB)")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024f64.powi(2),
        "mb" => 1e6,
        "g" | "gib" => 1024f64.powi(3),
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        u => {
            return Err(Error::InvalidInput(format!(
                "bad size unit {u:?} in {s:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            )));
        }
    };
    Ok((n * mult) as u64)
}

/// A duration as people write it: `26h`, `30m`, `7d`, `1h 30m`, `90s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(s.trim())
        .map_err(|e| Error::InvalidInput(format!("bad duration {s:?} (e.g. 26h, 30m, 7d): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size(" 1024 ").unwrap(), 1024);
        assert!(parse_size("lots").is_err() && parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("26h").unwrap().as_secs(), 26 * 3600);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 7 * 86400);
        assert!(parse_duration("soon").is_err());
    }
}
