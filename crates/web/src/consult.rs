//! Telehealth consults in the worklist: the consult on the referral page (the specialist's and
//! the partner's local times side by side, interpreter, language, video link) or the form asking
//! for one, the upcoming consults on the worklist, and the page where a specialist opens slots.
//! Everything goes through the FHIR API with the user's token.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use rex_referral::scheduling::{CONSULT_SERVICE, SERVICE_SYSTEM, TIMEZONE_EXTENSION};
use serde_json::{Value, json};

use crate::api::{Api, Failure, query};
use crate::html::{escape, message};
use crate::session::User;

const ATTENDER: &str = "ATND";
const VIRTUAL_SERVICE: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService";

fn consult_service() -> String {
    format!("{SERVICE_SYSTEM}|{CONSULT_SERVICE}")
}

/// The latest consult of a referral (any status), if any.
pub async fn of_referral(api: &Api, user: &User, service_request: &str) -> Result<Option<Value>, Failure> {
    let search = format!(
        "Appointment?{}",
        query(&[
            ("based-on", service_request),
            ("service-type", &consult_service()),
            ("_sort", "-_lastUpdated"),
            ("_count", "1")
        ])
    );
    Ok(api.search(user, &search).await?.matches.into_iter().next())
}

fn specialist_of(consult: &Value) -> Option<&str> {
    consult["participant"].as_array()?.iter().find_map(|p| {
        let attends = p["type"][0]["coding"].as_array()?.iter().any(|c| c["code"] == ATTENDER);
        attends.then(|| p["actor"]["reference"].as_str()).flatten()
    })
}

fn interpreter_of(consult: &Value) -> Option<&str> {
    consult["participant"].as_array()?.iter().find_map(|p| {
        let translates = p["type"][0]["coding"].as_array()?.iter().any(|c| c["code"] == "translator");
        translates.then(|| p["actor"]["reference"].as_str()).flatten()
    })
}

fn rex_extension<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    let url = format!("{}/StructureDefinition/{name}", rex_referral::REX_CANONICAL);
    resource["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())
}

