//! The small part of FHIRPath that search-parameter expressions use, compiled once and evaluated
//! over `serde_json::Value`s.
//!
//! Supported: `Type.a.b`, `(expr)`, `|`, `expr as Type`, `.as(Type)`, `.ofType(Type)`,
//! `.extension('url')`, `.where(resolve() is Type)`, `.where(child = 'literal')` and
//! `.where(hasExtension('url'))`. Anything else (indexers, `exists()`, boolean operators...) fails
//! to compile and the parameter is reported unsupported rather than indexed wrongly.

use std::collections::HashSet;

use serde_json::Value;

use super::reference::reference_type;

/// A compiled expression: the alternatives of its union, each a sequence of steps from the resource.
///
/// Parenthesised unions followed by more steps (`(a | b).c`) are distributed (`a.c | b.c`), so no
/// tree is needed.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    alternatives: Vec<Vec<Step>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A child element.
    Child(String),
    /// A choice element `name[x]`, which JSON spells with its type: `valueQuantity`, `valueString`...
    Choice(String),
    /// `as Type`, `.as(Type)` and `.ofType(Type)`.
    OfType(String),
    /// `.extension('url')`: the extensions with that url.
    Extension(String),
    /// `.where(...)`: keeps the values the filter accepts.
    Where(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    /// `resolve() is Type`: references to that resource type.
    ResolvesTo(String),
    /// `child = 'literal'`.
    Equals { child: String, literal: String },
    /// `hasExtension('url')`.
    HasExtension(String),
}

/// One value an expression selects, with its FHIR type when the JSON says it: a choice element's
/// key names its type (`valueQuantity`), a cast asserts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub fhir_type: Option<&'a str>,
}

impl Path {
    /// Compiles `expression` for resources of `resource_type`; paths must start at that type (or at
    /// `Resource`/`DomainResource`, which every resource is). `choices` names the choice elements
    /// the expression steps through.
    pub fn compile(expression: &str, resource_type: &str, choices: &[String]) -> Result<Path, String> {
        let mut parser = Parser { tokens: tokenize(expression)?, at: 0, resource_type, choices };
        let alternatives = parser.union()?;
        match parser.tokens.get(parser.at) {
            None => Ok(Path { alternatives }),
            Some(token) => Err(format!("unexpected {token:?}")),
        }
    }

    /// Every value the expression selects in `resource`, each once.
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Vec<Node<'a>> {
        let mut found: Vec<Node<'a>> = Vec::new();
        // Elements already found, by address: a resource may repeat an element thousands of times,
        // and comparing each with all found before was quadratic (50,000 given names took 15 s).
        let mut seen: HashSet<*const Value> = HashSet::new();
        for steps in &self.alternatives {
            let mut nodes = vec![Node { value: resource, fhir_type: None }];
            for step in steps {
                nodes = nodes.into_iter().flat_map(|node| step.apply(node)).collect();
            }
            // A union is a set: the same element reached twice must not be indexed twice.
            for node in nodes {
                if seen.insert(std::ptr::from_ref(node.value)) {
                    found.push(node);
                }
            }
        }
        found
    }
}

impl Step {
    fn apply<'a>(&'a self, node: Node<'a>) -> Vec<Node<'a>> {
        match self {
            Step::Child(name) => elements(node.value, name).map(|value| Node { value, fhir_type: None }).collect(),
            Step::Choice(name) => choices(node.value, name),
            Step::OfType(wanted) => match node.fhir_type {
                Some(actual) if actual != wanted => vec![],
                // Casts in search parameters only ever narrow choice elements, whose type the JSON key
                // already gave; otherwise the expression's word is all we have.
                _ => vec![Node { value: node.value, fhir_type: Some(wanted) }],
            },
            Step::Extension(url) => {
                extensions(node.value, url).map(|value| Node { value, fhir_type: Some("Extension") }).collect()
            }
            Step::Where(filter) => Some(node).into_iter().filter(|node| filter.keeps(node.value)).collect(),
        }
    }
}

