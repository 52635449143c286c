//! PostgreSQL binary COPY rows from the dump's text COPY lines (public for fuzzing).
//!
//! A PostgreSQL restore loads a table with `COPY ... (FORMAT binary)` when every column's type
//! has an encoder here: the server then skips its text parsing (escapes, numbers, dates), the
//! most expensive part of its load on a saturated machine (see docs/benchmarks.md). The lines
//! come from `COPY ... TO STDOUT` under the dump's fixed session settings (`DateStyle` ISO,
//! `TimeZone` UTC, `extra_float_digits = 3`, `bytea_output = 'hex'`), so every value has one
//! canonical text form and its binary form follows from it exactly.
//!
//! Parsing is strict: a value that is not in the form the server's output function writes (an
//! escape COPY TO does not produce, a number with a `+`, a date without its day, a float that
//! would not read back to itself, a line with the wrong number of fields...) is **refused**, never
//! guessed at; the restore then sends that line and the rest of the chunk as text COPY, which
//! the server parses itself. Whatever is sent, the restore's content proof reads every table back
//! with text `COPY TO` and compares the sum of its lines with the dump's before anything is
//! swapped in, so an encoding mistake fails the restore instead of changing data.

/// The 19-byte header of a binary COPY stream (signature, flags 0, no header extension).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The trailer of a binary COPY stream (a field count of -1).
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Column types with an exact encoder, by the server's built-in type oid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// boolean: one byte.
    Bool,
    /// bytea: the raw bytes.
    Bytea,
    /// bigint: 8 bytes.
    Int8,
    /// smallint: 2 bytes.
    Int2,
    /// integer: 4 bytes.
    Int4,
    /// text, varchar, bpchar and name: the unescaped bytes.
    Text,
    /// json: the unescaped text.
    Json,
    /// real: the IEEE bits.
    Float4,
    /// double precision: the IEEE bits.
    Float8,
    /// date: days since 2000-01-01.
    Date,
    /// timestamp: microseconds since 2000-01-01 00:00.
    Timestamp,
    /// timestamptz: microseconds since 2000-01-01 00:00 UTC.
    Timestamptz,
    /// numeric: base-10000 digits, weight, sign, display scale.
    Numeric,
    /// uuid: 16 bytes.
    Uuid,
    /// jsonb: version 1, then the unescaped text.
    Jsonb,
}

impl Kind {
    /// The encoder for a column of type `oid` (built-in types only: a domain, enum, array or any
    /// other type has none and keeps its table on text COPY).
    pub fn of_oid(oid: u32) -> Option<Kind> {
        Some(match oid {
            16 => Kind::Bool,
            17 => Kind::Bytea,
            19 | 25 | 1042 | 1043 => Kind::Text,
            20 => Kind::Int8,
            21 => Kind::Int2,
            23 => Kind::Int4,
            114 => Kind::Json,
            700 => Kind::Float4,
            701 => Kind::Float8,
            1082 => Kind::Date,
            1114 => Kind::Timestamp,
            1184 => Kind::Timestamptz,
            1700 => Kind::Numeric,
            2950 => Kind::Uuid,
            3802 => Kind::Jsonb,
            _ => return None,
        })
    }
}

/// Why a line could not be encoded (the line then goes as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Zero-based column, or the number of fields seen when their count was wrong.
    pub column: usize,
    /// What was wrong with it.
    pub reason: &'static str,
}

type Res<T> = std::result::Result<T, Refused>;

fn refuse<T>(reason: &'static str) -> Res<T> {
    Err(Refused { column: usize::MAX, reason })
}

/// Encodes the text COPY lines of one table, whose columns have the given kinds, as binary
/// COPY rows.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    kinds: Vec<Kind>,
    scratch: Vec<u8>,
}

impl RowEncoder {
    /// An encoder for columns of these type oids, or `None` when one has no encoder (or there
    /// are no columns, or more than a binary row can count).
    pub fn for_oids(oids: &[u32]) -> Option<RowEncoder> {
        if oids.is_empty() || oids.len() > i16::MAX as usize {
            return None;
        }
        let kinds = oids.iter().map(|o| Kind::of_oid(*o)).collect::<Option<Vec<_>>>()?;
        Some(RowEncoder { kinds, scratch: Vec::new() })
    }

