//! Telehealth consult scheduling without IO: wall-clock times in a specialist's IANA time zone
//! turned into instants (weekly patterns across daylight-saving changes), instants shown with a
//! partner's offset, language matching for interpreters, and the proposals that pair a free
//! specialist slot with a free interpreter slot.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc, Weekday,
};
use chrono_tz::Tz;

/// Schedule.serviceType system of rex's telehealth services.
pub const SERVICE_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/telehealth-service";
/// A specialist's video consult.
pub const CONSULT_SERVICE: &str = "consult";
/// An interpreter joining a consult.
pub const INTERPRETING_SERVICE: &str = "interpreting";
/// The IANA time zone of a Schedule (FHIR extensions pack, `valueCode`).
pub const TIMEZONE_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/timezone";
/// Most slots one request may open: a year of weekday hours is about 2,000.
pub const MAX_SLOTS_PER_REQUEST: usize = 2_000;
/// Longest span of a weekly pattern.
pub const MAX_PATTERN_DAYS: i64 = 366;

/// A scheduling input that cannot be used, with the parameter it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchedulingError {
    pub parameter: &'static str,
    pub message: String,
}

fn error(parameter: &'static str, message: impl Into<String>) -> SchedulingError {
    SchedulingError { parameter, message: message.into() }
}

/// An IANA time zone name (`America/Los_Angeles`, `Asia/Dubai`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("'{name}' is not an IANA time zone (e.g. America/Los_Angeles)"))
}

/// A wall-clock date and time without offset (`2027-03-15T09:00` or with seconds).
pub fn parse_local(text: &str, parameter: &'static str) -> Result<NaiveDateTime, SchedulingError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .map_err(|_| error(parameter, format!("'{text}' is not a local date and time like 2027-03-15T09:00")))
}

/// A wall-clock time (`09:00` or `09:00:00`).
pub fn parse_time(text: &str, parameter: &'static str) -> Result<NaiveTime, SchedulingError> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .map_err(|_| error(parameter, format!("'{text}' is not a time like 09:00")))
}

/// A weekday code: `mon` … `sun` (the FHIR days-of-week codes).
pub fn parse_weekday(code: &str) -> Result<Weekday, SchedulingError> {
    match code {
        "mon" => Ok(Weekday::Mon),
        "tue" => Ok(Weekday::Tue),
        "wed" => Ok(Weekday::Wed),
        "thu" => Ok(Weekday::Thu),
        "fri" => Ok(Weekday::Fri),
        "sat" => Ok(Weekday::Sat),
        "sun" => Ok(Weekday::Sun),
        other => Err(error("weekday", format!("'{other}' is not a day of the week (mon, tue, … sun)"))),
    }
}

