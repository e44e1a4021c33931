//! Parsers for the loose values of the config file: byte sizes (`"64KiB"`), durations (`"5s"`)
//! and USD prices (`"9.99"` → integer micro-USD). Each returns a message fit to follow a field
//! path; the callers decide which values must be positive.

use std::num::NonZeroU64;
use std::time::Duration;

const SIZE_HINT: &str = "expected an integer with an optional unit B, KB, MB, GB, TB (1000-based) \
                         or KiB, MiB, GiB, TiB (1024-based), e.g. \"64KiB\"";

/// Micro-USD per USD.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Parses a size string: an integer, optional spaces, then an optional unit (case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative".to_string());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let garbage = || format!("`{s}` is not a size ({SIZE_HINT})");
    if digits.is_empty() {
        return Err(garbage());
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(garbage()),
    };
    let too_large = || format!("`{s}` is too large (at most {} bytes)", u64::MAX);
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// A size given as a bare TOML integer (bytes).
pub fn size_from_int(n: i64) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| "must not be negative".to_string())
}

/// Parses a `humantime` duration such as `"250ms"`, `"5s"` or `"1m 30s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative".to_string());
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{s}` is not a duration (expected e.g. \"500ms\", \"5s\", \"1m 30s\"): {e}")
    })
}

/// Parses a non-negative decimal USD amount with at most 6 decimals into micro-USD, exactly
/// (`"9.99"` → `9_990_000`). Never goes through floating point.
pub fn parse_usd_micros(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative".to_string());
    }
    let garbage = || format!("`{s}` is not a decimal USD amount (expected e.g. \"9.99\")");
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || t.ends_with('.') {
        return Err(garbage());
    }
    if frac.len() > 6 {
        return Err(format!("`{s}` has more than 6 decimal places"));
    }
    let too_large = || format!("`{s}` is too large");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        // At most 6 digits: always fits, and padding to 6 digits scales it to micros.
        format!("{frac:0<6}").parse().map_err(|_| garbage())?
    };
    whole
        .checked_mul(MICROS_PER_USD)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(too_large)
}

/// A price given as a bare TOML integer (whole USD).
pub fn usd_micros_from_int(n: i64) -> Result<u64, String> {
    let n = u64::try_from(n).map_err(|_| "must not be negative".to_string())?;
    n.checked_mul(MICROS_PER_USD)
        .ok_or_else(|| format!("`{n}` is too large"))
}

/// A price given as a TOML float: its shortest decimal form (`9.99` → `"9.99"`) is parsed
/// exactly, so no binary rounding leaks into the micros.
pub fn usd_micros_from_float(f: f64) -> Result<u64, String> {
    parse_usd_micros(&f.to_string())
}

/// Checks that a count or size is greater than 0.
pub fn positive(n: u64) -> Result<NonZeroU64, String> {
    NonZeroU64::new(n).ok_or_else(|| "must be greater than 0".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("1 kb"), Ok(1000));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("100MiB"), Ok(104_857_600));
        assert_eq!(parse_size("5GiB"), Ok(5_368_709_120));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size(" 1TiB "), Ok(1 << 40));
    }

    #[test]
    fn size_errors() {
        assert_eq!(parse_size("-1KiB").unwrap_err(), "must not be negative");
        for garbage in ["", "KiB", "1.5GiB", "ten", "10 XB", "0x10"] {
            let err = parse_size(garbage).unwrap_err();
            assert!(err.contains("is not a size"), "{garbage}: {err}");
        }
        assert!(
            parse_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_size("17179869184GiB")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(size_from_int(-5).unwrap_err(), "must not be negative");
        assert_eq!(size_from_int(7), Ok(7));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-5s").unwrap_err(), "must not be negative");
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(
            parse_duration("5")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn usd_prices_are_exact() {
        assert_eq!(parse_usd_micros("0.00"), Ok(0));
        assert_eq!(parse_usd_micros("9.99"), Ok(9_990_000));
        assert_eq!(parse_usd_micros("10"), Ok(10_000_000));
        assert_eq!(parse_usd_micros("0.000001"), Ok(1));
        assert_eq!(parse_usd_micros("0.1"), Ok(100_000));
        assert_eq!(usd_micros_from_float(9.99), Ok(9_990_000));
        assert_eq!(usd_micros_from_float(0.3), Ok(300_000));
        assert_eq!(usd_micros_from_int(3), Ok(3_000_000));
    }

    #[test]
    fn usd_price_errors() {
        assert_eq!(parse_usd_micros("-1").unwrap_err(), "must not be negative");
        assert_eq!(usd_micros_from_int(-1).unwrap_err(), "must not be negative");
        assert_eq!(
            usd_micros_from_float(-0.5).unwrap_err(),
            "must not be negative"
        );
        assert!(
            parse_usd_micros("0.0000001")
                .unwrap_err()
                .contains("6 decimal")
        );
        for garbage in [
            "", "$ 9.99", "9.", ".5", "1e3", "9,99", "nine", "1.2.3", "+1",
        ] {
            let err = parse_usd_micros(garbage).unwrap_err();
            assert!(err.contains("not a decimal USD amount"), "{garbage}: {err}");
        }
        assert!(usd_micros_from_float(f64::NAN).is_err());
        assert!(usd_micros_from_float(f64::INFINITY).is_err());
        assert!(
            parse_usd_micros("18446744073709551616")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_usd_micros("18446744073710")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            usd_micros_from_int(i64::MAX)
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn positive_refuses_zero() {
        assert_eq!(positive(0).unwrap_err(), "must be greater than 0");
        assert_eq!(positive(3).map(NonZeroU64::get), Ok(3));
    }
}