    /// An encoder for columns of these kinds (`None` for no columns or too many).
    pub fn new(kinds: Vec<Kind>) -> Option<RowEncoder> {
        if kinds.is_empty() || kinds.len() > i16::MAX as usize {
            return None;
        }
        Some(RowEncoder { kinds, scratch: Vec::new() })
    }

    /// Appends the binary row for one text COPY `line` (without its `\n`) to `out`. On refusal
    /// `out` is left as it was.
    pub fn encode_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Res<()> {
        let start = out.len();
        let r = self.encode_inner(line, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn encode_inner(&mut self, line: &[u8], out: &mut Vec<u8>) -> Res<()> {
        out.extend_from_slice(&(self.kinds.len() as i16).to_be_bytes());
        // The fields between tabs (a line of n tabs has n + 1 fields). The tabs are found with
        // `memchr` rather than a byte-at-a-time split: on long text values that scan was half of
        // the encoder's time (docs/benchmarks.md, "The binary encoder's field split").
        let mut rest = Some(line);
        for (i, kind) in self.kinds.iter().enumerate() {
            let Some(r) = rest else {
                return Err(Refused { column: i, reason: "fewer fields than columns" });
            };
            let f = match memchr::memchr(b'\t', r) {
                Some(p) => {
                    rest = Some(&r[p + 1..]);
                    &r[..p]
                }
                None => {
                    rest = None;
                    r
                }
            };
            encode_field(*kind, f, out, &mut self.scratch).map_err(|e| Refused { column: i, ..e })?;
        }
        if rest.is_some() {
            return Err(Refused { column: self.kinds.len(), reason: "more fields than columns" });
        }
        Ok(())
    }
}

/// Appends one field (length + value) of `kind` from its COPY text `f`.
fn encode_field(kind: Kind, f: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Res<()> {
    if f == b"\\N" {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    match kind {
        Kind::Text | Kind::Json => unescape(f, out)?,
        Kind::Jsonb => {
            out.push(1);
            unescape(f, out)?;
        }
        Kind::Bytea => {
            scratch.clear();
            unescape(f, scratch)?;
            hex_bytea(scratch, out)?;
        }
        Kind::Bool => out.push(match f {
            b"t" => 1,
            b"f" => 0,
            _ => return refuse("not a boolean (t/f)"),
        }),
        Kind::Int2 => {
            let v = i16::try_from(int(f)?).or_else(|_| refuse("smallint out of range"))?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        Kind::Int4 => {
            let v = i32::try_from(int(f)?).or_else(|_| refuse("integer out of range"))?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        Kind::Int8 => out.extend_from_slice(&int(f)?.to_be_bytes()),
        Kind::Float4 => out.extend_from_slice(&float4(f)?.to_bits().to_be_bytes()),
        Kind::Float8 => out.extend_from_slice(&float8(f)?.to_bits().to_be_bytes()),
        Kind::Numeric => numeric(f, out)?,
        Kind::Uuid => uuid(f, out)?,
        Kind::Date => out.extend_from_slice(&date(f)?.to_be_bytes()),
        Kind::Timestamp => out.extend_from_slice(&timestamp(f, false)?.to_be_bytes()),
        Kind::Timestamptz => out.extend_from_slice(&timestamp(f, true)?.to_be_bytes()),
    }
    let len = i32::try_from(out.len() - len_at - 4).or_else(|_| refuse("value too long"))?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// COPY text unescaping, for the escapes `COPY TO` writes (`\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// `\v`); any other backslash sequence, and a raw carriage return, is refused.
fn unescape(f: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut rest = f;
    while let Some(p) = memchr::memchr2(b'\\', b'\r', rest) {
        out.extend_from_slice(&rest[..p]);
        if rest[p] == b'\r' {
            return refuse("a carriage return COPY TO would have escaped");
        }
        let c = match rest.get(p + 1) {
            Some(b'\\') => b'\\',
            Some(b'b') => 8,
            Some(b'f') => 12,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'v') => 11,
            _ => return refuse("a backslash sequence COPY TO does not write"),
        };
        out.push(c);
        rest = &rest[p + 2..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// bytea's hex output (`\x` and an even number of hex digits).
fn hex_bytea(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let Some(hex) = v.strip_prefix(b"\\x") else { return refuse("bytea not in hex form") };
    if hex.len() % 2 != 0 {
        return refuse("odd number of hex digits");
    }
    out.reserve(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        out.push(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?);
    }
    Ok(())
}

fn hex_digit(c: u8) -> Res<u8> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => refuse("not a hex digit"),
    }
}

/// Decimal digits only (at least one), as a number.
fn digits(f: &[u8]) -> Res<i64> {
    if f.is_empty() || f.len() > 18 {
        return refuse("not a number of at most 18 digits");
    }
    let mut v: i64 = 0;
    for c in f {
        if !c.is_ascii_digit() {
            return refuse("not a digit");
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

/// An integer as int2/int4/int8out write it: `-?[0-9]+`.
fn int(f: &[u8]) -> Res<i64> {
    let (neg, d) = match f.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, f),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return refuse("not an integer");
    }
    // i64::MIN has 19 digits: parse through i128 to keep every int8 value.
    let mut v: i128 = 0;
    for c in d {
        v = v * 10 + i128::from(c - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return refuse("bigint out of range");
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).or_else(|_| refuse("bigint out of range"))
}

/// The characters of a finite float as float4/8out write them.
fn float_text(f: &[u8]) -> Res<&str> {
    let ok = matches!(f.first(), Some(b'0'..=b'9' | b'-'))
        && f.iter().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'));
    if !ok {
        return refuse("not a float");
    }
    std::str::from_utf8(f).or_else(|_| refuse("not a float"))
}

fn nonzero_digit(f: &[u8]) -> bool {
    // The mantissa only: stop at the exponent.
    f.iter().take_while(|c| **c != b'e').any(|c| matches!(c, b'1'..=b'9'))
}

/// float8 (correctly rounded, as the server's strtod): `NaN`, `Infinity`, `-Infinity` or a
/// finite decimal that stays finite and, when it has a non-zero digit, non-zero.
fn float8(f: &[u8]) -> Res<f64> {
    match f {
        b"NaN" => return Ok(f64::NAN),
        b"Infinity" => return Ok(f64::INFINITY),
        b"-Infinity" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let v: f64 = float_text(f)?.parse().or_else(|_| refuse("not a float"))?;
    if !v.is_finite() || (v == 0.0 && nonzero_digit(f)) {
        return refuse("float out of range");
    }
    Ok(v)
}

/// float4, rounded once from the decimal (as the server's strtof).
fn float4(f: &[u8]) -> Res<f32> {
    match f {
        b"NaN" => return Ok(f32::NAN),
        b"Infinity" => return Ok(f32::INFINITY),
        b"-Infinity" => return Ok(f32::NEG_INFINITY),
        _ => {}
    }
    let v: f32 = float_text(f)?.parse().or_else(|_| refuse("not a float"))?;
    if !v.is_finite() || (v == 0.0 && nonzero_digit(f)) {
        return refuse("real out of range");
    }
    Ok(v)
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// numeric as numeric_out writes it (`-?[0-9]+(\.[0-9]+)?`, `NaN`, `Infinity`, `-Infinity`):
/// base-10000 digits, weight, sign and the display scale (the number of decimals written).
fn numeric(f: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let special = match f {
        b"NaN" => Some(NUMERIC_NAN),
        b"Infinity" => Some(NUMERIC_PINF),
        b"-Infinity" => Some(NUMERIC_NINF),
        _ => None,
    };
    let head = |out: &mut Vec<u8>, n: i16, weight: i16, sign: u16, dscale: u16| {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
    };
    if let Some(sign) = special {
        // The server's numeric_send writes a display scale of 32 for the infinities (bits of
        // their stored header) and 0 for NaN; numeric_recv ignores it for all three. The same
        // bytes as the server's keep the round-trip test exact.
        let dscale = if sign == NUMERIC_NAN { 0 } else { 32 };
        head(out, 0, 0, sign, dscale);
        return Ok(());
    }
    let (neg, body) = match f.strip_prefix(b"-") {
        Some(b) => (true, b),
        None => (false, f),
    };
    let (int_part, frac) = match memchr::memchr(b'.', body) {
        Some(p) => (&body[..p], Some(&body[p + 1..])),
        None => (body, None),
    };
    let frac = frac.unwrap_or(b"");
    let ok_digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if int_part.is_empty()
        || !ok_digits(int_part)
        || !ok_digits(frac)
        || (body.len() > int_part.len() && frac.is_empty())
    {
        return refuse("not a numeric");
    }
    if frac.len() > 0x3FFF {
        return refuse("numeric scale too large");
    }
    let dscale = frac.len() as u16;
    // Base-10000 groups aligned on the decimal point: the integer part padded on the left,
    // the fraction on the right.
    let lead = (4 - int_part.len() % 4) % 4;
    let int_groups = (int_part.len() + lead) / 4;
    let mut groups: Vec<i16> = Vec::with_capacity(int_groups + frac.len().div_ceil(4));
    let mut acc: i16 = 0;
    let mut n = lead;
    for c in int_part.iter().chain(frac.iter()) {
        acc = acc * 10 + i16::from(c - b'0');
        n += 1;
        if n == 4 {
            groups.push(acc);
            acc = 0;
            n = 0;
        }
    }
    if n > 0 {
        for _ in n..4 {
            acc *= 10;
        }
        groups.push(acc);
    }
    let mut weight = i64::try_from(int_groups).unwrap_or(i64::MAX) - 1;
    // Drop leading and trailing zero groups (the server's own normal form).
    let first = groups.iter().position(|g| *g != 0);
    let (digits, sign) = match first {
        None => (&groups[..0], NUMERIC_POS),
        Some(s) => {
            let e = groups.iter().rposition(|g| *g != 0).map_or(s, |e| e + 1);
            weight -= s as i64;
            (&groups[s..e], if neg { NUMERIC_NEG } else { NUMERIC_POS })
        }
    };
    if digits.is_empty() {
        weight = 0;
    }
    let weight = i16::try_from(weight).or_else(|_| refuse("numeric out of range"))?;
    let ndigits = i16::try_from(digits.len()).or_else(|_| refuse("numeric out of range"))?;
    head(out, ndigits, weight, sign, dscale);
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

/// uuid as uuid_out writes it: 8-4-4-4-12 hex digits.
fn uuid(f: &[u8], out: &mut Vec<u8>) -> Res<()> {
    if f.len() != 36 || f[8] != b'-' || f[13] != b'-' || f[18] != b'-' || f[23] != b'-' {
        return refuse("not a uuid");
    }
    let mut hex = f.iter().filter(|c| **c != b'-');
    for _ in 0..16 {
        let (Some(a), Some(b)) = (hex.next(), hex.next()) else { return refuse("not a uuid") };
        out.push(hex_digit(*a)? << 4 | hex_digit(*b)?);
    }
    Ok(())
}

/// The Julian day number of a (proleptic Gregorian, astronomical-year) date, as the server's
/// `date2j`.
fn date2j(y: i64, m: i64, d: i64) -> i64 {
    let (y, m) = if m > 2 { (y + 4800, m + 1) } else { (y + 4799, m + 13) };
    let century = y / 100;
    y * 365 - 32167 + y / 4 - century + century / 4 + 7834 * m / 256 + d
}

/// Julian day of 2000-01-01, the origin of the binary date and timestamp forms.
const PG_EPOCH_JDATE: i64 = 2_451_545;

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Exactly `n` digits at the front of `f`.
fn fixed(f: &[u8], n: usize) -> Res<(i64, &[u8])> {
    if f.len() < n {
        return refuse("date/time field too short");
    }
    Ok((digits(&f[..n])?, &f[n..]))
}

/// `YYYY-MM-DD` (the year has 4 or more digits), with the rest of the field after it. Returns
/// the year as written (not yet BC-adjusted), month and day.
fn ymd(f: &[u8]) -> Res<(i64, i64, i64, &[u8])> {
    let dash = memchr::memchr(b'-', f)
        .filter(|p| *p >= 4)
        .ok_or(Refused { column: usize::MAX, reason: "not an ISO date" })?;
    let y = digits(&f[..dash])?;
    let (m, rest) = fixed(&f[dash + 1..], 2)?;
    let rest = rest.strip_prefix(b"-").ok_or(Refused { column: usize::MAX, reason: "not an ISO date" })?;
    let (d, rest) = fixed(rest, 2)?;
    Ok((y, m, d, rest))
}

/// A date's Julian day, checked like the server's ValidateDate (the year written for a BC date
/// is 1 more than its astronomical year).
fn julian(y: i64, m: i64, d: i64, bc: bool) -> Res<i64> {
    if y == 0 {
        return refuse("year 0");
    }
    // The server's widest range (date: 4713 BC to 5874897 AD); beyond it `date2j` would overflow.
    if y > 5_874_897 {
        return refuse("year out of range");
    }
    let y = if bc { 1 - y } else { y };
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) {
        return refuse("month out of range");
    }
    let max = DAYS[(m - 1) as usize] + i64::from(m == 2 && is_leap(y));
    if d < 1 || d > max {
        return refuse("day out of range");
    }
    Ok(date2j(y, m, d))
}

/// date as date_out writes it with DateStyle ISO: `YYYY-MM-DD[ BC]`, `infinity`, `-infinity`.
/// Days since 2000-01-01.
fn date(f: &[u8]) -> Res<i32> {
    match f {
        b"infinity" => return Ok(i32::MAX),
        b"-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (y, m, d, rest) = ymd(f)?;
    let bc = match rest {
        b"" => false,
        b" BC" => true,
        _ => return refuse("not an ISO date"),
    };
    let days = julian(y, m, d, bc)? - PG_EPOCH_JDATE;
    i32::try_from(days).or_else(|_| refuse("date out of range"))
}

/// timestamp / timestamptz as their output functions write them with DateStyle ISO:
/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]` (the offset only for timestamptz),
/// `infinity`, `-infinity`. Microseconds since 2000-01-01 00:00 (UTC for timestamptz).
fn timestamp(f: &[u8], tz: bool) -> Res<i64> {
    match f {
        b"infinity" => return Ok(i64::MAX),
        b"-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let bad = || Refused { column: usize::MAX, reason: "not an ISO timestamp" };
    let (y, mo, d, rest) = ymd(f)?;
    let rest = rest.strip_prefix(b" ").ok_or_else(bad)?;
    let (h, rest) = fixed(rest, 2)?;
    let rest = rest.strip_prefix(b":").ok_or_else(bad)?;
    let (mi, rest) = fixed(rest, 2)?;
    let rest = rest.strip_prefix(b":").ok_or_else(bad)?;
    let (s, mut rest) = fixed(rest, 2)?;
    if h > 23 || mi > 59 || s > 59 {
        return refuse("time out of range");
    }
    let mut micros = 0i64;
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return refuse("fraction of a second not 1-6 digits");
        }
        micros = digits(&r[..n])? * 10i64.pow((6 - n) as u32);
        rest = &r[n..];
    }
    let mut offset = 0i64;
    if tz {
        let sign = match rest.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return refuse("timestamptz without its UTC offset"),
        };
        let (oh, mut r) = fixed(&rest[1..], 2)?;
        let mut secs = oh * 3600;
        if let Some(x) = r.strip_prefix(b":") {
            let (om, x) = fixed(x, 2)?;
            secs += om * 60;
            r = x;
            if let Some(x) = r.strip_prefix(b":") {
                let (os, x) = fixed(x, 2)?;
                secs += os;
                r = x;
            }
        }
        offset = sign * secs;
        rest = r;
    }
    let bc = match rest {
        b"" => false,
        b" BC" => true,
        _ => return Err(bad()),
    };
    let days = julian(y, mo, d, bc)? - PG_EPOCH_JDATE;
    let secs = days
        .checked_mul(86_400)
        .and_then(|x| x.checked_add(h * 3600 + mi * 60 + s - offset))
        .ok_or_else(bad)?;
    secs.checked_mul(1_000_000)
        .and_then(|x| x.checked_add(micros))
        .ok_or(Refused { column: usize::MAX, reason: "timestamp out of range" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(kind: Kind, f: &str) -> Res<Vec<u8>> {
        let mut out = Vec::new();
        encode_field(kind, f.as_bytes(), &mut out, &mut Vec::new())?;
        let len = i32::from_be_bytes(out[..4].try_into().unwrap());
        if len < 0 {
            assert_eq!(out.len(), 4);
        } else {
            assert_eq!(out.len(), 4 + len as usize);
        }
        Ok(out[4..].to_vec())
    }

    fn refused(kind: Kind, f: &str) -> bool {
        enc(kind, f).is_err()
    }

    #[test]
    fn null_is_length_minus_one_for_every_kind() {
        for k in [Kind::Bool, Kind::Int4, Kind::Text, Kind::Numeric, Kind::Date, Kind::Jsonb, Kind::Bytea] {
            let mut out = Vec::new();
            encode_field(k, b"\\N", &mut out, &mut Vec::new()).unwrap();
            assert_eq!(out, (-1i32).to_be_bytes());
        }
        // An escaped backslash followed by N is text, not NULL.
        assert_eq!(enc(Kind::Text, "\\\\N").unwrap(), b"\\N");
    }

    #[test]
    fn text_escapes() {
        assert_eq!(
            enc(Kind::Text, "a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh").unwrap(),
            b"a\tb\nc\rd\\e\x08f\x0cg\x0bh"
        );
        assert_eq!(enc(Kind::Text, "").unwrap(), b"");
        assert_eq!(enc(Kind::Text, "é ü").unwrap(), "é ü".as_bytes());
        assert_eq!(enc(Kind::Jsonb, "{\"a\": \"x\\\\ny\"}").unwrap(), b"\x01{\"a\": \"x\\ny\"}");
        // Sequences COPY TO never writes are refused, not interpreted.
        for bad in ["a\rb", "a\\", "\\x41", "\\101", "\\.", "\\N\\N", "\\q"] {
            assert!(refused(Kind::Text, bad), "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(enc(Kind::Int2, "-32768").unwrap(), (-32768i16).to_be_bytes());
        assert!(refused(Kind::Int2, "32768"));
        assert_eq!(enc(Kind::Int4, "2147483647").unwrap(), i32::MAX.to_be_bytes());
        assert!(refused(Kind::Int4, "-2147483649"));
        assert_eq!(enc(Kind::Int8, "-9223372036854775808").unwrap(), i64::MIN.to_be_bytes());
        assert_eq!(enc(Kind::Int8, "9223372036854775807").unwrap(), i64::MAX.to_be_bytes());
        assert!(refused(Kind::Int8, "9223372036854775808"));
        assert_eq!(enc(Kind::Int8, "0").unwrap(), 0i64.to_be_bytes());
        for bad in ["", "-", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "99999999999999999999999"] {
            assert!(refused(Kind::Int8, bad), "{bad}");
        }
        assert_eq!(enc(Kind::Bool, "t").unwrap(), [1]);
        assert_eq!(enc(Kind::Bool, "f").unwrap(), [0]);
        assert!(refused(Kind::Bool, "true"));
    }

    #[test]
    fn floats_are_exact() {
        let f8 =
            |s: &str| f64::from_bits(u64::from_be_bytes(enc(Kind::Float8, s).unwrap().try_into().unwrap()));
        assert_eq!(f8("-0").to_bits(), (-0.0f64).to_bits());
        assert!(f8("NaN").is_nan());
        assert_eq!(f8("Infinity"), f64::INFINITY);
        assert_eq!(f8("-Infinity"), f64::NEG_INFINITY);
        assert_eq!(f8("1e+300"), 1e300);
        assert_eq!(f8("0.1"), 0.1);
        assert_eq!(f8("2.2250738585072014e-308"), f64::MIN_POSITIVE);
        assert_eq!(f8("5e-324"), 5e-324);
        assert_eq!(f8("1.7976931348623157e+308"), f64::MAX);
        let f4 =
            |s: &str| f32::from_bits(u32::from_be_bytes(enc(Kind::Float4, s).unwrap().try_into().unwrap()));
        assert_eq!(f4("0.1"), 0.1f32);
        assert_eq!(f4("3.4028235e+38"), f32::MAX);
        assert_eq!(f4("-0").to_bits(), (-0.0f32).to_bits());
        for bad in ["1e400", "1e-400", "inf", "nan", "infinity", "+1", "", "1,5", " 1"] {
            assert!(refused(Kind::Float8, bad), "{bad}");
        }
        assert!(refused(Kind::Float4, "1e39"));
        assert!(refused(Kind::Float4, "1e-50"));
        assert_eq!(f8("0e-5"), 0.0);
    }

    /// (ndigits, weight, sign, dscale, digits) of an encoded numeric.
    fn num(s: &str) -> (i16, i16, u16, u16, Vec<i16>) {
        let b = enc(Kind::Numeric, s).unwrap();
        let g = |i: usize| [b[i], b[i + 1]];
        let n = i16::from_be_bytes(g(0));
        let digits = (0..n as usize).map(|k| i16::from_be_bytes(g(8 + 2 * k))).collect();
        assert_eq!(b.len(), 8 + 2 * n as usize);
        (n, i16::from_be_bytes(g(2)), u16::from_be_bytes(g(4)), u16::from_be_bytes(g(6)), digits)
    }

    #[test]
    fn numerics() {
        assert_eq!(num("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(num("0.00"), (0, 0, 0, 2, vec![]));
        assert_eq!(num("1"), (1, 0, 0, 0, vec![1]));
        assert_eq!(num("12345.678"), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(num("-0.0001"), (1, -1, NUMERIC_NEG, 4, vec![1]));
        assert_eq!(num("0.00001"), (1, -2, 0, 5, vec![1000]));
        assert_eq!(num("10000"), (1, 1, 0, 0, vec![1]));
        assert_eq!(num("100000000.10"), (4, 2, 0, 2, vec![1, 0, 0, 1000]));
        assert_eq!(num("-1234.50"), (2, 0, NUMERIC_NEG, 2, vec![1234, 5000]));
        assert_eq!(num("NaN"), (0, 0, NUMERIC_NAN, 0, vec![]));
        assert_eq!(num("Infinity"), (0, 0, NUMERIC_PINF, 32, vec![]));
        assert_eq!(num("-Infinity"), (0, 0, NUMERIC_NINF, 32, vec![]));
        for bad in ["", "-", ".5", "5.", "1e5", "+1", "1.2.3", " 1", "nan", "--1"] {
            assert!(refused(Kind::Numeric, bad), "{bad}");
        }
    }

    #[test]
    fn dates_and_timestamps() {
        let d = |s: &str| i32::from_be_bytes(enc(Kind::Date, s).unwrap().try_into().unwrap());
        assert_eq!(d("2000-01-01"), 0);
        assert_eq!(d("1999-12-31"), -1);
        assert_eq!(d("2000-03-01"), 60);
        assert_eq!(d("1970-01-01"), -10957);
        // 1 BC is astronomical year 0, a leap year.
        assert_eq!(d("0001-01-01") - d("0001-12-31 BC"), 1);
        assert_eq!(d("0001-12-31 BC") - d("0001-02-29 BC"), 306);
        assert_eq!(d("4713-01-01 BC"), 38 - 2_451_545);
        assert_eq!(d("infinity"), i32::MAX);
        assert_eq!(d("-infinity"), i32::MIN);
        assert_eq!(d("10000-01-01") - d("9999-12-31"), 1);
        for bad in [
            "2001-02-29",
            "2000-13-01",
            "2000-00-10",
            "2000-01-32",
            "0000-01-01",
            "2000-1-01",
            "200-01-01",
            "2000-01-01 AD",
            "2000-01-01 ",
            "20000101",
        ] {
            assert!(refused(Kind::Date, bad), "{bad}");
        }
        let ts = |s: &str| i64::from_be_bytes(enc(Kind::Timestamp, s).unwrap().try_into().unwrap());
        let tz = |s: &str| i64::from_be_bytes(enc(Kind::Timestamptz, s).unwrap().try_into().unwrap());
        assert_eq!(ts("2000-01-01 00:00:00"), 0);
        assert_eq!(ts("2000-01-01 00:00:00.5"), 500_000);
        assert_eq!(ts("2000-01-01 00:00:00.000001"), 1);
        assert_eq!(ts("1999-12-31 23:59:59.999999"), -1);
        assert_eq!(
            ts("2026-12-03 18:04:14.123456"),
            (d("2026-12-03") as i64 * 86400 + 18 * 3600 + 4 * 60 + 14) * 1_000_000 + 123_456
        );
        assert_eq!(ts("0001-01-01 00:00:00 BC"), d("0001-01-01 BC") as i64 * 86_400_000_000);
        assert_eq!(ts("infinity"), i64::MAX);
        assert_eq!(ts("-infinity"), i64::MIN);
        assert_eq!(tz("2000-01-01 00:00:00+00"), 0);
        assert_eq!(tz("2000-01-01 02:00:00+02"), 0);
        assert_eq!(tz("1999-12-31 19:30:00-04:30"), 0);
        assert_eq!(tz("2000-01-01 00:53:28+00:53:28"), 0);
        assert_eq!(tz("2000-01-01 00:00:00.25+00 BC"), ts("2000-01-01 00:00:00.25 BC"));
        for bad in [
            "2000-01-01",
            "2000-01-01 24:00:00",
            "2000-01-01 00:60:00",
            "2000-01-01 00:00:60",
            "2000-01-01 00:00:00.",
            "2000-01-01 00:00:00.1234567",
            "2000-01-01T00:00:00",
            "2000-01-01 00:00:00+00",
        ] {
            assert!(refused(Kind::Timestamp, bad), "{bad}");
        }
        for bad in [
            "2000-01-01 00:00:00",
            "2000-01-01 00:00:00+0",
            "2000-01-01 00:00:00 UTC",
            "2000-01-01 00:00:00+00:0",
        ] {
            assert!(refused(Kind::Timestamptz, bad), "{bad}");
        }
        // Years past the server's range are refused, not overflowed (found by the fuzz target).
        for year in ["5874898", "200000000000000000", "999999999999999999"] {
            assert!(refused(Kind::Date, &format!("{year}-01-01")), "{year}");
            assert!(refused(Kind::Date, &format!("{year}-01-01 BC")), "{year}");
            assert!(refused(Kind::Timestamp, &format!("{year}-01-01 00:00:01")), "{year}");
            assert!(refused(Kind::Timestamptz, &format!("{year}-01-01 00:00:00+50")), "{year}");
        }
        assert!(!refused(Kind::Date, "5874897-12-31"));
    }

    #[test]
    fn bytea_and_uuid() {
        assert_eq!(enc(Kind::Bytea, "\\\\x").unwrap(), b"");
        assert_eq!(enc(Kind::Bytea, "\\\\x00ff5cAB").unwrap(), [0, 255, 0x5c, 0xab]);
        for bad in ["\\\\x0", "\\\\xzz", "abc", "\\x00", "\\\\000"] {
            assert!(refused(Kind::Bytea, bad), "{bad}");
        }
        assert_eq!(
            enc(Kind::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap(),
            [0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11]
        );
        for bad in [
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1}",
        ] {
            assert!(refused(Kind::Uuid, bad), "{bad}");
        }
    }

    #[test]
    fn rows_and_field_counts() {
        let mut e = RowEncoder::for_oids(&[23, 25]).unwrap();
        let mut out = b"x".to_vec();
        e.encode_line(b"7\ta\\tb", &mut out).unwrap();
        assert_eq!(out, b"x\x00\x02\x00\x00\x00\x04\x00\x00\x00\x07\x00\x00\x00\x03a\tb");
        // On refusal the output is left as it was.
        for bad in [&b"7"[..], b"7\ta\tb", b"x\ta", b""] {
            assert!(e.encode_line(bad, &mut out).is_err());
            assert_eq!(out.len(), 18);
        }
        let r = e.encode_line(b"1\t2\t3", &mut out).unwrap_err();
        assert_eq!(r.column, 2);
        let r = e.encode_line(b"q\t2", &mut out).unwrap_err();
        assert_eq!(r.column, 0);
        // A trailing tab is one more (empty) field.
        let r = e.encode_line(b"7\ta\t", &mut out).unwrap_err();
        assert_eq!(r.column, 2);
        let mut out = Vec::new();
        e.encode_line(b"7\t", &mut out).unwrap();
        assert_eq!(out, b"\x00\x02\x00\x00\x00\x04\x00\x00\x00\x07\x00\x00\x00\x00");
        assert!(RowEncoder::for_oids(&[23, 1186]).is_none(), "interval has no encoder");
        assert!(RowEncoder::for_oids(&[]).is_none());
        assert_eq!(HEADER.len(), 19);
    }
}
