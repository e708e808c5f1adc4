//! Parsing a FHIR search request (`Patient?name=chal&birthdate=ge1970`) into a typed query the store
//! can run. Everything a client can get wrong is reported here, as OperationOutcome issues, so the
//! store only ever sees well-formed criteria.

use crate::datetime::parse_date_range;
use crate::outcome::{Issue, IssueCode};
use crate::search::{ParamType, SearchParamDef, SearchRegistry, normalize_string};
use rex_i18n::{Text, msg};

/// Default page size when the client gives no `_count`.
pub const DEFAULT_COUNT: usize = 20;
/// Largest page a client may ask for.
pub const MAX_COUNT: usize = 1000;
/// Most search parameters (criteria, `_include`s and `_revinclude`s) one search may have. Each
/// becomes a condition of the SQL statement: thousands made SQLite refuse the statement ("Expression
/// tree is too large") and cost time on PostgreSQL, for no search a person or a system needs.
pub const MAX_PARAMETERS: usize = 50;
/// Most comma-separated values (alternatives) of one search parameter.
pub const MAX_VALUES_PER_PARAMETER: usize = 100;
/// Most values over all parameters of one search.
pub const MAX_VALUES: usize = 200;
/// Most `_sort` keys; a key may appear once.
pub const MAX_SORT_KEYS: usize = 5;

/// A parsed search on one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub resource_type: String,
    /// All must hold (repeated parameters AND together).
    pub criteria: Vec<Criterion>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub offset: usize,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    /// `_summary=count`: only the total, no resources.
    pub summary_count: bool,
    /// How the total is computed (`_total`).
    pub total: Total,
}

/// How a search's total is counted: `_total=none`, `estimate` (the default) or `accurate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// No total.
    None,
    /// Counted while that is cheap; left out when counting would hold up the page (a broad search
    /// of a large database).
    Estimate,
    /// Counted exactly, within the search timeout.
    Accurate,
}

/// One search parameter occurrence: any of its alternatives may match (comma OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The parameter code (`name`, `_tag`, `_id`...).
    pub param: String,
    /// `:not` on tokens: resources with no matching value.
    pub negated: bool,
    pub alternatives: Vec<Match>,
}

/// Range comparison prefixes of number, date and quantity parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    /// Default: starts with, ignoring case and accents.
    StartsWith,
    Exact,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    Any,
    /// `|code`: the value has no system.
    NoSystem,
    Is(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    Below,
    Above,
}

