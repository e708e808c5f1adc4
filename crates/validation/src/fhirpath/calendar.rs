//! Dates, dateTimes and times as FHIRPath sees them: literals, calendar durations, arithmetic on the text form,
//! comparison by parts, boundaries and today.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::EvalError;

pub(super) fn is_calendar_unit(u: &str) -> bool {
    matches!(
        u,
        "year"
            | "years"
            | "month"
            | "months"
            | "week"
            | "weeks"
            | "day"
            | "days"
            | "hour"
            | "hours"
            | "minute"
            | "minutes"
            | "second"
            | "seconds"
            | "millisecond"
            | "milliseconds"
    )
}

pub(super) fn valid_date_literal(d: &str) -> bool {
    let parts: Vec<&str> = d.split('-').collect();
    parts.len() <= 3
        && parts[0].len() == 4
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1..].iter().all(|p| p.len() == 2)
        && parts.get(1).is_none_or(|m| ("01".."13").contains(m))
}

pub(super) fn valid_time_literal(t: &str) -> bool {
    let main = t.split('.').next().unwrap_or("");
    let parts: Vec<&str> = main.split(':').collect();
    !parts.is_empty() && parts.len() <= 3 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn valid_datetime_literal(d: &str) -> bool {
    let (date, rest) = d.split_once('T').unwrap_or((d, ""));
    if !valid_date_literal(date) {
        return false;
    }
    let rest = rest.trim_end_matches('Z');
    let time = match rest.find(['+', '-']) {
        Some(p) => &rest[..p],
        None => rest,
    };
    time.is_empty() || valid_time_literal(time)
}

/// Date arithmetic on the textual form (years, months, days; hours etc. on dateTimes).
pub(super) fn add_duration(d: &str, v: f64, unit: &str, sub: bool) -> Result<Option<String>, EvalError> {
    // UCUM years and months are not calendar durations.
    if unit == "a" || unit == "mo" {
        return Err(format!("'{unit}' is not a calendar duration; use year or month"));
    }
    let n = if sub { -v } else { v } as i64;
    if let Some(ms) = match unit {
        "hour" | "hours" | "h" => Some(3_600_000),
        "minute" | "minutes" | "min" => Some(60_000),
        "second" | "seconds" | "s" => Some(1000),
        "millisecond" | "milliseconds" | "ms" => Some(1),
        _ => None,
    } {
        return Ok(add_time(d, n * ms));
    }
    let (date, rest) = match d.find('T') {
        Some(p) => (&d[..p], &d[p..]),
        None => (d, ""),
    };
    let parts: Vec<i64> = date.split('-').filter_map(|p| p.parse().ok()).collect();
    let (mut y, mut m, mut day) = (parts[0], parts.get(1).copied().unwrap_or(1), parts.get(2).copied().unwrap_or(1));
    let unit = unit.trim_end_matches('s');
    match unit {
        "year" | "a" => y += n,
        "month" | "mo" => {
            let total = y * 12 + (m - 1) + n;
            y = total.div_euclid(12);
            m = total.rem_euclid(12) + 1;
        }
        "week" | "wk" | "day" | "d" => {
            let days = if unit.starts_with('w') { n * 7 } else { n };
            let jd = days_from_civil(y, m, day) + days;
            let (a, b, c) = civil_from_days(jd);
            y = a;
            m = b;
            day = c;
        }
        _ => return Ok(None),
    }
    let dim = days_in_month(y, m);
    if day > dim {
        day = dim;
    }
    let out = match parts.len() {
        1 => format!("{y:04}"),
        2 => format!("{y:04}-{m:02}"),
        _ => format!("{y:04}-{m:02}-{day:02}"),
    };
    Ok(Some(out + rest))
}

/// Adds milliseconds to a dateTime that has a time part, keeping its precision and timezone.
pub(super) fn add_time(d: &str, delta_ms: i64) -> Option<String> {
    let (date, time) = d.split_once('T')?;
    let (time, tz) = match time.find(['Z', '+', '-']) {
        Some(p) => (&time[..p], &time[p..]),
        None => (time, ""),
    };
    let dp: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (y, mo, day) = (dp[0], *dp.get(1)?, *dp.get(2)?);
    let tp: Vec<&str> = time.split(':').collect();
    let hour: i64 = tp[0].parse().ok()?;
    let minute: i64 = tp.get(1).map_or(Some(0), |m| m.parse().ok())?;
    let (sec, frac) = tp.get(2).map_or(("0", ""), |s| s.split_once('.').unwrap_or((s, "")));
    let millis = if frac.is_empty() { 0 } else { format!("{frac:0<3}")[..3].parse::<i64>().ok()? };
    let total = days_from_civil(y, mo, day) * 86_400_000
        + hour * 3_600_000
        + minute * 60_000
        + sec.parse::<i64>().ok()? * 1000
        + millis
        + delta_ms;
    let (y, mo, day) = civil_from_days(total.div_euclid(86_400_000));
    let t = total.rem_euclid(86_400_000);
    let mut out = format!("{y:04}-{mo:02}-{day:02}T{:02}", t / 3_600_000);
    if tp.len() > 1 {
        out.push_str(&format!(":{:02}", t / 60_000 % 60));
    }
    if tp.len() > 2 {
        out.push_str(&format!(":{:02}", t / 1000 % 60));
    }
    if !frac.is_empty() {
        out.push_str(&format!(".{:03}", t % 1000));
    }
    Some(out + tz)
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Splits a date/time into numeric components and an optional timezone offset in minutes.
pub(super) fn dt_parts(s: &str) -> (Vec<f64>, Option<i64>) {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts: Vec<f64> = Vec::new();
    if !date.is_empty() {
        parts.extend(date.split('-').filter_map(|p| p.parse::<f64>().ok()));
    }
    let mut tz = None;
    if let Some(t) = time {
        let (t, z) = if let Some(t) = t.strip_suffix('Z') {
            (t, Some(0))
        } else if let Some(p) = t.rfind(['+', '-']) {
            let sign = if &t[p..p + 1] == "-" { -1 } else { 1 };
            let hm: Vec<i64> = t[p + 1..].split(':').filter_map(|x| x.parse().ok()).collect();
            (&t[..p], Some(sign * (hm.first().copied().unwrap_or(0) * 60 + hm.get(1).copied().unwrap_or(0))))
        } else {
            (t, None)
        };
        tz = z;
        for (i, p) in t.split(':').enumerate() {
            if p.is_empty() {
                continue;
            }
            let _ = i;
            parts.push(p.parse::<f64>().unwrap_or(0.0));
        }
    }
    (parts, tz)
}

pub(super) fn time_parts(s: &str) -> Vec<f64> {
    s.split(':').filter_map(|p| p.parse::<f64>().ok()).collect()
}

pub(super) fn compare_parts(a: &[f64], b: &[f64], sec_index: usize) -> Option<Ordering> {
    let n = a.len().min(b.len());
    for i in 0..n {
        let (x, y) = if i == sec_index { (a[i].floor(), b[i].floor()) } else { (a[i], b[i]) };
        match x.partial_cmp(&y)? {
            Ordering::Equal => {}
            o => return Some(o),
        }
    }
    if a.len() > sec_index && b.len() > sec_index {
        return a[sec_index].partial_cmp(&b[sec_index]).filter(|o| *o != Ordering::Equal).or(Some(Ordering::Equal));
    }
    if a.len() == b.len() || (a.len().min(b.len()) > sec_index) { Some(Ordering::Equal) } else { None }
}

pub(super) fn normalize_tz(parts: &mut [f64], tz: Option<i64>) {
    if let Some(off) = tz
        && parts.len() >= 5
    {
        let total = parts[3] * 60.0 + parts[4] - off as f64;
        let jd = days_from_civil(parts[0] as i64, parts[1] as i64, parts[2] as i64);
        let day_shift = (total / 1440.0).floor();
        let minutes = total - day_shift * 1440.0;
        let (y, m, d) = civil_from_days(jd + day_shift as i64);
        parts[0] = y as f64;
        parts[1] = m as f64;
        parts[2] = d as f64;
        parts[3] = (minutes / 60.0).floor();
        parts[4] = minutes % 60.0;
    }
}

/// Calendar duration words as UCUM units, except years and months, which have no fixed UCUM length.
pub(super) fn calendar_to_ucum(u: &str) -> &str {
    match u {
        "week" | "weeks" => "wk",
        "day" | "days" => "d",
        "hour" | "hours" => "h",
        "minute" | "minutes" => "min",
        "second" | "seconds" => "s",
        "millisecond" | "milliseconds" => "ms",
        "years" => "year",
        "months" => "month",
        other => other,
    }
}

/// Date, dateTime and time boundaries: missing components are filled with their least or greatest value,
/// then the value is written with `digits` digits. A dateTime without a timezone takes the extreme ones.
pub(super) fn date_boundary(s: &str, digits: i64, high: bool, time_only: bool) -> Option<String> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None if time_only => ("", Some(s)),
        None => (s, None),
    };
    let mut tz = None;
    let mut comps: Vec<i64> = Vec::new();
    if !time_only {
        comps.extend(date.split('-').map(|p| p.parse::<i64>().ok()).collect::<Option<Vec<_>>>()?);
    }
    if let Some(t) = time {
        let (t, z) = if let Some(t) = t.strip_suffix('Z') {
            (t, Some("Z".to_string()))
        } else if let Some(p) = t.rfind(['+', '-']) {
            (&t[..p], Some(t[p..].to_string()))
        } else {
            (t, None)
        };
        tz = z;
        let mut parts = t.split(':');
        for p in parts.by_ref().take(2) {
            comps.push(p.parse().ok()?);
        }
        // an hour alone means the whole minute `hh:00`
        if comps.len() == if time_only { 1 } else { 4 } {
            comps.push(0);
        }
        if let Some(sec) = parts.next() {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            comps.push(whole.parse().ok()?);
            if !frac.is_empty() {
                comps.push(format!("{frac:0<3}")[..3].parse().ok()?);
            }
        }
    }
    let first = if time_only { 3 } else { 0 };
    let widths: &[(usize, i64)] = &[(4, 4), (2, 6), (2, 8), (2, 10), (2, 12), (2, 14), (3, 17)];
    let want = widths.iter().position(|(_, d)| *d == digits + if time_only { 8 } else { 0 })?;
    if want < first {
        return None;
    }
    let mut full: Vec<i64> = Vec::new();
    for i in first..=want {
        let have = comps.get(i - first).copied();
        let v = match have {
            Some(v) => v,
            None if !high => [1, 1, 1, 0, 0, 0, 0][i] as i64,
            None => match i {
                1 => 12,
                2 => days_in_month(full[0], full[1]),
                3 => 23,
                4 | 5 => 59,
                6 => 999,
                _ => 0,
            },
        };
        full.push(v);
    }
    let mut out = String::new();
    for (k, v) in full.iter().enumerate() {
        let i = k + first;
        let sep = match i {
            1 | 2 => "-",
            3 if !time_only => "T",
            4 | 5 => ":",
            6 => ".",
            _ => "",
        };
        out.push_str(sep);
        out.push_str(&format!("{v:0w$}", w = widths[i].0));
    }
    if !time_only && want >= 3 {
        out.push_str(&tz.unwrap_or_else(|| if high { "-12:00".into() } else { "+14:00".into() }));
    }
    Some(out)
}

/// Today's date moved by a duration (UCUM `a`, `mo`, `wk`, `d` or calendar words), for minValue/maxValue
/// given as a Duration on dates. `None` for other units.
pub(crate) fn today_offset(value: f64, unit: &str) -> Option<String> {
    let unit = match unit {
        "a" => "year",
        "mo" => "month",
        other => other,
    };
    add_duration(&now_string(false), value.abs(), unit, value < 0.0).ok().flatten()
}

pub(super) fn now_string(with_time: bool) -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    let mut s = format!("{y:04}-{m:02}-{d:02}");
    if with_time {
        let _ = write!(s, "T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60);
    }
    s
}
