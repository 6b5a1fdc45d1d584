//! Timestamps on the wire: ISO 8601, UTC, microseconds, `Z` (design §1).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// ISO 8601 with an offset; without one (Python's naive `isoformat()`), UTC; a bare date is its
/// midnight UTC; digits are Unix seconds.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    raw.parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn iso_has_micros_and_z() {
        let t = chrono::Utc
            .timestamp_opt(1_705_322_096, 123_456_000)
            .unwrap();
        assert_eq!(super::iso(t), "2024-01-15T12:34:56.123456Z");
    }

    #[test]
    fn times_with_and_without_offsets() {
        use super::parse_time;
        let utc = parse_time("2026-01-01T10:00:00Z").unwrap();
        assert_eq!(parse_time("2026-01-01T10:00:00").unwrap(), utc);
        assert_eq!(parse_time("2026-01-01T11:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-01-01T10:00:00.000000").unwrap(), utc);
        assert_eq!(parse_time("1767261600").unwrap(), utc);
        assert!(parse_time("2026-01-01").is_some());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2024-13-01").is_none());
    }
}