/// The IANA zones of the specialists' consult schedules, by PractitionerRole reference.
pub async fn specialist_zones<'a>(
    api: &Api,
    user: &User,
    specialists: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, Tz>, Failure> {
    let mut actors: Vec<&str> = specialists.collect();
    actors.sort();
    actors.dedup();
    if actors.is_empty() {
        return Ok(BTreeMap::new());
    }
    let search = format!(
        "Schedule?{}",
        query(&[("actor", &actors.join(",")), ("service-type", &consult_service()), ("_count", "100")])
    );
    let mut zones = BTreeMap::new();
    for schedule in api.search(user, &search).await?.matches {
        let zone = schedule["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == TIMEZONE_EXTENSION)
            .and_then(|e| e["valueCode"].as_str()?.parse::<Tz>().ok());
        if let (Some(actor), Some(zone)) = (schedule["actor"][0]["reference"].as_str(), zone) {
            zones.insert(actor.to_string(), zone);
        }
    }
    Ok(zones)
}

/// A language's name from its BCP 47 tag (`ar-AE` → Arabic (United Arab Emirates)); the tag
/// itself when rex does not know the language.
pub fn language_name(tag: &str) -> String {
    let mut parts = tag.split('-');
    let language = match parts.next().unwrap_or_default().to_ascii_lowercase().as_str() {
        "ar" => "Arabic",
        "zh" => "Chinese",
        "yue" => "Cantonese",
        "cmn" => "Mandarin",
        "es" => "Spanish",
        "fr" => "French",
        "en" => "English",
        "pt" => "Portuguese",
        "ru" => "Russian",
        "de" => "German",
        "it" => "Italian",
        "hi" => "Hindi",
        "ur" => "Urdu",
        "fa" => "Persian",
        "tr" => "Turkish",
        "ja" => "Japanese",
        "ko" => "Korean",
        "vi" => "Vietnamese",
        _ => return tag.to_string(),
    };
    let region = parts.find(|p| p.len() == 2).map(|r| match r.to_ascii_uppercase().as_str() {
        "AE" => "United Arab Emirates".to_string(),
        "SA" => "Saudi Arabia".to_string(),
        "EG" => "Egypt".to_string(),
        "MX" => "Mexico".to_string(),
        "ES" => "Spain".to_string(),
        "US" => "United States".to_string(),
        "GB" => "United Kingdom".to_string(),
        "FR" => "France".to_string(),
        "CN" => "China".to_string(),
        "HK" => "Hong Kong".to_string(),
        "TW" => "Taiwan".to_string(),
        "SG" => "Singapore".to_string(),
        "BR" => "Brazil".to_string(),
        other => other.to_string(),
    });
    match region {
        Some(region) => format!("{language} ({region})"),
        None => language.to_string(),
    }
}

/// `Mon 15 Mar 2027, 09:00` of an instant in `zone`.
fn wall_clock(instant: DateTime<Utc>, zone: Tz) -> String {
    instant.with_timezone(&zone).format("%a %-d %b %Y, %H:%M").to_string()
}

/// The consult's time as the specialist sees it and as the partner does (the stored time carries
/// the partner's offset).
fn times(consult: &Value, specialist_zone: Option<Tz>) -> Option<(String, String)> {
    let stored = consult["start"].as_str()?;
    let partner = DateTime::parse_from_rfc3339(stored).ok()?;
    let instant = partner.with_timezone(&Utc);
    let specialist = match specialist_zone {
        Some(zone) => format!("{} ({})", wall_clock(instant, zone), zone.name()),
        None => format!("{} (UTC)", wall_clock(instant, chrono_tz::UTC)),
    };
    let partner_text = format!("{} (UTC{})", partner.format("%a %-d %b %Y, %H:%M"), partner.format("%:z"));
    Some((specialist, partner_text))
}

/// The consult section of a referral page: the consult when there is one, else (for the
/// specialist who owns a referral in progress) the form asking for one.
pub fn section(task: &Value, consult: Option<&Value>, specialist_zone: Option<Tz>, user: &User, csrf: &str) -> String {
    let Some(consult) = consult.filter(|c| c["status"] != "cancelled") else {
        let owns = user.practitioner_role.as_deref().is_some_and(|own| task["owner"]["reference"] == own);
        if task["status"] != "in-progress" || !owns {
            return String::new();
        }
        return request_form(task["id"].as_str().unwrap_or_default(), csrf);
    };
    let status = match consult["status"].as_str() {
        Some("proposed") => "Proposed: waiting for the partner to book a time",
        Some("booked") => "Booked",
        Some(other) => other,
        None => "",
    };
    let mut rows = vec![("Status", escape(status))];
    if let Some((specialist, partner)) = times(consult, specialist_zone) {
        rows.push(("Specialist's time", escape(&specialist)));
        rows.push(("Partner's local time", escape(&partner)));
    } else if let Some(period) = consult["requestedPeriod"][0].as_object() {
        let text = format!(
            "{} to {}",
            period.get("start").and_then(Value::as_str).unwrap_or_default(),
            period.get("end").and_then(Value::as_str).unwrap_or_default()
        );
        rows.push(("Requested between", escape(&text)));
    }
    if let Some(minutes) = consult["minutesDuration"].as_i64() {
        rows.push(("Length", format!("{minutes} minutes")));
    }
    if let Some(language) = rex_extension(consult, "consult-interpreter-language").and_then(|e| e["valueCode"].as_str())
    {
        let who = interpreter_of(consult).map(|i| format!(", {i}")).unwrap_or_else(|| ", not booked yet".into());
        rows.push(("Interpreter", escape(&format!("{}{who}", language_name(language)))));
    }
    let link = consult["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == VIRTUAL_SERVICE)
        .and_then(|e| e["extension"][0]["valueUrl"].as_str());
    if let Some(link) = link {
        rows.push(("Video link", format!(r#"<a href="{0}">{0}</a>"#, escape(link))));
    }
    let rows: String =
        rows.iter().map(|(name, value)| format!("<tr><th scope=\"row\">{name}</th><td>{value}</td></tr>")).collect();
    format!(
        r#"<section aria-labelledby="h-consult"><h2 id="h-consult">Telehealth consult</h2><table class="facts">{rows}</table></section>
"#
    )
}

fn request_form(task: &str, csrf: &str) -> String {
    format!(
        r#"<section aria-labelledby="h-consult"><h2 id="h-consult">Telehealth consult</h2>
<form class="action" method="post" action="/ui/referral/{task}/request-consult"><input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>Ask the partner to book a video consult</legend>
<label for="consult-minutes">Length (minutes)</label><input id="consult-minutes" name="minutes" type="number" min="10" max="240" value="30" required>
<label for="consult-earliest">Earliest day</label><input id="consult-earliest" name="earliest" type="date" required>
<label for="consult-latest">Latest day</label><input id="consult-latest" name="latest" type="date" required>
<label><input name="interpreter" type="checkbox" value="true"> An interpreter is needed (default: as the referral says)</label>
</fieldset><button type="submit">Request consult</button></form></section>
"#,
        task = escape(task),
        csrf = escape(csrf),
    )
}

/// The Parameters of `$request-consult` from the referral page's form: days are whole UTC days.
pub fn request_parameters(fields: &[(String, String)]) -> Value {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let mut parameter = Vec::new();
    if let Some(minutes) = field("minutes").and_then(|m| m.parse::<i64>().ok()) {
        parameter.push(json!({"name": "minutesDuration", "valueInteger": minutes}));
    }
    if let Some(day) = field("earliest") {
        parameter.push(json!({"name": "earliest", "valueDateTime": format!("{day}T00:00:00Z")}));
    }
    if let Some(day) = field("latest") {
        parameter.push(json!({"name": "latest", "valueDateTime": format!("{day}T23:59:59Z")}));
    }
    if field("interpreter") == Some("true") {
        parameter.push(json!({"name": "interpreter", "valueBoolean": true}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// The upcoming booked consults (the specialist's own; every one for coordinators), for the
/// worklist, with links to their referrals.
pub async fn upcoming(api: &Api, user: &User, now: DateTime<Utc>) -> Result<String, Failure> {
    let from = format!("ge{}", now.to_rfc3339_opts(SecondsFormat::Secs, true));
    let service = consult_service();
    let mut pairs = vec![
        ("status", "booked"),
        ("service-type", service.as_str()),
        ("date", from.as_str()),
        ("_sort", "date"),
        ("_count", "20"),
    ];
    if let (Some(own), false) = (user.practitioner_role.as_deref(), user.is_coordinator()) {
        pairs.push(("actor", own));
    }
    let consults = api.search(user, &format!("Appointment?{}", query(&pairs))).await?.matches;
    if consults.is_empty() {
        return Ok(String::new());
    }
    let zones = specialist_zones(api, user, consults.iter().filter_map(specialist_of)).await?;
    let referrals: Vec<&str> = consults.iter().filter_map(|c| c["basedOn"][0]["reference"].as_str()).collect();
    let tasks =
        api.search(user, &format!("Task?{}", query(&[("focus", &referrals.join(",")), ("_count", "100")]))).await?;
    let task_of: BTreeMap<&str, &str> =
        tasks.matches.iter().filter_map(|t| Some((t["focus"]["reference"].as_str()?, t["id"].as_str()?))).collect();
    let rows: String = consults
        .iter()
        .map(|consult| {
            let zone = specialist_of(consult).and_then(|s| zones.get(s)).copied();
            let (specialist, partner) = times(consult, zone).unwrap_or_default();
            let language = rex_extension(consult, "consult-interpreter-language")
                .and_then(|e| e["valueCode"].as_str())
                .map(language_name)
                .unwrap_or_else(|| "—".into());
            let referral = consult["basedOn"][0]["reference"].as_str().unwrap_or_default();
            let link = match task_of.get(referral) {
                Some(task) => format!(r#"<a href="/ui/referral/{}">Referral</a>"#, escape(task)),
                None => escape(referral),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{link}</td></tr>",
                escape(&specialist),
                escape(&partner),
                escape(&language)
            )
        })
        .collect();
    Ok(format!(
        r#"<section aria-labelledby="h-upcoming"><h2 id="h-upcoming">Upcoming telehealth consults</h2>
<table><thead><tr><th scope="col">Specialist's time</th><th scope="col">Partner's local time</th><th scope="col">Interpreter</th><th scope="col">Referral</th></tr></thead><tbody>{rows}</tbody></table></section>
"#
    ))
}

/// The page where a specialist opens slots: the form and their upcoming slots.
pub async fn slots_page(
    api: &Api,
    user: &User,
    csrf: &str,
    notice: &str,
    now: DateTime<Utc>,
) -> Result<String, Failure> {
    let Some(own) = user.practitioner_role.as_deref() else {
        return Ok(format!(
            "<h1>My consult slots</h1>{}",
            message("error", "Only a specialist with a PractitionerRole has slots.")
        ));
    };
    let zones = specialist_zones(api, user, std::iter::once(own)).await?;
    let zone = zones.get(own).copied();
    let schedules = api
        .search(user, &format!("Schedule?{}", query(&[("actor", own), ("service-type", &consult_service())])))
        .await?
        .matches;
    let mut rows = String::new();
    if let Some(schedule) = schedules.first().and_then(|s| s["id"].as_str()) {
        let from = format!("ge{}", now.to_rfc3339_opts(SecondsFormat::Secs, true));
        let search = format!(
            "Slot?{}",
            query(&[
                ("schedule", &format!("Schedule/{schedule}")),
                ("start", &from),
                ("_sort", "start"),
                ("_count", "50")
            ])
        );
        for slot in api.search(user, &search).await?.matches {
            let start = slot["start"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            let start =
                start.map(|s| wall_clock(s.with_timezone(&Utc), zone.unwrap_or(chrono_tz::UTC))).unwrap_or_default();
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&start),
                escape(slot["status"].as_str().unwrap_or_default())
            ));
        }
    }
    let zone_name = zone.map(|z| z.name()).unwrap_or("America/Los_Angeles");
    let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!(r#"<label><input type="checkbox" name="weekday" value="{d}"> {d}</label>"#))
        .collect();
    Ok(format!(
        r#"<h1>My consult slots</h1>{notice}
<form class="action" method="post" action="/ui/slots"><input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>Open weekly slots in your time zone</legend>
<label for="slots-zone">Time zone (IANA)</label><input id="slots-zone" name="timezone" value="{zone_name}" required>
<div>{days}</div>
<label for="slots-from">From</label><input id="slots-from" name="from" type="date" required>
<label for="slots-until">Until</label><input id="slots-until" name="until" type="date" required>
<label for="slots-start">From time</label><input id="slots-start" name="startTime" type="time" value="09:00" required>
<label for="slots-end">To time</label><input id="slots-end" name="endTime" type="time" value="12:00" required>
<label for="slots-minutes">Slot length (minutes)</label><input id="slots-minutes" name="slotMinutes" type="number" min="5" max="480" value="30" required>
</fieldset><button type="submit">Open slots</button></form>
<form class="action" method="post" action="/ui/slots/block"><input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>Block time (your time zone)</legend>
<label for="block-start">From</label><input id="block-start" name="start" type="datetime-local" required>
<label for="block-end">To</label><input id="block-end" name="end" type="datetime-local" required>
<label for="block-reason">Reason</label><input id="block-reason" name="reason">
</fieldset><button type="submit">Block</button></form>
<section aria-labelledby="h-slots"><h2 id="h-slots">Upcoming slots ({zone})</h2>
<table><thead><tr><th scope="col">Start</th><th scope="col">Status</th></tr></thead><tbody>{rows}</tbody></table></section>
"#,
        csrf = escape(csrf),
        zone_name = escape(zone_name),
        zone = escape(zone.map(|z| z.name()).unwrap_or("no slots yet")),
    ))
}

/// The Parameters of `$open-slots` from the slots page's form.
pub fn open_parameters(fields: &[(String, String)]) -> Value {
    let mut parameter = Vec::new();
    for (name, value) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        let typed = match name.as_str() {
            "timezone" | "weekday" => json!({"name": name, "valueCode": value}),
            "from" | "until" => json!({"name": name, "valueDate": value}),
            "startTime" | "endTime" => json!({"name": name, "valueString": value}),
            "slotMinutes" => match value.parse::<i64>() {
                Ok(minutes) => json!({"name": name, "valueInteger": minutes}),
                Err(_) => continue,
            },
            _ => continue,
        };
        parameter.push(typed);
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_named_with_their_region() {
        assert_eq!(language_name("ar-AE"), "Arabic (United Arab Emirates)");
        assert_eq!(language_name("es-MX"), "Spanish (Mexico)");
        assert_eq!(language_name("yue"), "Cantonese");
        assert_eq!(language_name("x-klingon"), "x-klingon");
    }

    #[test]
    fn both_sides_see_their_own_clock() {
        let consult = json!({"start": "2027-03-15T20:00:00+04:00"});
        let (specialist, partner) = times(&consult, Some(chrono_tz::America::Los_Angeles)).unwrap();
        assert_eq!(specialist, "Mon 15 Mar 2027, 09:00 (America/Los_Angeles)");
        assert_eq!(partner, "Mon 15 Mar 2027, 20:00 (UTC+04:00)");
    }

    #[test]
    fn the_slots_form_becomes_typed_parameters() {
        let fields: Vec<(String, String)> =
            [("csrf", "x"), ("timezone", "Asia/Dubai"), ("weekday", "mon"), ("slotMinutes", "45"), ("from", "")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let parameters = open_parameters(&fields);
        assert_eq!(parameters["parameter"].as_array().unwrap().len(), 3);
        assert_eq!(parameters["parameter"][2]["valueInteger"], 45);
    }
}
