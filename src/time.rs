//! Timestamps on the wire: ISO 8601, UTC, microseconds, `Z` (design §1).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
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
}
