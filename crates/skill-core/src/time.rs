//! Timestamps: Unix seconds in, RFC 3339 (UTC) out.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`; instants beyond the years -9999 to 9999
/// are shown as the nearest one that is not.
pub fn rfc3339(unix: i64) -> String {
    let clamped = unix.clamp(jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second());
    let instant = jiff::Timestamp::from_second(clamped).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // jiff keeps a day of room for offsets at either end of its range.
        assert_eq!(rfc3339(i64::MAX), "9999-12-30T22:00:00Z");
        assert!(rfc3339(i64::MIN).starts_with("-9999-01-0"), "{}", rfc3339(i64::MIN));
    }
}