/// One alternative of a criterion. Ranges are inclusive, in microseconds for dates.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Id(String),
    LastUpdated {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// `:missing=true|false`.
    Missing(bool),
    String {
        mode: StringMode,
        value: String,
    },
    Token {
        system: SystemMatch,
        code: Option<String>,
    },
    Reference {
        target_type: Option<String>,
        id: String,
    },
    ReferenceUrl(String),
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Number {
        prefix: Prefix,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri {
        mode: UriMode,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    LastUpdated,
    Id,
    /// A date parameter, ordered by the start of its earliest value.
    Date(String),
    /// A string parameter, ordered by its smallest normalized value.
    String(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

/// `_include=Source:param[:Target]` or `_revinclude=Source:param[:Target]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// How to treat parameters rex does not know (`Prefer: handling=strict|lenient`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

/// Parameters that change how results are returned, not which match; accepted and ignored.
const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];

impl SearchQuery {
    /// Parses decoded `name=value` pairs of a search on `resource_type`. Unknown parameters are errors
    /// unless `handling` is lenient. Every problem found is returned, not just the first.
    pub fn parse(
        registry: &SearchRegistry,
        resource_type: &str,
        pairs: &[(String, String)],
        handling: Handling,
    ) -> Result<SearchQuery, Vec<Issue>> {
        let mut query = SearchQuery {
            resource_type: resource_type.to_string(),
            criteria: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            include: Vec::new(),
            revinclude: Vec::new(),
            summary_count: false,
            total: Total::Estimate,
        };
        let mut issues = Vec::new();
        for (name, value) in pairs {
            if let Err(issue) = query.apply(registry, name, value, handling) {
                issues.push(issue.at(name.clone()));
            }
            // A search far over the limits is refused at once, not after parsing all its values.
            if let Err(issue) = query.check_cost() {
                return Err(vec![issue.at(name.clone())]);
            }
        }
        if issues.is_empty() { Ok(query) } else { Err(issues) }
    }

    /// Refuses a search with more parameters or values than [`MAX_PARAMETERS`], [`MAX_VALUES`]
    /// allow (the per-parameter limits are checked where the parameter is parsed).
    fn check_cost(&self) -> Result<(), Issue> {
        let parameters = self.criteria.len() + self.include.len() + self.revinclude.len();
        if parameters > MAX_PARAMETERS {
            return Err(too_costly(msg!("search-too-many-parameters", limit = MAX_PARAMETERS)));
        }
        let values: usize = self.criteria.iter().map(|criterion| criterion.alternatives.len()).sum();
        if values > MAX_VALUES {
            return Err(too_costly(msg!("search-too-many-values", limit = MAX_VALUES)));
        }
        Ok(())
    }

    fn apply(&mut self, registry: &SearchRegistry, name: &str, value: &str, handling: Handling) -> Result<(), Issue> {
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (name, None),
        };
        match code {
            _ if FORMAT_PARAMS.contains(&code) => Ok(()),
            "_count" => {
                self.count = parse_usize(value, name)?.min(MAX_COUNT);
                Ok(())
            }
            "_offset" => {
                self.offset = parse_usize(value, name)?;
                Ok(())
            }
            "_sort" => self.parse_sort(registry, value),
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(other) => {
                        return Err(unsupported(msg!("search-unknown-include-modifier", modifier = other, code)));
                    }
                };
                let include = parse_include(registry, value, iterate)?;
                if code == "_include" {
                    self.include.push(include)
                } else {
                    self.revinclude.push(include)
                }
                Ok(())
            }
            "_summary" => match value {
                "count" => {
                    self.summary_count = true;
                    Ok(())
                }
                "false" => Ok(()),
                other => Err(unsupported(msg!("search-summary-unsupported", value = other))),
            },
            "_total" => match value {
                "none" => {
                    self.total = Total::None;
                    Ok(())
                }
                "estimate" => {
                    self.total = Total::Estimate;
                    Ok(())
                }
                "accurate" => {
                    self.total = Total::Accurate;
                    Ok(())
                }
                other => Err(invalid(msg!("search-total-invalid", value = other))),
            },
            _ if code.contains('.') => Err(unsupported(msg!("search-chaining-unsupported"))),
            "_has" => Err(unsupported(msg!("search-has-unsupported"))),
            _ => match registry.param(&self.resource_type, code).filter(|def| def.is_supported()) {
                Some(def) => {
                    let criterion = parse_criterion(def, modifier, value)?;
                    self.criteria.push(criterion);
                    Ok(())
                }
                None if handling == Handling::Lenient => Ok(()),
                None => Err(unsupported(msg!("search-unknown-parameter", code, resource_type = self.resource_type))),
            },
        }
    }

    fn parse_sort(&mut self, registry: &SearchRegistry, value: &str) -> Result<(), Issue> {
        for item in value.split(',').filter(|item| !item.is_empty()) {
            if self.sort.len() == MAX_SORT_KEYS {
                return Err(too_costly(msg!("search-too-many-sort-keys", limit = MAX_SORT_KEYS)));
            }
            let (descending, code) = match item.strip_prefix('-') {
                Some(code) => (true, code),
                None => (false, item),
            };
            let by = match code {
                "_lastUpdated" => SortBy::LastUpdated,
                "_id" => SortBy::Id,
                _ => match registry.param(&self.resource_type, code).map(|def| &def.param_type) {
                    Some(ParamType::Date) => SortBy::Date(code.to_string()),
                    Some(ParamType::String) => SortBy::String(code.to_string()),
                    _ => {
                        return Err(unsupported(msg!("search-sort-unsupported", code)));
                    }
                },
            };
            // Each key is one more ORDER BY term over every match; a repeat orders nothing new.
            if self.sort.iter().any(|key| key.by == by) {
                return Err(invalid(msg!("search-sort-repeated", code)));
            }
            self.sort.push(SortKey { by, descending });
        }
        Ok(())
    }
}

