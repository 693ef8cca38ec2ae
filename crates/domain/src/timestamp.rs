//! Timestamps from outside, made safe to keep and to compute with.
//!
//! RFC 3339 allows offsets up to ±23:59, so `9999-12-31T23:59:59-23:59` parses, but its UTC
//! value lies past what the `time` crate can hold: converting it — as the database encoder
//! does — panics. Every timestamp that comes in is therefore converted to UTC here, bounded to
//! years Beckon can add cooldowns, leads and retry delays to without overflow, and truncated
//! to the microseconds PostgreSQL keeps.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 timestamp (e.g. 2026-12-01T09:30:00Z)")]
    Syntax,
    #[error("outside the years 1970 to 9000 once converted to UTC")]
    OutOfRange,
}

/// The earliest instant accepted: the Unix epoch.
pub const EARLIEST: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

/// The latest instant accepted: far enough below the `time` crate's limit (year 9999) that any
/// delay Beckon adds to it stays representable.
pub const LATEST: OffsetDateTime = PrimitiveDateTime::new(
    match Date::from_calendar_date(9000, Month::January, 1) {
        Ok(d) => d,
        Err(_) => panic!("a valid date"),
    },
    Time::MIDNIGHT,
)
.assume_utc();

/// Parses an RFC 3339 timestamp into UTC, bounded and truncated to microseconds.
pub fn parse_utc(raw: &str) -> Result<OffsetDateTime, TimestampError> {
    let parsed = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| TimestampError::Syntax)?;
    let utc = parsed
        .checked_to_offset(UtcOffset::UTC)
        .filter(|t| (EARLIEST..=LATEST).contains(t))
        .ok_or(TimestampError::OutOfRange)?;
    utc.replace_nanosecond(utc.nanosecond() / 1000 * 1000)
        .map_err(|_| TimestampError::OutOfRange)
}

/// The current UTC time truncated to microseconds, for an instant both stored and sent, so the
/// two read the same.
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_offsets_and_years_are_refused_instead_of_overflowing() {
        for raw in [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00+23:59",
            "1969-12-31T23:59:59Z",
            "9000-01-01T00:00:00.000001Z",
        ] {
            assert_eq!(parse_utc(raw), Err(TimestampError::OutOfRange), "{raw}");
        }
        assert_eq!(parse_utc("tomorrow"), Err(TimestampError::Syntax));
    }

    #[test]
    fn timestamps_are_converted_to_utc_and_truncated_to_microseconds() {
        let t = parse_utc("2026-12-01T09:30:00.123456789+02:00").expect("valid");
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!((t.hour(), t.nanosecond()), (7, 123_456_000));
        assert_eq!(parse_utc("9000-01-01T00:00:00Z"), Ok(LATEST));
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Ok(EARLIEST));
    }
}