impl Filter {
    fn keeps(&self, value: &Value) -> bool {
        match self {
            Filter::ResolvesTo(wanted) => {
                value.get("reference").and_then(Value::as_str).and_then(reference_type) == Some(wanted.as_str())
            }
            Filter::Equals { child, literal } => elements(value, child).any(|c| c.as_str() == Some(literal)),
            Filter::HasExtension(url) => extensions(value, url).next().is_some(),
        }
    }
}

/// The values of element `name` of an object, flattening arrays (FHIRPath works on collections).
pub(super) fn elements<'a>(value: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    value.get(name).into_iter().flat_map(flatten)
}

/// The values of choice element `name[x]`, each typed by its key (`valueQuantity` is a Quantity).
pub(super) fn choices<'a>(value: &'a Value, name: &str) -> Vec<Node<'a>> {
    let Some(object) = value.as_object() else { return vec![] };
    object
        .iter()
        .filter_map(|(key, child)| Some((choice_type(key.strip_prefix(name)?)?, child)))
        .flat_map(|(fhir_type, child)| flatten(child).map(move |value| Node { value, fhir_type: Some(fhir_type) }))
        .collect()
}

fn flatten(value: &Value) -> impl Iterator<Item = &Value> {
    match value {
        Value::Array(items) => items.iter(),
        single => std::slice::from_ref(single).iter(),
    }
    .filter(|v| !v.is_null())
}

fn extensions<'a>(value: &'a Value, url: &'a str) -> impl Iterator<Item = &'a Value> {
    elements(value, "extension").filter(move |extension| extension.get("url").and_then(Value::as_str) == Some(url))
}

/// The FHIR types a choice element can take, as they are spelled in FHIR (primitives in lower camel
/// case); a choice key carries the name with its first letter capitalised.
#[rustfmt::skip]
const CHOICE_TYPES: &[&str] = &[
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
    "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
    "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count", "Distance",
    "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio", "Reference",
    "SampledData", "Signature", "Timing",
    "ContactDetail", "Contributor", "DataRequirement", "Expression", "ParameterDefinition", "RelatedArtifact",
    "TriggerDefinition", "UsageContext", "Dosage", "Meta",
];

/// The FHIR type named by the suffix of a choice key (`Quantity` in `valueQuantity`, `DateTime` in
/// `effectiveDateTime`).
fn choice_type(suffix: &str) -> Option<&'static str> {
    CHOICE_TYPES.iter().copied().find(|name| {
        let (mut name, mut suffix) = (name.chars(), suffix.chars());
        name.next().map(|c| c.to_ascii_uppercase()) == suffix.next() && name.as_str() == suffix.as_str()
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Identifier(String),
    Literal(String),
    Symbol(char),
}

fn tokenize(expression: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = expression.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut identifier = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                identifier.push(c);
                chars.next();
            }
            tokens.push(Token::Identifier(identifier));
        } else if c == '\'' {
            chars.next();
            let mut literal = String::new();
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => literal.push(chars.next().ok_or("unterminated string")?),
                    Some(c) => literal.push(c),
                    None => return Err("unterminated string".into()),
                }
            }
            tokens.push(Token::Literal(literal));
        } else {
            tokens.push(Token::Symbol(c));
            chars.next();
        }
    }
    Ok(tokens)
}

struct Parser<'e> {
    tokens: Vec<Token>,
    at: usize,
    resource_type: &'e str,
    choices: &'e [String],
}

