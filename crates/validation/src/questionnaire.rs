//! QuestionnaireResponse validation against its Questionnaire: items matched by `linkId`, answer types per
//! `item.type`, required items, repeats, answer options and value sets, `enableWhen`, and the length, value,
//! regex, unit, size and mime type constraints that the core and SDC extensions put on answers.
//!
//! The Questionnaire is resolved from the loaded definitions, from the response's contained resources
//! (`#id`) or from the enclosing Bundle. An unresolvable Questionnaire is a warning: nothing more can be
//! checked. Findings follow the HL7 Java validator's rules; severities are downgraded where the FHIR spec
//! allows incomplete answers (`status = in-progress`).

use std::cmp::Ordering;

use rex_fhir::{Issue, IssueCode, Severity};
use serde_json::Value;

use crate::terminology::Membership;
use crate::validate::{Walk, json_equal};

const EXT: &str = "http://hl7.org/fhir/StructureDefinition/";
const SDC_EXT: &str = "http://hl7.org/fhir/uv/sdc/StructureDefinition/";
const UCUM: &str = "http://unitsofmeasure.org";

/// The answer value types of R4 `QuestionnaireResponse.item.answer.value[x]`: (JSON suffix, type).
const ANSWER_TYPES: &[(&str, &str)] = &[
    ("Boolean", "boolean"),
    ("Decimal", "decimal"),
    ("Integer", "integer"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Time", "time"),
    ("String", "string"),
    ("Uri", "uri"),
    ("Attachment", "Attachment"),
    ("Coding", "Coding"),
    ("Quantity", "Quantity"),
    ("Reference", "Reference"),
];

/// Answer types allowed for an `item.type`; `None` for types that take no answer or are unknown.
fn allowed_types(item_type: &str) -> Option<&'static [&'static str]> {
    Some(match item_type {
        "boolean" => &["boolean"],
        "decimal" => &["decimal"],
        "integer" => &["integer"],
        "date" => &["date"],
        "dateTime" => &["dateTime"],
        "time" => &["time"],
        "string" | "text" => &["string"],
        "url" => &["uri"],
        "attachment" => &["Attachment"],
        "reference" => &["Reference"],
        "quantity" => &["Quantity"],
        // R4 choice items answer with a Coding, or with a date, time, integer or string option.
        "choice" | "open-choice" => &["Coding", "date", "time", "integer", "string"],
        _ => return None,
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn array_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The `value[x]` of an answer, option or extension: (JSON suffix, value).
fn choice_value<'a>(v: &'a Value, prefix: &str) -> Option<(&'a str, &'a Value)> {
    v.as_object()?.iter().find_map(|(k, x)| {
        let suffix = k.strip_prefix(prefix)?;
        suffix.starts_with(|c: char| c.is_ascii_uppercase()).then_some((suffix, x))
    })
}

/// Values of the extensions with this url on an item.
fn extensions<'a>(item: &'a Value, url: &str) -> Vec<&'a Value> {
    array_of(item, "extension")
        .iter()
        .filter(|e| str_of(e, "url") == Some(url))
        .filter_map(|e| choice_value(e, "value").map(|(_, v)| v))
        .collect()
}

fn extension<'a>(item: &'a Value, url: &str) -> Option<&'a Value> {
    extensions(item, url).into_iter().next()
}

fn display_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `10 kg (UCUM#kg)` for messages.
fn quantity_text(q: &Value) -> String {
    let value = q.get("value").map(display_json).unwrap_or_default();
    let unit = str_of(q, "unit").or_else(|| str_of(q, "code")).unwrap_or("");
    match (str_of(q, "system"), str_of(q, "code")) {
        (Some(s), c) => format!("{value} {unit} ({}#{})", if s == UCUM { "UCUM" } else { s }, c.unwrap_or("")),
        _ => format!("{value} {unit}"),
    }
}

/// Whether a linkId is defined anywhere in the questionnaire.
fn defines_link_id(items: &[Value], link_id: &str) -> bool {
    items.iter().any(|i| str_of(i, "linkId") == Some(link_id) || defines_link_id(array_of(i, "item"), link_id))
}