/// The instant a wall-clock time stands for in `zone`. A time that the clocks skip (the hour lost
/// when daylight saving starts) does not exist; a repeated one (when it ends) is its first
/// occurrence.
pub fn instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match local.and_local_timezone(zone) {
        LocalResult::Single(time) => Some(time.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// An instant written with the offset `zone` has at that instant (`2027-03-15T20:00:00+04:00`).
pub fn in_zone(instant: DateTime<Utc>, zone: Tz) -> String {
    instant.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span of time, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn covers(&self, other: &Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// Cuts the wall-clock period `from`..`to` in `zone` into slots of `minutes` (the last one may
/// not fit and is left out). Slots whose start or end the clocks skip are left out too.
fn cut(zone: Tz, from: NaiveDateTime, to: NaiveDateTime, minutes: i64, slots: &mut Vec<Span>) {
    let step = Duration::minutes(minutes);
    let mut start = from;
    while start + step <= to {
        if let (Some(a), Some(b)) = (instant(zone, start), instant(zone, start + step)) {
            slots.push(Span { start: a, end: b });
        }
        start += step;
    }
}

/// Slots of `minutes` between two wall-clock times in `zone` (a one-off opening).
pub fn one_off_slots(
    zone: Tz,
    start: NaiveDateTime,
    end: NaiveDateTime,
    minutes: i64,
) -> Result<Vec<Span>, SchedulingError> {
    check_minutes(minutes)?;
    if end <= start {
        return Err(error("end", "end must be after start"));
    }
    if end - start > Duration::days(MAX_PATTERN_DAYS) {
        return Err(error("end", format!("a one-off opening spans at most {MAX_PATTERN_DAYS} days")));
    }
    let mut slots = Vec::new();
    cut(zone, start, end, minutes, &mut slots);
    limit(slots)
}

/// A weekly pattern: the same wall-clock hours on some weekdays from one date to another
/// (inclusive), in the specialist's own zone, so 09:00 stays 09:00 across a daylight-saving change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyPattern {
    pub weekdays: Vec<Weekday>,
    pub start_time: NaiveTime,
    pub end_time: NaiveTime,
    pub from: NaiveDate,
    pub until: NaiveDate,
}

/// The slots of `minutes` a weekly pattern opens in `zone`.
pub fn weekly_slots(zone: Tz, pattern: &WeeklyPattern, minutes: i64) -> Result<Vec<Span>, SchedulingError> {
    check_minutes(minutes)?;
    if pattern.end_time <= pattern.start_time {
        return Err(error("endTime", "endTime must be after startTime"));
    }
    if pattern.until < pattern.from {
        return Err(error("until", "until must not be before from"));
    }
    if (pattern.until - pattern.from).num_days() > MAX_PATTERN_DAYS {
        return Err(error("until", format!("a weekly pattern spans at most {MAX_PATTERN_DAYS} days")));
    }
    let mut slots = Vec::new();
    let mut day = pattern.from;
    while day <= pattern.until {
        if pattern.weekdays.contains(&day.weekday()) {
            cut(zone, day.and_time(pattern.start_time), day.and_time(pattern.end_time), minutes, &mut slots);
        }
        day = day.succ_opt().ok_or_else(|| error("until", "until is out of range"))?;
    }
    limit(slots)
}

fn check_minutes(minutes: i64) -> Result<(), SchedulingError> {
    if !(5..=480).contains(&minutes) {
        return Err(error("slotMinutes", "slotMinutes must be between 5 and 480"));
    }
    Ok(())
}

fn limit(slots: Vec<Span>) -> Result<Vec<Span>, SchedulingError> {
    if slots.len() > MAX_SLOTS_PER_REQUEST {
        return Err(error("until", format!("at most {MAX_SLOTS_PER_REQUEST} slots are opened at once")));
    }
    Ok(slots)
}

/// Whether an interpreter speaking `offered` serves a patient speaking `wanted` (BCP 47 tags,
/// case-insensitive): the same tag, or one is the other's region-free form, so `ar` serves
/// `ar-AE` and `ar-AE` serves `ar`, but `zh-HK` does not serve `zh-CN`.
pub fn language_matches(wanted: &str, offered: &str) -> bool {
    let (wanted, offered) = (wanted.to_ascii_lowercase(), offered.to_ascii_lowercase());
    let within = |broad: &str, narrow: &str| narrow.strip_prefix(broad).is_some_and(|rest| rest.starts_with('-'));
    wanted == offered || within(&wanted, &offered) || within(&offered, &wanted)
}

/// A free slot: its id and span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSlot {
    pub id: String,
    pub span: Span,
}

/// A consult time rex can offer: the specialist's slot and, when one is needed, an interpreter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub consult: Span,
    pub specialist_slot: String,
    pub interpreter_slot: Option<String>,
}

/// The consult requirements: how long, and the window it must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub minutes: i64,
    pub window: Span,
}

impl Requirement {
    /// The consult a specialist slot would hold: from the slot's start for the consult's length,
    /// when that fits the slot and the window.
    pub fn consult_in(&self, slot: &Span) -> Option<Span> {
        let consult = Span { start: slot.start, end: slot.start + Duration::minutes(self.minutes) };
        (slot.covers(&consult) && self.window.covers(&consult)).then_some(consult)
    }
}