impl Parser<'_> {
    /// `as_expr ('|' as_expr)*`
    fn union(&mut self) -> Result<Vec<Vec<Step>>, String> {
        let mut alternatives = self.cast()?;
        while self.eat_symbol('|') {
            alternatives.extend(self.cast()?);
        }
        Ok(alternatives)
    }

    /// `path ('as' Type)?`: `as` binds looser than `.`, so it applies to the whole path.
    fn cast(&mut self) -> Result<Vec<Vec<Step>>, String> {
        let mut alternatives = self.path()?;
        if self.eat_identifier("as") {
            let wanted = self.identifier()?;
            alternatives.iter_mut().for_each(|steps| steps.push(Step::OfType(wanted.clone())));
        }
        Ok(alternatives)
    }

    /// `('(' union ')' | RootType) ('.' invocation)*`
    fn path(&mut self) -> Result<Vec<Vec<Step>>, String> {
        let mut alternatives = if self.eat_symbol('(') {
            let inner = self.union()?;
            self.expect_symbol(')')?;
            inner
        } else {
            let root = self.identifier()?;
            if root != self.resource_type && root != "Resource" && root != "DomainResource" {
                return Err(format!("path starts at {root}, not at {}", self.resource_type));
            }
            vec![vec![]]
        };
        while self.eat_symbol('.') {
            let step = self.invocation()?;
            alternatives.iter_mut().for_each(|steps| steps.push(step.clone()));
        }
        Ok(alternatives)
    }

    fn invocation(&mut self) -> Result<Step, String> {
        let name = self.identifier()?;
        if !self.eat_symbol('(') {
            let choice = self.choices.contains(&name);
            return Ok(if choice { Step::Choice(name) } else { Step::Child(name) });
        }
        let step = match name.as_str() {
            "as" | "ofType" => Step::OfType(self.identifier()?),
            "extension" => Step::Extension(self.literal()?),
            "where" => Step::Where(self.filter()?),
            other => return Err(format!("unsupported function {other}()")),
        };
        self.expect_symbol(')')?;
        Ok(step)
    }

    /// The filters search parameters use inside `where(...)`.
    fn filter(&mut self) -> Result<Filter, String> {
        let name = self.identifier()?;
        match name.as_str() {
            "resolve" => {
                self.expect_symbol('(')?;
                self.expect_symbol(')')?;
                if !self.eat_identifier("is") {
                    return Err("only `resolve() is Type` is supported".into());
                }
                Ok(Filter::ResolvesTo(self.identifier()?))
            }
            "hasExtension" => {
                self.expect_symbol('(')?;
                let url = self.literal()?;
                self.expect_symbol(')')?;
                Ok(Filter::HasExtension(url))
            }
            _ => {
                self.expect_symbol('=')?;
                Ok(Filter::Equals { child: name, literal: self.literal()? })
            }
        }
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Identifier(name)) => Ok(name.clone()),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn literal(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Literal(text)) => Ok(text.clone()),
            other => Err(format!("expected a string, found {other:?}")),
        }
    }

    fn eat_symbol(&mut self, symbol: char) -> bool {
        let found = self.tokens.get(self.at) == Some(&Token::Symbol(symbol));
        self.at += usize::from(found);
        found
    }

    fn eat_identifier(&mut self, word: &str) -> bool {
        let found = matches!(self.tokens.get(self.at), Some(Token::Identifier(name)) if name == word);
        self.at += usize::from(found);
        found
    }

    fn expect_symbol(&mut self, symbol: char) -> Result<(), String> {
        if self.eat_symbol(symbol) { Ok(()) } else { Err(format!("expected '{symbol}'")) }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(expression: &str, resource_type: &str) -> Result<Path, String> {
        // What the generator says for these tests' expressions.
        let choices = ["value", "onset", "abatement"].map(String::from);
        Path::compile(expression, resource_type, &choices)
    }

    fn select(expression: &str, resource: &Value) -> Vec<(Value, Option<String>)> {
        let path = compile(expression, resource["resourceType"].as_str().unwrap()).unwrap();
        path.evaluate(resource).into_iter().map(|n| (n.value.clone(), n.fhir_type.map(str::to_string))).collect()
    }

    #[test]
    fn compiles_the_forms_search_parameters_use() {
        let compiled =
            compile("(Observation.value as Quantity) | Observation.component.value.ofType(Range)", "Observation")
                .unwrap();
        assert_eq!(
            compiled.alternatives,
            vec![
                vec![Step::Choice("value".into()), Step::OfType("Quantity".into())],
                vec![Step::Child("component".into()), Step::Choice("value".into()), Step::OfType("Range".into())],
            ]
        );
        let distributed = compile("(Observation.value as CodeableConcept).text", "Observation").unwrap();
        assert_eq!(distributed.alternatives[0].last(), Some(&Step::Child("text".into())));
        let filtered = compile("Patient.telecom.where(system='phone') | Resource.meta.tag", "Patient").unwrap();
        assert_eq!(
            filtered.alternatives,
            vec![
                vec![
                    Step::Child("telecom".into()),
                    Step::Where(Filter::Equals { child: "system".into(), literal: "phone".into() })
                ],
                vec![Step::Child("meta".into()), Step::Child("tag".into())],
            ]
        );
        for (unsupported, resource_type) in [
            ("Bundle.entry[0].resource", "Bundle"),
            ("Patient.deceased.exists() and Patient.deceased != false", "Patient"),
            ("Patient.name.first()", "Patient"),
            ("Patient.telecom.where(system != 'phone')", "Patient"),
            ("Patient.name |", "Patient"),
            ("Patient.name 'x'", "Patient"),
            ("Observation.code", "Patient"),
        ] {
            assert!(compile(unsupported, resource_type).is_err(), "{unsupported} on {resource_type}");
        }
    }

    #[test]
    fn finds_choice_elements_by_type_suffix() {
        let observation = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "valueSet": "x"});
        assert_eq!(select("Observation.value", &observation), vec![(json!({"value": 1}), Some("Quantity".into()))]);
        assert_eq!(select("Observation.value as Quantity", &observation).len(), 1);
        assert!(select("Observation.value.as(CodeableConcept)", &observation).is_empty());
        let condition = json!({"resourceType": "Condition", "onsetDateTime": "2020", "abatementAge": {"value": 3}});
        assert_eq!(select("Condition.onset.as(dateTime)", &condition), vec![(json!("2020"), Some("dateTime".into()))]);
        assert_eq!(select("Condition.abatement.as(Age)", &condition)[0].1.as_deref(), Some("Age"));
    }

    #[test]
    fn plain_elements_never_match_longer_keys() {
        // Coverage.subscriber is a Reference; subscriberId is another element, not subscriber[x].
        let coverage = json!({"resourceType": "Coverage", "subscriberId": "12345"});
        assert!(select("Coverage.subscriber", &coverage).is_empty());
    }

    #[test]
    fn filters_and_extensions() {
        let patient = json!({
            "resourceType": "Patient",
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
            "generalPractitioner": [
                {"reference": "Practitioner/1"},
                {"reference": "http://x.org/fhir/Organization/2/_history/3"},
                {"reference": "Organization/3"}
            ],
            "extension": [{"url": "http://a", "valueString": "yes"}, {"url": "http://b", "valueString": "no"}]
        });
        assert_eq!(
            select("Patient.telecom.where(system='email')", &patient),
            vec![(json!({"system": "email", "value": "a@b"}), None)]
        );
        let organizations = select("Patient.generalPractitioner.where(resolve() is Organization)", &patient);
        assert_eq!(organizations.len(), 2);
        assert_eq!(
            select("Patient.extension('http://a')", &patient),
            vec![(json!({"url": "http://a", "valueString": "yes"}), Some("Extension".into()))]
        );
        assert_eq!(select("Patient.where(hasExtension('http://b')).telecom", &patient).len(), 2);
        assert!(select("Patient.where(hasExtension('http://c')).telecom", &patient).is_empty());
        assert_eq!(
            select("Patient.telecom | Patient.telecom.where(system='phone')", &patient).len(),
            2,
            "union is a set"
        );
    }
}