/// Every answer given in the response to the question `link_id` (items nested under items and answers).
fn answers_to<'a>(items: &'a [Value], link_id: &str, out: &mut Vec<&'a Value>) {
    for item in items {
        if str_of(item, "linkId") == Some(link_id) {
            out.extend(array_of(item, "answer"));
        }
        answers_to(array_of(item, "item"), link_id, out);
        for a in array_of(item, "answer") {
            answers_to(array_of(a, "item"), link_id, out);
        }
    }
}

/// One `enableWhen` condition against the response's answers.
fn condition_holds(response: &Value, cond: &Value) -> bool {
    let Some(question) = str_of(cond, "question") else { return true };
    let op = str_of(cond, "operator").unwrap_or("=");
    let mut answers = Vec::new();
    answers_to(array_of(response, "item"), question, &mut answers);
    let Some((suffix, expected)) = choice_value(cond, "answer") else { return true };
    if op == "exists" {
        return expected.as_bool() == Some(!answers.is_empty());
    }
    answers.iter().any(|a| {
        let Some(actual) = a.get(format!("value{suffix}")) else { return false };
        match compare_answer(suffix, actual, expected) {
            Some(o) => match op {
                "=" => o == Ordering::Equal,
                "!=" => o != Ordering::Equal,
                ">" => o == Ordering::Greater,
                "<" => o == Ordering::Less,
                ">=" => o != Ordering::Less,
                "<=" => o != Ordering::Greater,
                _ => false,
            },
            // values without an order (codings, references) can still be unequal
            None => op == "!=",
        }
    })
}

/// Orders two answer values of the same type; `Some(Equal)` or `None` for unordered types.
fn compare_answer(suffix: &str, a: &Value, b: &Value) -> Option<Ordering> {
    match suffix {
        "Integer" | "Decimal" => a.as_f64()?.partial_cmp(&b.as_f64()?),
        "Date" | "DateTime" | "Time" | "String" | "Uri" => Some(a.as_str()?.cmp(b.as_str()?)),
        "Boolean" => (a.as_bool()? == b.as_bool()?).then_some(Ordering::Equal),
        "Coding" => coding_matches(a, b).then_some(Ordering::Equal),
        "Quantity" => crate::ucum::compare(
            (a.get("value")?.as_f64()?, str_of(a, "code")?),
            (b.get("value")?.as_f64()?, str_of(b, "code")?),
        ),
        "Reference" => (str_of(a, "reference")? == str_of(b, "reference")?).then_some(Ordering::Equal),
        _ => json_equal(a, b).then_some(Ordering::Equal),
    }
}

/// A coding answers an expected coding when the codes are equal and the systems are equal (or the expected
/// coding gives no system).
fn coding_matches(answer: &Value, expected: &Value) -> bool {
    str_of(answer, "code").is_some()
        && str_of(answer, "code") == str_of(expected, "code")
        && (str_of(expected, "system").is_none() || str_of(answer, "system") == str_of(expected, "system"))
}

/// Per-response context.
struct Ctx<'v> {
    response: &'v Value,
    /// `in-progress` responses may still miss required answers (reported as warnings).
    in_progress: bool,
    /// Every item of the questionnaire, to tell a misplaced linkId from an unknown one.
    all_items: &'v [Value],
}

impl<'v> Walk<'v> {
    fn report(&mut self, severity: Severity, code: IssueCode, msg: String, path: &str) {
        self.issues.push(Issue::new(severity, code, msg).at(path));
    }