fn parse_include(registry: &SearchRegistry, value: &str, iterate: bool) -> Result<Include, Issue> {
    let mut parts = value.split(':');
    let source_type = parts.next().unwrap_or_default();
    let param = parts.next().ok_or_else(|| invalid(msg!("search-include-form", value)))?;
    let target_type = parts.next().map(str::to_string);
    if !registry.is_resource_type(source_type) {
        return Err(invalid(msg!("search-include-unknown-type", resource_type = source_type, value)));
    }
    if param != "*" {
        match registry.param(source_type, param) {
            Some(def) if def.param_type == ParamType::Reference && def.is_supported() => {}
            _ => return Err(invalid(msg!("search-include-not-reference", param, resource_type = source_type))),
        }
    }
    if let Some(target) = &target_type
        && !registry.is_resource_type(target)
    {
        return Err(invalid(msg!("search-include-unknown-type", resource_type = target, value)));
    }
    Ok(Include { source_type: source_type.to_string(), param: param.to_string(), target_type, iterate })
}

fn parse_criterion(def: &SearchParamDef, modifier: Option<&str>, value: &str) -> Result<Criterion, Issue> {
    let mut criterion = Criterion { param: def.code.clone(), negated: false, alternatives: Vec::new() };
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            other => return Err(invalid(msg!("search-missing-value", value = other))),
        };
        criterion.alternatives.push(Match::Missing(missing));
        return Ok(criterion);
    }
    let values = split_unescaped(value, ',');
    if values.iter().all(String::is_empty) {
        return Err(invalid(msg!("search-no-value", code = def.code)));
    }
    if values.len() > MAX_VALUES_PER_PARAMETER {
        return Err(too_costly(msg!(
            "search-parameter-too-many-values",
            code = def.code,
            count = values.len(),
            limit = MAX_VALUES_PER_PARAMETER
        )));
    }
    for raw in values {
        let alternative = match (&def.param_type, modifier) {
            (_, _) if def.code == "_id" && modifier.is_none() => Match::Id(raw),
            (_, None) if def.code == "_lastUpdated" => {
                let (prefix, low, high) = parse_date_value(&raw)?;
                Match::LastUpdated { prefix, low, high }
            }
            (ParamType::String, None) => Match::String { mode: StringMode::StartsWith, value: normalize_string(&raw) },
            (ParamType::String, Some("exact")) => Match::String { mode: StringMode::Exact, value: raw },
            (ParamType::String, Some("contains")) => {
                Match::String { mode: StringMode::Contains, value: normalize_string(&raw) }
            }
            (ParamType::Token, None | Some("not")) => {
                criterion.negated = modifier == Some("not");
                parse_token(&raw)
            }
            (ParamType::Reference, None) => parse_reference(def, None, &raw),
            (ParamType::Reference, Some(target)) if def.targets.iter().any(|t| t == target) => {
                parse_reference(def, Some(target), &raw)
            }
            (ParamType::Date, None) => {
                let (prefix, low, high) = parse_date_value(&raw)?;
                Match::Date { prefix, low, high }
            }
            (ParamType::Number, None) => {
                let (prefix, number) = split_prefix(&raw);
                let (low, high) = number_range(number)?;
                Match::Number { prefix, low, high }
            }
            (ParamType::Quantity, None) => parse_quantity(&raw)?,
            (ParamType::Uri, None) => Match::Uri { mode: UriMode::Exact, value: raw },
            (ParamType::Uri, Some("below")) => Match::Uri { mode: UriMode::Below, value: raw },
            (ParamType::Uri, Some("above")) => Match::Uri { mode: UriMode::Above, value: raw },
            (_, Some(other)) => {
                return Err(unsupported(msg!("search-modifier-unsupported", modifier = other, code = def.code)));
            }
            (_, None) => return Err(unsupported(msg!("search-parameter-unsupported", code = def.code))),
        };
        criterion.alternatives.push(alternative);
    }
    Ok(criterion)
}

fn parse_token(raw: &str) -> Match {
    let parts = split_unescaped(raw, '|');
    match parts.as_slice() {
        [code] => Match::Token { system: SystemMatch::Any, code: Some(code.clone()) },
        [system, code] => Match::Token {
            system: if system.is_empty() { SystemMatch::NoSystem } else { SystemMatch::Is(system.clone()) },
            code: (!code.is_empty()).then(|| code.clone()),
        },
        _ => Match::Token { system: SystemMatch::Any, code: Some(raw.to_string()) },
    }
}