/// Up to `limit` proposals in time order: each free specialist slot that holds the consult, paired,
/// when `interpreters` is given, with the first free interpreter slot covering the consult (the
/// slots of the interpreters whose languages match). Without a covering interpreter slot, a time
/// is not offered.
pub fn proposals(
    requirement: &Requirement,
    specialist: &[FreeSlot],
    interpreters: Option<&[FreeSlot]>,
    limit: usize,
) -> Vec<Proposal> {
    let mut specialist: Vec<&FreeSlot> = specialist.iter().collect();
    specialist.sort_by_key(|slot| (slot.span.start, slot.id.clone()));
    let mut found = Vec::new();
    for slot in specialist {
        if found.len() >= limit {
            break;
        }
        let Some(consult) = requirement.consult_in(&slot.span) else { continue };
        let interpreter_slot = match interpreters {
            None => None,
            Some(slots) => match slots.iter().filter(|i| i.span.covers(&consult)).min_by_key(|i| (i.span.start, &i.id))
            {
                Some(interpreter) => Some(interpreter.id.clone()),
                None => continue,
            },
        };
        found.push(Proposal { consult, specialist_slot: slot.id.clone(), interpreter_slot });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nine_o_clock_in_los_angeles_stays_nine_across_the_march_change() {
        let zone = parse_zone("America/Los_Angeles").unwrap();
        let pattern = WeeklyPattern {
            weekdays: vec![Weekday::Mon],
            start_time: parse_time("09:00", "startTime").unwrap(),
            end_time: parse_time("10:00", "endTime").unwrap(),
            from: NaiveDate::from_ymd_opt(2027, 3, 8).unwrap(),
            until: NaiveDate::from_ymd_opt(2027, 3, 15).unwrap(),
        };
        let slots = weekly_slots(zone, &pattern, 30).unwrap();
        let starts: Vec<DateTime<Utc>> = slots.iter().map(|s| s.start).collect();
        // PST (-08:00) on 8 March, PDT (-07:00) from 14 March 2027.
        assert_eq!(
            starts,
            vec![
                utc("2027-03-08T17:00:00Z"),
                utc("2027-03-08T17:30:00Z"),
                utc("2027-03-15T16:00:00Z"),
                utc("2027-03-15T16:30:00Z")
            ]
        );
        let dubai = parse_zone("Asia/Dubai").unwrap();
        assert_eq!(in_zone(starts[0], dubai), "2027-03-08T21:00:00+04:00");
        assert_eq!(in_zone(starts[2], dubai), "2027-03-15T20:00:00+04:00");
        assert_eq!(in_zone(starts[2], zone), "2027-03-15T09:00:00-07:00");
    }

    #[test]
    fn the_skipped_hour_opens_no_slot_and_the_repeated_hour_its_first() {
        let zone = parse_zone("America/Los_Angeles").unwrap();
        let start = parse_local("2027-03-14T01:00", "start").unwrap();
        let end = parse_local("2027-03-14T04:00", "end").unwrap();
        let slots = one_off_slots(zone, start, end, 60).unwrap();
        // 01:00-02:00 has no end (02:00 does not exist), 02:00-03:00 no start: only 03:00-04:00.
        assert_eq!(slots, vec![Span { start: utc("2027-03-14T10:00:00Z"), end: utc("2027-03-14T11:00:00Z") }]);
        let repeated = parse_local("2027-11-07T01:30", "start").unwrap();
        assert_eq!(instant(zone, repeated), Some(utc("2027-11-07T08:30:00Z")));
    }

    #[test]
    fn bad_inputs_name_their_parameter() {
        let zone = parse_zone("UTC").unwrap();
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(parse_weekday("monday").unwrap_err().parameter, "weekday");
        let start = parse_local("2027-01-01T10:00", "start").unwrap();
        assert_eq!(one_off_slots(zone, start, start, 30).unwrap_err().parameter, "end");
        assert_eq!(one_off_slots(zone, start, start + Duration::hours(1), 1).unwrap_err().parameter, "slotMinutes");
        assert!(parse_local("2027-01-01", "start").is_err());
    }

    #[test]
    fn a_language_matches_its_regional_variants() {
        assert!(language_matches("ar-AE", "ar"));
        assert!(language_matches("ar", "ar-AE"));
        assert!(language_matches("es-mx", "es-MX"));
        assert!(!language_matches("zh-HK", "zh-CN"));
        assert!(!language_matches("ar", "arn"));
        assert!(!language_matches("fr", "es"));
    }

    #[test]
    fn proposals_pair_a_specialist_slot_with_a_covering_interpreter_slot() {
        let slot = |id: &str, start: &str, end: &str| FreeSlot {
            id: id.into(),
            span: Span { start: utc(start), end: utc(end) },
        };
        let specialist = vec![
            slot("s2", "2027-03-15T17:00:00Z", "2027-03-15T18:00:00Z"),
            slot("s1", "2027-03-15T16:00:00Z", "2027-03-15T17:00:00Z"),
            slot("s0", "2027-03-15T08:00:00Z", "2027-03-15T08:30:00Z"),
        ];
        let interpreters = vec![slot("i1", "2027-03-15T17:00:00Z", "2027-03-15T19:00:00Z")];
        let requirement = Requirement {
            minutes: 45,
            window: Span { start: utc("2027-03-15T00:00:00Z"), end: utc("2027-03-16T00:00:00Z") },
        };
        let without = proposals(&requirement, &specialist, None, 10);
        // s0 is too short for 45 minutes.
        assert_eq!(without.iter().map(|p| p.specialist_slot.as_str()).collect::<Vec<_>>(), vec!["s1", "s2"]);
        let with = proposals(&requirement, &specialist, Some(&interpreters), 10);
        assert_eq!(with.len(), 1);
        assert_eq!(with[0].interpreter_slot.as_deref(), Some("i1"));
        assert_eq!(with[0].consult.end, utc("2027-03-15T17:45:00Z"));
        assert_eq!(proposals(&requirement, &specialist, None, 1).len(), 1);
    }
}