    /// Validates a QuestionnaireResponse (at the current path) against the Questionnaire it declares.
    pub(crate) fn questionnaire_response(&mut self, qr: &'v Value) {
        let Some(reference) = str_of(qr, "questionnaire") else { return };
        let base = self.path.clone();
        let Some(q) = self.find_questionnaire(qr, reference) else {
            let url = crate::defs::canonical_base(reference);
            let other = if self.v.term.has_value_set(&url) {
                Some("ValueSet")
            } else {
                self.v.knows_profile(&url).then_some("StructureDefinition")
            };
            match other {
                Some(found) => self.report(
                    Severity::Error,
                    IssueCode::Structure,
                    format!(
                        "Canonical URL '{reference}' refers to a resource that has the wrong type. Found {found} expecting one of [Questionnaire]"
                    ),
                    &format!("{base}.questionnaire"),
                ),
                None => self.report(
                    Severity::Warning,
                    IssueCode::NotFound,
                    format!(
                        "The questionnaire '{reference}' could not be resolved, so no validation can be performed against the base questionnaire"
                    ),
                    &format!("{base}.questionnaire"),
                ),
            }
            return;
        };
        let ctx = Ctx {
            response: qr,
            in_progress: str_of(qr, "status") == Some("in-progress"),
            all_items: array_of(q, "item"),
        };
        self.response_items(&ctx, array_of(q, "item"), qr, &base, true);
    }

