//! Time arithmetic of the worklist, free of IO so it is tested directly: the SLA state of a
//! referral, how long it has waited, and the patient's age.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// A referral whose remaining time is at most this share of its SLA window is "due soon".
const DUE_SOON_SHARE: i32 = 4;

/// Where an open referral stands against its due time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlaState {
    OnTime,
    DueSoon,
    Overdue,
    /// On hold, waiting for the partner: the clock stands still (the due time moves on by the
    /// time held when the referral resumes).
    Paused,
}

impl SlaState {
    /// Every state, in the order the coordinator view counts them.
    pub const ALL: [SlaState; 4] = [SlaState::OnTime, SlaState::DueSoon, SlaState::Overdue, SlaState::Paused];

    /// The words shown with the colour, so the state never depends on colour alone.
    pub fn label(self) -> &'static str {
        match self {
            SlaState::OnTime => "On time",
            SlaState::DueSoon => "Due soon",
            SlaState::Overdue => "Overdue",
            SlaState::Paused => "Clock paused",
        }
    }

    /// The CSS class giving the colour.
    pub fn class(self) -> &'static str {
        match self {
            SlaState::OnTime => "sla-on-time",
            SlaState::DueSoon => "sla-due-soon",
            SlaState::Overdue => "sla-overdue",
            SlaState::Paused => "sla-paused",
        }
    }
}

/// Whether a Task.status is still being worked (its SLA clock runs).
pub fn is_open(status: &str) -> bool {
    matches!(status, "requested" | "received" | "accepted" | "ready" | "in-progress" | "on-hold")
}

/// The SLA state of a referral Task: `None` when it is closed or has no due time, paused while it
/// is on hold (waiting for the partner). It is due soon
/// when at most a quarter of its window (authored to due) is left, or, without an authored time,
/// a quarter of a day.
pub fn sla_state(
    status: &str,
    authored: Option<DateTime<Utc>>,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<SlaState> {
    let due = due.filter(|_| is_open(status))?;
    if status == "on-hold" {
        return Some(SlaState::Paused);
    }
    if now >= due {
        return Some(SlaState::Overdue);
    }
    let window = authored.map(|authored| due - authored).filter(|w| *w > Duration::zero()).unwrap_or(Duration::days(1));
    if due - now <= window / DUE_SOON_SHARE { Some(SlaState::DueSoon) } else { Some(SlaState::OnTime) }
}

/// A duration as people say it, to the two largest units: "3 d 4 h", "5 h 12 min", "7 min".
pub fn duration_text(duration: Duration) -> String {
    let minutes = duration.num_minutes().abs();
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}

/// "in 5 h 12 min" or "3 h 2 min ago", relative to `now`.
pub fn relative(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if time >= now { format!("in {}", duration_text(time - now)) } else { format!("{} ago", duration_text(now - time)) }
}

/// A FHIR instant or dateTime as UTC.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Whole years between a FHIR date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) and `today`. Partial
/// dates count from the start of the year or month they name.
pub fn age(birth_date: &str, today: NaiveDate) -> Option<u32> {
    let mut parts = birth_date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u32 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    let born = NaiveDate::from_ymd_opt(year, month, day)?;
    today.years_since(born)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_instant(text).unwrap()
    }

    #[test]
    fn sla_state_follows_the_remaining_share_of_the_window() {
        let authored = Some(at("2026-01-01T00:00:00Z"));
        let due = Some(at("2026-01-01T04:00:00Z"));
        let state = |now: &str| sla_state("requested", authored, due, at(now));
        assert_eq!(state("2026-01-01T01:00:00Z"), Some(SlaState::OnTime));
        assert_eq!(state("2026-01-01T02:59:59Z"), Some(SlaState::OnTime));
        assert_eq!(state("2026-01-01T03:00:00Z"), Some(SlaState::DueSoon));
        assert_eq!(state("2026-01-01T04:00:00Z"), Some(SlaState::Overdue));
        assert_eq!(state("2026-02-01T00:00:00Z"), Some(SlaState::Overdue));
        // Closed referrals and referrals without a due time have no SLA state.
        assert_eq!(sla_state("completed", authored, due, at("2026-02-01T00:00:00Z")), None);
        assert_eq!(sla_state("in-progress", authored, None, at("2026-01-01T01:00:00Z")), None);
        // Without an authored time, the last quarter of a day is "due soon".
        let due = Some(at("2026-01-01T18:00:00Z"));
        assert_eq!(sla_state("in-progress", None, due, at("2026-01-01T11:59:59Z")), Some(SlaState::OnTime));
        assert_eq!(sla_state("in-progress", None, due, at("2026-01-01T12:00:00Z")), Some(SlaState::DueSoon));
        // On hold the clock is paused, even past the due time.
        assert_eq!(sla_state("on-hold", None, due, at("2026-01-02T12:00:00Z")), Some(SlaState::Paused));
    }

    #[test]
    fn states_carry_words_and_colours() {
        for state in SlaState::ALL {
            assert!(!state.label().is_empty());
            assert!(state.class().starts_with("sla-"));
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(Duration::minutes(7)), "7 min");
        assert_eq!(duration_text(Duration::minutes(5 * 60 + 12)), "5 h 12 min");
        assert_eq!(duration_text(Duration::hours(76)), "3 d 4 h");
        let now = at("2026-01-01T12:00:00Z");
        assert_eq!(relative(at("2026-01-01T13:30:00Z"), now), "in 1 h 30 min");
        assert_eq!(relative(at("2026-01-01T11:58:00Z"), now), "2 min ago");
    }

    #[test]
    fn ages_count_whole_years_from_full_and_partial_dates() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 14).unwrap();
        assert_eq!(age("1968-03-14", today), Some(58));
        assert_eq!(age("1968-03-15", today), Some(57));
        assert_eq!(age("2020-07", today), Some(5));
        assert_eq!(age("2026", today), Some(0));
        assert_eq!(age("2026-05-01", today), None);
        assert_eq!(age("soon", today), None);
    }
}