fn parse_reference(def: &SearchParamDef, modifier_type: Option<&str>, raw: &str) -> Match {
    if raw.contains("://") || raw.starts_with("urn:") {
        return Match::ReferenceUrl(raw.to_string());
    }
    let raw = raw.split("/_history/").next().unwrap_or(raw);
    match raw.split_once('/') {
        Some((target_type, id)) => Match::Reference { target_type: Some(target_type.to_string()), id: id.to_string() },
        None => {
            let only_target = (def.targets.len() == 1).then(|| def.targets[0].as_str());
            Match::Reference { target_type: modifier_type.or(only_target).map(str::to_string), id: raw.to_string() }
        }
    }
}

fn parse_quantity(raw: &str) -> Result<Match, Issue> {
    let parts = split_unescaped(raw, '|');
    let (prefix, number) = split_prefix(&parts[0]);
    let (low, high) = number_range(number)?;
    let non_empty = |index: usize| parts.get(index).filter(|s| !s.is_empty()).cloned();
    Ok(Match::Quantity { prefix, low, high, system: non_empty(1), code: non_empty(2) })
}

fn parse_date_value(raw: &str) -> Result<(Prefix, i64, i64), Issue> {
    let (prefix, date) = split_prefix(raw);
    let (low, high) = parse_date_range(date).ok_or_else(|| invalid(msg!("search-date-invalid", value = date)))?;
    Ok((prefix, low, high))
}