    /// The Questionnaire named by `reference`: contained (`#id`), in the enclosing Bundle, or loaded.
    fn find_questionnaire(&self, qr: &'v Value, reference: &str) -> Option<&'v Value> {
        let is_questionnaire = |r: &&Value| str_of(r, "resourceType") == Some("Questionnaire");
        if let Some(id) = reference.strip_prefix('#') {
            return array_of(qr, "contained").iter().filter(is_questionnaire).find(|c| str_of(c, "id") == Some(id));
        }
        let url = crate::defs::canonical_base(reference);
        let in_bundle = self.resources.first().and_then(|root| {
            array_of(root, "entry")
                .iter()
                .filter_map(|e| e.get("resource"))
                .filter(is_questionnaire)
                .find(|r| str_of(r, "url") == Some(url.as_str()))
        });
        in_bundle.or_else(|| self.v.questionnaires.get(&url))
    }

    /// Matches the response items under `parent` (a response, item or answer at `path`) to the
    /// questionnaire items `q_items`, then validates each questionnaire item against its responses.
    fn response_items(&mut self, ctx: &Ctx<'v>, q_items: &'v [Value], parent: &'v Value, path: &str, enabled: bool) {
        let mut matched: Vec<Vec<(usize, &'v Value)>> = vec![Vec::new(); q_items.len()];
        let mut last = 0;
        for (i, item) in array_of(parent, "item").iter().enumerate() {
            // a missing linkId is a cardinality error of the base resource
            let Some(link_id) = str_of(item, "linkId") else { continue };
            let ipath = format!("{path}.item[{i}]");
            let Some(qi) = q_items.iter().position(|q| str_of(q, "linkId") == Some(link_id)) else {
                let msg = if defines_link_id(ctx.all_items, link_id) {
                    format!("Structural error: the item with linkId '{link_id}' is in the wrong place")
                } else {
                    format!("LinkId '{link_id}' not found in questionnaire")
                };
                self.report(Severity::Error, IssueCode::Structure, msg, &ipath);
                continue;
            };
            if qi < last {
                self.report(
                    Severity::Error,
                    IssueCode::Structure,
                    format!("Structural error: items are out of order (linkId '{link_id}')"),
                    &ipath,
                );
            }
            last = qi;
            matched[qi].push((i, item));
        }
        for (q_item, items) in q_items.iter().zip(matched) {
            let link_id = str_of(q_item, "linkId").unwrap_or("");
            let item_enabled = enabled && self.is_enabled(ctx, q_item);
            if items.is_empty() {
                if item_enabled && q_item.get("required").and_then(Value::as_bool) == Some(true) {
                    self.required_missing(ctx, format!("No response found for required item '{link_id}'"), path);
                }
                continue;
            }
            if items.len() > 1 && q_item.get("repeats").and_then(Value::as_bool) != Some(true) {
                for &(i, _) in &items[1..] {
                    self.report(
                        Severity::Error,
                        IssueCode::Structure,
                        format!(
                            "Only one response item with the linkId '{link_id}' is allowed (the item does not repeat)"
                        ),
                        &format!("{path}.item[{i}]"),
                    );
                }
            }
            for (i, item) in items {
                self.response_item(ctx, q_item, item, &format!("{path}.item[{i}]"), item_enabled);
            }
        }
    }

    fn required_missing(&mut self, ctx: &Ctx<'v>, msg: String, path: &str) {
        let severity = if ctx.in_progress { Severity::Warning } else { Severity::Error };
        self.report(severity, IssueCode::Required, msg, path);
    }

    fn is_enabled(&self, ctx: &Ctx<'v>, q_item: &Value) -> bool {
        let conds = array_of(q_item, "enableWhen");
        if conds.is_empty() {
            return true;
        }
        if str_of(q_item, "enableBehavior") == Some("any") {
            conds.iter().any(|c| condition_holds(ctx.response, c))
        } else {
            conds.iter().all(|c| condition_holds(ctx.response, c))
        }
    }

    /// One response item against its questionnaire item.
    fn response_item(&mut self, ctx: &Ctx<'v>, q_item: &'v Value, item: &'v Value, path: &str, enabled: bool) {
        let link_id = str_of(q_item, "linkId").unwrap_or("");
        let ty = str_of(q_item, "type").unwrap_or("");
        let answers = array_of(item, "answer");
        let required = q_item.get("required").and_then(Value::as_bool) == Some(true);
        if !enabled && !answers.is_empty() {
            self.report(
                Severity::Error,
                IssueCode::BusinessRule,
                format!("The item '{link_id}' has answers, but it is not enabled (enableWhen)"),
                path,
            );
        }
        if enabled && required {
            if ty == "group" && array_of(item, "item").is_empty() {
                self.required_missing(ctx, format!("No sub-items found for required group '{link_id}'"), path);
            } else if ty != "group" && ty != "display" && answers.is_empty() {
                self.required_missing(ctx, format!("No response answer found for required item '{link_id}'"), path);
            }
        }
        if answers.len() > 1 && q_item.get("repeats").and_then(Value::as_bool) != Some(true) {
            self.report(
                Severity::Error,
                IssueCode::Structure,
                format!("Only one answer is allowed for the item '{link_id}' (it does not repeat)"),
                path,
            );
        }
        let occurs = |url: &str| extension(q_item, &format!("{EXT}{url}")).and_then(Value::as_u64);
        if let Some(min) = occurs("questionnaire-minOccurs")
            && (answers.len() as u64) < min
            && ty != "group"
        {
            let msg = format!("The minimum number of answers is {min} but this has {} answers", answers.len());
            self.required_missing(ctx, msg, path);
        }
        if let Some(max) = occurs("questionnaire-maxOccurs")
            && answers.len() as u64 > max
            && ty != "group"
        {
            self.report(
                Severity::Error,
                IssueCode::Structure,
                format!("The maximum number of answers is {max} but this has {} answers", answers.len()),
                path,
            );
        }
        for (j, answer) in answers.iter().enumerate() {
            let apath = format!("{path}.answer[{j}]");
            match ty {
                "group" | "display" | "question" => {
                    self.report(
                        Severity::Error,
                        IssueCode::Structure,
                        format!("Items of type '{ty}' cannot have answers (linkId '{link_id}')"),
                        &apath,
                    );
                    continue;
                }
                _ => self.answer(q_item, answer, answers.len(), &apath),
            }
            self.response_items(ctx, array_of(q_item, "item"), answer, &apath, enabled);
        }
        match ty {
            "group" => self.response_items(ctx, array_of(q_item, "item"), item, path, enabled),
            _ if !array_of(item, "item").is_empty() => {
                let msg = if ty == "display" {
                    format!("Items of type 'display' cannot have child items (linkId '{link_id}')")
                } else {
                    format!("The child items of the question '{link_id}' belong in answer.item, not item.item")
                };
                self.report(Severity::Error, IssueCode::Structure, msg, path);
            }
            _ => {}
        }
    }

    /// One answer: its type, then the constraints for that type.
    fn answer(&mut self, q_item: &'v Value, answer: &'v Value, count: usize, apath: &str) {
        let Some((suffix, value)) = choice_value(answer, "value") else { return };
        // A suffix that is not an answer type is an unknown property, reported by the structure walk.
        let Some(&(_, vty)) = ANSWER_TYPES.iter().find(|(s, _)| *s == suffix) else { return };
        let ty = str_of(q_item, "type").unwrap_or("");
        let Some(allowed) = allowed_types(ty) else { return };
        let vpath = format!("{apath}.value{suffix}");
        if !allowed.contains(&vty) {
            let msg = match allowed {
                [one] => format!("Answer value must be of the type {one} not {vty}"),
                many => format!("Answer value must be one of the types {} not {vty}", many.join(", ")),
            };
            self.report(Severity::Error, IssueCode::Structure, msg, &vpath);
            return;
        }
        let open = ty == "open-choice";
        match vty {
            "Coding" => self.coding_answer(q_item, value, open, apath, &vpath),
            "string" | "integer" | "date" | "time" => self.option_answer(q_item, suffix, value, open, apath, &vpath),
            _ => {}
        }
        match vty {
            "string" => self.string_answer(q_item, value, &vpath),
            "integer" | "decimal" | "date" | "dateTime" | "time" => self.ordered_answer(q_item, vty, value, &vpath),
            "Quantity" => self.quantity_answer(q_item, value, &vpath),
            "Attachment" => self.attachment_answer(q_item, value, apath),
            "Reference" => self.reference_answer(q_item, value, &vpath),
            _ => {}
        }
        if count > 1 {
            let exclusive = array_of(q_item, "answerOption").iter().any(|o| {
                extension(o, &format!("{EXT}questionnaire-optionExclusive")).and_then(Value::as_bool) == Some(true)
                    && choice_value(o, "value").is_some_and(|(s, ov)| s == suffix && option_matches(suffix, value, ov))
            });
            if exclusive {
                self.report(
                    Severity::Error,
                    IssueCode::BusinessRule,
                    format!(
                        "The selected answer {} is an exclusive option: no other answer can be selected at the same time",
                        answer_text(suffix, value)
                    ),
                    apath,
                );
            }
        }
    }

    /// A Coding answer: in the answer value set, or among the answer options.
    fn coding_answer(&mut self, q_item: &Value, coding: &Value, open: bool, apath: &str, vpath: &str) {
        let system = str_of(coding, "system");
        let Some(code) = str_of(coding, "code") else { return };
        if let Some(vs) = str_of(q_item, "answerValueSet") {
            let url = crate::defs::canonical_base(vs);
            if !self.v.term.has_value_set(&url) {
                let msg = format!("ValueSet '{vs}' not found, so the answer could not be checked");
                self.report(Severity::Warning, IssueCode::NotFound, msg, apath);
                return;
            }
            match self.v.term.member(&url, system, code) {
                Membership::In => {
                    if let (Some(sys), Some(display)) = (system, str_of(coding, "display"))
                        && let Some(Some(expected)) = self.v.term.lookup(sys, code)
                        && !expected.is_empty()
                        && !expected.eq_ignore_ascii_case(display)
                    {
                        // As with the HL7 validator, a wrong display makes the answer invalid for the options.
                        self.report(
                            Severity::Error,
                            IssueCode::CodeInvalid,
                            format!("Wrong Display Name '{display}' for {sys}#{code}: should be '{expected}'"),
                            &format!("{vpath}.display"),
                        );
                        self.report(
                            Severity::Error,
                            IssueCode::CodeInvalid,
                            format!(
                                "The answer {sys}#{code} is not valid for the options value set '{vs}' specified by the questionnaire: its display is wrong"
                            ),
                            apath,
                        );
                    }
                }
                Membership::NotIn => self.report(
                    Severity::Error,
                    IssueCode::CodeInvalid,
                    format!(
                        "The code '{code}' in the system '{}' is not in the options value set '{vs}' specified by the questionnaire",
                        system.unwrap_or("")
                    ),
                    apath,
                ),
                Membership::Unknown(why) => self.report(
                    Severity::Information,
                    IssueCode::Informational,
                    format!("The answer could not be checked against the value set '{vs}': {why}"),
                    apath,
                ),
            }
            return;
        }
        let options = array_of(q_item, "answerOption");
        if options.is_empty() {
            let msg = "Cannot validate the answer: the questionnaire item gives no options or value set".to_string();
            self.report(Severity::Information, IssueCode::Informational, msg, apath);
            return;
        }
        if !options.iter().any(|o| o.get("valueCoding").is_some_and(|c| option_matches("Coding", coding, c))) {
            let msg = format!("The code {}::{code} is not in the set of permitted values", system.unwrap_or(""));
            // open-choice items accept other codings
            let severity = if open { Severity::Information } else { Severity::Error };
            self.report(severity, IssueCode::CodeInvalid, msg, apath);
        }
    }

    /// A string, integer, date or time answer to an item with answer options (or, for strings, a value set).
    fn option_answer(&mut self, q_item: &Value, suffix: &str, value: &Value, open: bool, apath: &str, vpath: &str) {
        let options: Vec<&Value> = array_of(q_item, "answerOption")
            .iter()
            .filter_map(|o| choice_value(o, "value").filter(|(s, _)| *s == suffix).map(|(_, v)| v))
            .collect();
        if !options.is_empty() {
            // open-choice items accept free text
            let free_text = open && suffix == "String";
            if !free_text && !options.iter().any(|o| option_matches(suffix, value, o)) {
                self.report(
                    Severity::Error,
                    IssueCode::CodeInvalid,
                    format!(
                        "The {} {} is not in the set of permitted values",
                        suffix.to_ascii_lowercase(),
                        display_json(value)
                    ),
                    vpath,
                );
            }
            return;
        }
        if suffix == "String"
            && !open
            && let (Some(vs), Some(s)) = (str_of(q_item, "answerValueSet"), value.as_str())
        {
            let url = crate::defs::canonical_base(vs);
            if self.v.term.has_value_set(&url) && self.v.term.member(&url, None, s) == Membership::NotIn {
                self.report(
                    Severity::Error,
                    IssueCode::CodeInvalid,
                    format!("The value '{s}' is not in the list of allowed values (value set '{vs}')"),
                    vpath,
                );
            }
            return;
        }
        let t = str_of(q_item, "type").unwrap_or("");
        if t == "choice" || t == "open-choice" {
            let msg = format!("Cannot validate the {} answer: no option list is provided", suffix.to_ascii_lowercase());
            self.report(Severity::Information, IssueCode::Informational, msg, apath);
        }
    }

    /// Length and regex constraints on a string answer.
    fn string_answer(&mut self, q_item: &Value, value: &Value, vpath: &str) {
        let Some(s) = value.as_str() else { return };
        let len = s.chars().count() as u64;
        if let Some(min) = extension(q_item, &format!("{EXT}minLength")).and_then(Value::as_u64)
            && len < min
        {
            let msg = format!("The answer '{s}' is shorter than the required minimum length of {min}");
            self.report(Severity::Error, IssueCode::Value, msg, vpath);
        }
        if let Some(max) = q_item.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            let msg = format!("The answer '{s}' is longer than the allowed maximum length of {max}");
            self.report(Severity::Error, IssueCode::TooLong, msg, vpath);
        }
        if let Some(pattern) = extension(q_item, &format!("{EXT}regex")).and_then(Value::as_str) {
            match regex::Regex::new(&format!("^(?:{pattern})$")) {
                Ok(re) if !re.is_match(s) => {
                    let format = extension(q_item, &format!("{EXT}entryFormat")).and_then(Value::as_str);
                    let msg = match format {
                        Some(f) => format!(
                            "The answer '{s}' does not conform to the expected format '{f}' (regex '{pattern}')"
                        ),
                        None => format!("The answer '{s}' does not match the regex '{pattern}'"),
                    };
                    self.report(Severity::Error, IssueCode::Value, msg, vpath);
                }
                Ok(_) => {}
                Err(_) => {
                    let msg = format!("The regex '{pattern}' of the questionnaire item is not valid; not checked");
                    self.report(Severity::Warning, IssueCode::Processing, msg, vpath);
                }
            }
        }
    }

    /// minValue / maxValue (and maxDecimalPlaces) on numbers, dates and times.
    fn ordered_answer(&mut self, q_item: &Value, vty: &str, value: &Value, vpath: &str) {
        for (url, is_min) in [("minValue", true), ("maxValue", false)] {
            let Some(limit) = extension(q_item, &format!("{EXT}{url}")) else { continue };
            let order = match vty {
                "integer" | "decimal" => value.as_f64().zip(limit.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
                // FHIR dates and times of the same precision order as strings; a coarser limit covers its
                // whole period only from below (2022-06-30 is after the limit 2022-06).
                _ => value.as_str().zip(limit.as_str()).map(|(a, b)| a.cmp(b)),
            };
            let bad = if is_min { order == Some(Ordering::Less) } else { order == Some(Ordering::Greater) };
            if bad {
                let msg = format!(
                    "The value {} is {} the allowed {} of {}",
                    display_json(value),
                    if is_min { "less than" } else { "greater than" },
                    if is_min { "minimum" } else { "maximum" },
                    display_json(limit)
                );
                self.report(Severity::Error, IssueCode::Value, msg, vpath);
            }
        }
        if vty == "decimal"
            && let Some(places) = extension(q_item, &format!("{EXT}maxDecimalPlaces")).and_then(Value::as_u64)
        {
            let text = value.to_string();
            // exponent notation (very small or large numbers) is not counted
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len()) as u64;
            if decimals > places && !text.contains(['e', 'E']) {
                let msg = format!("The value {text} has too many decimal places (limit = {places})");
                self.report(Severity::Error, IssueCode::Value, msg, vpath);
            }
        }
    }

    /// Units (unitOption, unitValueSet) and minimum / maximum quantities.
    fn quantity_answer(&mut self, q_item: &Value, q: &Value, vpath: &str) {
        let options = extensions(q_item, &format!("{EXT}questionnaire-unitOption"));
        if !options.is_empty()
            && !options
                .iter()
                .any(|o| str_of(o, "system") == str_of(q, "system") && str_of(o, "code") == str_of(q, "code"))
        {
            let allowed: Vec<String> = options
                .iter()
                .map(|o| {
                    format!(
                        "{} ({}#{})",
                        str_of(o, "display").unwrap_or(""),
                        str_of(o, "system").unwrap_or(""),
                        str_of(o, "code").unwrap_or("")
                    )
                })
                .collect();
            let msg = format!(
                "The quantity {} has a unit that is not allowed (allowed = {})",
                quantity_text(q),
                allowed.join(", ")
            );
            self.report(Severity::Error, IssueCode::CodeInvalid, msg, vpath);
        }
        if let Some(vs) = extension(q_item, &format!("{EXT}questionnaire-unitValueSet")).and_then(Value::as_str) {
            let url = crate::defs::canonical_base(vs);
            let membership = match str_of(q, "code") {
                Some(code) if self.v.term.has_value_set(&url) => self.v.term.member(&url, str_of(q, "system"), code),
                Some(_) => Membership::Unknown(format!("value set {vs} is not loaded")),
                None => Membership::NotIn,
            };
            if membership == Membership::NotIn {
                let msg =
                    format!("The quantity {} has a unit that is not in the unit value set '{vs}'", quantity_text(q));
                self.report(Severity::Error, IssueCode::CodeInvalid, msg, vpath);
            }
        }
        let limits = [
            (format!("{SDC_EXT}sdc-questionnaire-minQuantity"), true),
            (format!("{EXT}minValue"), true),
            (format!("{SDC_EXT}sdc-questionnaire-maxQuantity"), false),
            (format!("{EXT}maxValue"), false),
        ];
        for (url, is_min) in limits {
            let Some(limit) = extension(q_item, &url).filter(|l| l.is_object()) else { continue };
            let which = if is_min { "minimum" } else { "maximum" };
            let msg = match (formal(q), formal(limit)) {
                (Some(a), Some(b)) => match crate::ucum::compare(a, b) {
                    Some(Ordering::Less) if is_min => Some(format!(
                        "The quantity {} is less than the allowed minimum of {}",
                        quantity_text(q),
                        quantity_text(limit)
                    )),
                    Some(Ordering::Greater) if !is_min => Some(format!(
                        "The quantity {} is greater than the allowed maximum of {}",
                        quantity_text(q),
                        quantity_text(limit)
                    )),
                    Some(_) => None,
                    None => Some(format!(
                        "The quantity {} cannot be compared to the allowed {which} of {}: the units are not convertible",
                        quantity_text(q),
                        quantity_text(limit)
                    )),
                },
                _ => Some(format!(
                    "The quantity {} cannot be compared to the allowed {which} of {} because no formal (UCUM) units are specified",
                    quantity_text(q),
                    quantity_text(limit)
                )),
            };
            if let Some(msg) = msg {
                self.report(Severity::Error, IssueCode::Value, msg, vpath);
            }
        }
    }

    /// mimeType and maxSize on attachments.
    fn attachment_answer(&mut self, q_item: &Value, att: &Value, apath: &str) {
        let types: Vec<&str> =
            extensions(q_item, &format!("{EXT}mimeType")).into_iter().filter_map(Value::as_str).collect();
        if let Some(ct) = str_of(att, "contentType")
            && !types.is_empty()
            && !types.contains(&ct)
        {
            let msg = format!("The mime type {ct} is not valid for this answer (allowed = {})", types.join(", "));
            self.report(Severity::Error, IssueCode::Value, msg, apath);
        }
        if let Some(max) = extension(q_item, &format!("{EXT}maxSize")).and_then(Value::as_f64) {
            let size = att
                .get("size")
                .and_then(Value::as_f64)
                .or_else(|| str_of(att, "data").map(|d| crate::primitives::base64_decoded_len(d) as f64));
            if let Some(size) = size.filter(|s| *s > max) {
                let msg = format!("The attachment is too large (allowed = {max}, found = {size})");
                self.report(Severity::Error, IssueCode::TooLong, msg, apath);
            }
        }
    }

    /// referenceResource: the resource types a reference answer may point to.
    fn reference_answer(&mut self, q_item: &Value, r: &Value, vpath: &str) {
        let allowed: Vec<&str> = extensions(q_item, &format!("{EXT}questionnaire-referenceResource"))
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        let Some(reference) = str_of(r, "reference") else { return };
        if allowed.is_empty() || allowed.contains(&"Resource") {
            return;
        }
        let parts: Vec<&str> = reference.split('/').collect();
        let n = parts.len();
        let ty = if n >= 4 && parts[n - 2] == "_history" {
            parts[n - 4]
        } else if n >= 2 {
            parts[n - 2]
        } else {
            ""
        };
        let ty = str_of(r, "type").unwrap_or(ty);
        if !ty.is_empty() && self.v.is_resource_type(ty) && !allowed.contains(&ty) {
            let msg = format!(
                "The resource type '{ty}' in the reference {reference} is not allowed (allowed = {})",
                allowed.join(", ")
            );
            self.report(Severity::Error, IssueCode::Structure, msg, vpath);
        }
    }
}

/// A quantity with a formal UCUM unit: (value, code).
fn formal(q: &Value) -> Option<(f64, &str)> {
    let value = q.get("value").and_then(Value::as_f64)?;
    (str_of(q, "system") == Some(UCUM)).then_some((value, str_of(q, "code")?))
}

/// An answer value equals an option value (codings by system and code).
fn option_matches(suffix: &str, value: &Value, option: &Value) -> bool {
    if suffix == "Coding" {
        return str_of(value, "code").is_some()
            && str_of(value, "code") == str_of(option, "code")
            && str_of(value, "system") == str_of(option, "system");
    }
    json_equal(value, option)
}

fn answer_text(suffix: &str, value: &Value) -> String {
    if suffix == "Coding" {
        format!("{}#{}", str_of(value, "system").unwrap_or(""), str_of(value, "code").unwrap_or(""))
    } else {
        display_json(value)
    }
}
