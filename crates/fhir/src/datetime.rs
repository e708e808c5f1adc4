//! FHIR `date`, `dateTime` and `instant` values as the span of time they denote.
//!
//! A FHIR date is as precise as it is written: `2020` means the whole year, `2020-03-04T10:00:00Z`
//! that one second. Search compares such spans, so both the indexer and the query parser turn every
//! value into an inclusive range of microseconds since the Unix epoch.

use chrono::{Days, Months, NaiveDate, NaiveDateTime, NaiveTime};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Parses a FHIR date, dateTime or instant at any precision (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]`) into the inclusive range `(low, high)` of microseconds
/// since the Unix epoch it covers.
///
/// Values without a timezone are taken as UTC. Returns `None` for anything malformed, including
/// dates that do not exist such as `2021-02-30`.
pub fn parse_date_range(s: &str) -> Option<(i64, i64)> {
    let (date, time) = match s.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (s, None),
    };
    let fields: Vec<&str> = date.split('-').collect();
    let (start, end) = match (fields.as_slice(), time) {
        ([year], None) => {
            let start = ymd(year, "01", "01")?;
            (start, start.checked_add_months(Months::new(12))?)
        }
        ([year, month], None) => {
            let start = ymd(year, month, "01")?;
            (start, start.checked_add_months(Months::new(1))?)
        }
        ([year, month, day], None) => {
            let start = ymd(year, month, day)?;
            (start, start.checked_add_days(Days::new(1))?)
        }
        ([year, month, day], Some(time)) => return time_range(ymd(year, month, day)?, time),
        _ => return None,
    };
    Some((micros(start.and_time(NaiveTime::MIN)), micros(end.and_time(NaiveTime::MIN)) - 1))
}

/// The range of `hh:mm[:ss[.fff]][Z|±hh:mm]` on `date`: a minute, a second, or as fine as the
/// fraction is written (down to a microsecond).
fn time_range(date: NaiveDate, time: &str) -> Option<(i64, i64)> {
    let (local, offset_seconds) = if let Some(local) = time.strip_suffix('Z') {
        (local, 0)
    } else if let Some(at) = time.find(['+', '-']) {
        let (hours, minutes) = time[at + 1..].split_once(':')?;
        let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
        if hours > 14 || minutes > 59 {
            return None;
        }
        let magnitude = i64::from(hours * 3600 + minutes * 60);
        (&time[..at], if time.as_bytes()[at] == b'-' { -magnitude } else { magnitude })
    } else {
        (time, 0)
    };
    let mut fields = local.split(':');
    let hour = digits(fields.next()?, 2)?;
    let minute = digits(fields.next()?, 2)?;
    let (second, fraction_micros, span) = match fields.next() {
        None => (0, 0, 60 * MICROS_PER_SECOND),
        Some(seconds) => match seconds.split_once('.') {
            None => (digits(seconds, 2)?, 0, MICROS_PER_SECOND),
            Some((whole, fraction)) => {
                let (micros, span) = fraction_micros(fraction)?;
                (digits(whole, 2)?, micros, span)
            }
        },
    };
    if fields.next().is_some() {
        return None;
    }
    let start = date.and_time(NaiveTime::from_hms_opt(hour, minute, second)?);
    let low = micros(start) + fraction_micros - offset_seconds * MICROS_PER_SECOND;
    Some((low, low + span - 1))
}

/// Microseconds of a fractional second and the span its precision covers; digits beyond the
/// sixth are below what we store, so they only narrow the span to one microsecond.
fn fraction_micros(fraction: &str) -> Option<(i64, i64)> {
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kept = &fraction[..fraction.len().min(6)];
    let scale = 10i64.pow(6 - kept.len() as u32);
    Some((kept.parse::<i64>().ok()? * scale, scale))
}

fn ymd(year: &str, month: &str, day: &str) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(digits(year, 4)? as i32, digits(month, 2)?, digits(day, 2)?)
}

/// Parses exactly `len` ASCII digits.
fn digits(s: &str, len: usize) -> Option<u32> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None }
}

fn micros(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap().and_utc().timestamp_micros()
    }

    #[test]
    fn dates_cover_their_precision() {
        assert_eq!(parse_date_range("2020"), Some((utc("2020-01-01 00:00:00"), utc("2020-12-31 23:59:59.999999"))));
        assert_eq!(parse_date_range("2020-02"), Some((utc("2020-02-01 00:00:00"), utc("2020-02-29 23:59:59.999999"))));
        assert_eq!(parse_date_range("2019-12"), Some((utc("2019-12-01 00:00:00"), utc("2019-12-31 23:59:59.999999"))));
        assert_eq!(
            parse_date_range("1974-12-25"),
            Some((utc("1974-12-25 00:00:00"), utc("1974-12-25 23:59:59.999999")))
        );
        assert_eq!(parse_date_range("1970-01-01"), Some((0, 86_400 * MICROS_PER_SECOND - 1)));
    }

    #[test]
    fn times_honour_timezone_and_precision() {
        let second = utc("2020-03-04 09:00:00");
        assert_eq!(parse_date_range("2020-03-04T10:00:00+01:00"), Some((second, second + MICROS_PER_SECOND - 1)));
        assert_eq!(parse_date_range("2020-03-04T04:00:00-05:00"), Some((second, second + MICROS_PER_SECOND - 1)));
        assert_eq!(parse_date_range("2020-03-04T09:00:00Z"), Some((second, second + MICROS_PER_SECOND - 1)));
        // No timezone: taken as UTC.
        assert_eq!(parse_date_range("2020-03-04T09:00:00"), Some((second, second + MICROS_PER_SECOND - 1)));
        assert_eq!(parse_date_range("2020-03-04T09:00Z"), Some((second, second + 60 * MICROS_PER_SECOND - 1)));
        let fraction = utc("2020-03-04 09:00:00.250");
        assert_eq!(parse_date_range("2020-03-04T09:00:00.25Z"), Some((fraction, fraction + 9_999)));
        assert_eq!(parse_date_range("2020-03-04T09:00:00.250000123Z"), Some((fraction, fraction)));
        // An offset can push the instant into the previous day.
        assert_eq!(parse_date_range("2020-01-01T00:30:00+01:00").unwrap().0, utc("2019-12-31 23:30:00"));
    }

    #[test]
    fn rejects_malformed_and_impossible_values() {
        for bad in [
            "",
            "20",
            "2020-1",
            "2020-13",
            "2021-02-30",
            "2020-02-30",
            "2020-00-10",
            "2020-01-01T",
            "2020-01-01T25:00:00Z",
            "2020-01-01T10:60:00Z",
            "2020-01-01T10:00:61Z",
            "2020-01-01T10:00:00+15:00",
            "2020-01-01T10:00:00.Z",
            "2020-01-01T10:00:00+0100",
            "2020-01T10:00:00Z",
            "2020-01-01-01",
            "abcd",
            "2020-01-01 10:00:00",
            "+2020",
        ] {
            assert_eq!(parse_date_range(bad), None, "{bad:?} should be rejected");
        }
        assert!(parse_date_range("2020-02-29").is_some());
        assert!(parse_date_range("2100-02-29").is_none());
    }
}