fn split_prefix(raw: &str) -> (Prefix, &str) {
    const PREFIXES: [(&str, Prefix); 9] = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (text, prefix) in PREFIXES {
        if let Some(rest) = raw.strip_prefix(text) {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, raw)
}

/// A number's implied range: `100` means [99.5, 100.5], `100.0` means [99.95, 100.05].
fn number_range(text: &str) -> Result<(f64, f64), Issue> {
    let value: f64 = text.parse().map_err(|_| invalid(msg!("search-not-a-number", value = text)))?;
    if !value.is_finite() {
        return Err(invalid(msg!("search-not-finite", value = text)));
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let decimals = mantissa.split_once('.').map_or(0, |(_, fraction)| fraction.len()) as i32;
    let half_unit = 0.5 * 10f64.powi(-decimals);
    Ok((value - half_unit, value + half_unit))
}

/// Splits on `separator` except where escaped with a backslash, and removes the escapes.
fn split_unescaped(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ ('\\' | ',' | '|' | '$')) => parts.last_mut().unwrap().push(next),
                Some(next) => {
                    let last = parts.last_mut().unwrap();
                    last.push('\\');
                    last.push(next);
                }
                None => parts.last_mut().unwrap().push('\\'),
            },
            c if c == separator => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

fn parse_usize(value: &str, name: &str) -> Result<usize, Issue> {
    value.parse().map_err(|_| invalid(msg!("search-not-count", name, value)))
}

fn invalid(message: impl Into<Text>) -> Issue {
    Issue::error(IssueCode::Invalid, message)
}

fn unsupported(message: impl Into<Text>) -> Issue {
    Issue::error(IssueCode::NotSupported, message)
}

fn too_costly(message: impl Into<Text>) -> Issue {
    Issue::error(IssueCode::TooCostly, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(resource_type: &str, query: &[(&str, &str)]) -> Result<SearchQuery, Vec<Issue>> {
        let pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict)
    }

    #[test]
    fn parses_tokens_with_systems_and_escapes() {
        let query = parse("Patient", &[("identifier", "http://x|1,|2,3\\,4"), ("gender:not", "male")]).unwrap();
        assert_eq!(
            query.criteria[0].alternatives,
            vec![
                Match::Token { system: SystemMatch::Is("http://x".into()), code: Some("1".into()) },
                Match::Token { system: SystemMatch::NoSystem, code: Some("2".into()) },
                Match::Token { system: SystemMatch::Any, code: Some("3,4".into()) },
            ]
        );
        assert!(query.criteria[1].negated);
    }

    #[test]
    fn parses_references_dates_and_strings() {
        let query = parse("Observation", &[("subject", "Patient/1"), ("date", "ge2020-01"), ("_count", "5")]).unwrap();
        assert_eq!(
            query.criteria[0].alternatives[0],
            Match::Reference { target_type: Some("Patient".into()), id: "1".into() }
        );
        assert!(matches!(query.criteria[1].alternatives[0], Match::Date { prefix: Prefix::Ge, .. }));
        assert_eq!(query.count, 5);
        let query = parse("Patient", &[("name", "Müller"), ("name:exact", "Müller")]).unwrap();
        assert_eq!(
            query.criteria[0].alternatives[0],
            Match::String { mode: StringMode::StartsWith, value: "muller".into() }
        );
        assert_eq!(
            query.criteria[1].alternatives[0],
            Match::String { mode: StringMode::Exact, value: "Müller".into() }
        );
    }

    #[test]
    fn reports_every_bad_parameter() {
        let issues = parse("Patient", &[("bogus", "1"), ("birthdate", "1970-13"), ("_count", "x")]).unwrap_err();
        let at: Vec<_> = issues.iter().map(|i| i.expression.clone().unwrap()).collect();
        assert_eq!(at, vec!["bogus", "birthdate", "_count"]);
        assert_eq!(issues[0].code, IssueCode::NotSupported);
        let lenient =
            SearchQuery::parse(SearchRegistry::r4(), "Patient", &[("bogus".into(), "1".into())], Handling::Lenient);
        assert!(lenient.is_ok());
    }

    #[test]
    fn number_precision_sets_the_range() {
        assert_eq!(number_range("100").unwrap(), (99.5, 100.5));
        let (low, high) = number_range("1.50").unwrap();
        assert!((low - 1.495).abs() < 1e-9 && (high - 1.505).abs() < 1e-9);
    }

    #[test]
    fn parses_includes_and_sort() {
        let query =
            parse("Observation", &[("_include", "Observation:subject:Patient"), ("_sort", "-date,_id")]).unwrap();
        assert_eq!(query.include[0].target_type.as_deref(), Some("Patient"));
        assert_eq!(
            query.sort,
            vec![
                SortKey { by: SortBy::Date("date".into()), descending: true },
                SortKey { by: SortBy::Id, descending: false }
            ]
        );
        assert!(parse("Observation", &[("_include", "Observation:code")]).is_err());
    }

    #[test]
    fn refuses_searches_over_the_limits() {
        let many = vec!["a"; MAX_VALUES_PER_PARAMETER + 1].join(",");
        let issues = parse("Patient", &[("name", &many)]).unwrap_err();
        assert_eq!((issues[0].code, issues[0].expression.as_deref()), (IssueCode::TooCostly, Some("name")));
        assert!(issues[0].diagnostics.contains(&MAX_VALUES_PER_PARAMETER.to_string()));
        let most = vec!["a"; MAX_VALUES_PER_PARAMETER].join(",");
        assert!(parse("Patient", &[("name", &most)]).is_ok());

        let pairs = vec![("name", "a"); MAX_PARAMETERS + 1];
        let issues = parse("Patient", &pairs).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueCode::TooCostly);
        assert!(issues[0].diagnostics.contains(&MAX_PARAMETERS.to_string()));
        assert!(parse("Patient", &pairs[..MAX_PARAMETERS]).is_ok());

        let values = vec![("name", most.as_str()); MAX_VALUES / MAX_VALUES_PER_PARAMETER + 1];
        assert_eq!(parse("Patient", &values).unwrap_err()[0].code, IssueCode::TooCostly);
    }

    #[test]
    fn refuses_repeated_and_excessive_sort_keys() {
        let repeated = parse("Patient", &[("_sort", "birthdate,-birthdate")]).unwrap_err();
        assert_eq!((repeated[0].code, repeated[0].expression.as_deref()), (IssueCode::Invalid, Some("_sort")));
        let across = parse("Patient", &[("_sort", "_id"), ("_sort", "_id")]).unwrap_err();
        assert_eq!(across[0].code, IssueCode::Invalid);
        let keys = parse("Patient", &[("_sort", "_id,_lastUpdated,birthdate,name,family,given")]).unwrap_err();
        assert_eq!(keys[0].code, IssueCode::TooCostly);
        assert!(parse("Patient", &[("_sort", "_id,_lastUpdated,birthdate,name,family")]).is_ok());
    }
}
