//! FHIRPath evaluation: the items an expression works on, navigation, operators, comparison and equality.

use std::cmp::Ordering;

use serde_json::Value;

use super::calendar::{
    add_duration, calendar_to_ucum, compare_parts, dt_parts, is_calendar_unit, normalize_tz, time_parts,
};
use super::functions::{call, decimal_places};
use super::{EvalError, Expr, Op};

/// `1 'wk'`, `1.5 'mg'`, `1 week` (calendar duration words are not quoted).
pub(super) fn quantity_string(v: f64, u: &str) -> String {
    let n = if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { fmt_dec(v) };
    if is_calendar_unit(u) { format!("{n} {u}") } else { format!("{n} '{u}'") }
}

/// Type information for navigation: the validator implements this from its StructureDefinitions.
pub trait Model {
    /// The type of child `name` of a node of type `parent` (a type name such as `HumanName`, or an element
    /// path such as `Patient.contact` for backbone elements). Returns (type, is_choice, is_array_capable).
    fn child_type<'m>(&'m self, parent: &str, name: &str) -> Option<(&'m str, bool)>;
    /// Whether `ty` is `base` or derives from it (`Patient` is a `Resource`, `Age` a `Quantity`).
    fn is_subtype(&self, ty: &str, base: &str) -> bool;
    /// Whether a resource type of this name exists.
    fn is_resource_type(&self, name: &str) -> bool;
    /// Whether a value conforms to a profile (used by `conformsTo`).
    fn conforms_to(&self, _value: &Value, _profile: &str) -> Option<bool> {
        None
    }
    /// Code membership (used by `memberOf`); `None` when unknown.
    fn member_of(&self, _system: &str, _code: &str, _value_set: &str) -> Option<bool> {
        None
    }
    /// Resolves a reference string (Bundle-internal or contained), if possible.
    fn resolve<'v>(&self, _root: &'v Value, _reference: &str) -> Option<&'v Value> {
        None
    }
}

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A node of the input JSON, with its primitive-extension companion (`_name`) and its FHIR type.
    Node(Option<&'a Value>, Option<&'a Value>, Ty<'a>),
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    Date(String),
    DateTime(String),
    Time(String),
    Quantity(f64, String),
    /// The result of `type()`: (namespace, name).
    Type(&'static str, String),
}

/// A FHIR type name (or backbone element path) borrowed from the model or the JSON.
pub type Ty<'a> = &'a str;

pub(super) type Coll<'a> = Vec<Item<'a>>;

/// Evaluation environment.
pub struct Env<'a> {
    pub model: &'a dyn Model,
    pub resource: Option<Item<'a>>,
    pub root_resource: Option<Item<'a>>,
    pub context: Option<Item<'a>>,
}

#[derive(Clone, Copy)]
pub(super) struct Frame<'a, 'b> {
    pub(super) this: Option<&'b Item<'a>>,
    pub(super) index: usize,
    pub(super) total: Option<&'b Coll<'a>>,
}

/// Evaluates `expr` with `input` as the focus.
pub fn evaluate<'a>(expr: &Expr, input: Coll<'a>, env: &Env<'a>) -> Result<Coll<'a>, EvalError> {
    let this = input.first().cloned();
    let frame = Frame { this: this.as_ref(), index: 0, total: None };
    eval(expr, &input, env, frame)
}

/// Evaluates a constraint and returns its boolean result (empty counts as true, per the spec's invariant rule).
pub fn check<'a>(expr: &Expr, input: Item<'a>, env: &Env<'a>) -> Result<bool, EvalError> {
    let r = evaluate(expr, vec![input], env)?;
    match r.as_slice() {
        [] => Ok(true),
        [one] => match to_bool(one) {
            Some(b) => Ok(b),
            None => Ok(true),
        },
        _ => Err("constraint returned more than one value".into()),
    }
}

/// The primitive (system) value of an item, or itself if it is complex.
pub(super) fn prim<'a>(it: &Item<'a>) -> Item<'a> {
    match it {
        Item::Node(Some(v), _, ty) => match v {
            Value::Bool(b) => Item::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    if *ty == "decimal" { Item::Dec(i as f64) } else { Item::Int(i) }
                } else {
                    Item::Dec(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => match *ty {
                "date" => Item::Date(s.clone()),
                "dateTime" | "instant" => {
                    if s.contains('T') {
                        Item::DateTime(s.clone())
                    } else {
                        Item::Date(s.clone())
                    }
                }
                "time" => Item::Time(s.clone()),
                _ => Item::Str(s.clone()),
            },
            Value::Object(o) if *ty == "Quantity" || o.contains_key("value") && o.contains_key("code") => {
                match o.get("value").and_then(Value::as_f64) {
                    Some(val) => Item::Quantity(
                        val,
                        o.get("code").or(o.get("unit")).and_then(Value::as_str).unwrap_or("1").to_string(),
                    ),
                    None => it.clone(),
                }
            }
            _ => it.clone(),
        },
        _ => it.clone(),
    }
}

pub(super) fn to_bool(it: &Item) -> Option<bool> {
    match prim(it) {
        Item::Bool(b) => Some(b),
        _ => None,
    }
}

pub(super) fn single_bool(c: &Coll) -> Result<Option<bool>, EvalError> {
    match c.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(to_bool(one).unwrap_or(true))),
        _ => Err("expected a single boolean".into()),
    }
}

pub(super) fn singleton<'a>(c: &Coll<'a>) -> Result<Option<Item<'a>>, EvalError> {
    match c.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(prim(one))),
        _ => Err(format!("expected a single value, got {}", c.len())),
    }
}

pub(super) fn as_string(it: &Item) -> Option<String> {
    match prim(it) {
        Item::Str(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => Some(s),
        Item::Int(i) => Some(i.to_string()),
        Item::Dec(d) => Some(fmt_dec(d)),
        Item::Bool(b) => Some(b.to_string()),
        Item::Quantity(v, u) => Some(quantity_string(v, &u)),
        Item::Node(..) | Item::Type(..) => None,
    }
}

fn fmt_dec(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{d:.1}")
    } else {
        let s = format!("{d:.8}");
        let s = s.trim_end_matches('0');
        s.to_string()
    }
}

pub(super) fn each_child<'a>(
    v: &'a Value,
    ext: Option<&'a Value>,
    f: &mut dyn FnMut(Option<&'a Value>, Option<&'a Value>),
) {
    match v {
        Value::Array(a) => {
            let ea = ext.and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let e = ea.and_then(|ea| ea.get(i)).filter(|e| !e.is_null());
                if x.is_null() {
                    if e.is_some() {
                        f(None, e);
                    }
                } else {
                    f(Some(x), e);
                }
            }
        }
        Value::Null => {
            if ext.is_some() {
                f(None, ext)
            }
        }
        _ => f(Some(v), ext),
    }
}

pub(super) fn navigate<'a>(item: &Item<'a>, name: &str, env: &Env<'a>, out: &mut Coll<'a>) {
    if let Item::Type(ns, n) = item {
        match name {
            "namespace" => out.push(Item::Str(ns.to_string())),
            "name" => out.push(Item::Str(n.clone())),
            _ => {}
        }
        return;
    }
    let Item::Node(Some(v), ext, ty) = item else {
        // primitive companions: `id` and `extension` live in the `_x` object
        if let Item::Node(None, Some(e), _) = item
            && let Some(x) = e.get(name)
        {
            let cty = if name == "extension" { "Extension" } else { "string" };
            each_child(x, None, &mut |n, ex| out.push(Item::Node(n, ex, cty)));
        }
        return;
    };
    let Value::Object(o) = v else {
        if let Some(e) = ext
            && let Some(x) = e.get(name)
        {
            let cty = if name == "extension" { "Extension" } else { "string" };
            each_child(x, None, &mut |n, ex| out.push(Item::Node(n, ex, cty)));
        }
        return;
    };
    let (val, ext) = (crate::defs::member(o, name), crate::defs::companion(o, name));
    // The child's type is looked up only for a property that is there: constraints often test absent ones.
    let info = if val.is_some() || ext.is_some() { env.model.child_type(ty, name) } else { None };
    match info {
        Some((cty, _)) => {
            let val = val.unwrap_or(&Value::Null);
            if name == "resource" || cty == "Resource" || crate::defs::field(val, "resourceType").is_some() {
                each_child(val, ext, &mut |n, ex| {
                    let rt = n.and_then(|n| n.get("resourceType")).and_then(Value::as_str).unwrap_or(cty);
                    out.push(Item::Node(n, ex, rt))
                });
            } else {
                each_child(val, ext, &mut |n, ex| out.push(Item::Node(n, ex, cty)));
            }
        }
        None => {
            if let Some(val) = val {
                each_child(val, ext, &mut |n, ex| {
                    let rt = n.and_then(|n| n.get("resourceType")).and_then(Value::as_str).unwrap_or("");
                    out.push(Item::Node(n, ex, rt))
                });
                return;
            }
            // choice element: valueQuantity etc.
            for (k, val) in o {
                if k.len() > name.len()
                    && k.starts_with(name)
                    && k[name.len()..].starts_with(|c: char| c.is_ascii_uppercase())
                {
                    let suffix = &k[name.len()..];
                    let ty: &'a str = choice_type(suffix);
                    let ext = crate::defs::companion(o, k);
                    each_child(val, ext, &mut |n, ex| out.push(Item::Node(n, ex, ty)));
                }
            }
        }
    }
}

/// `Quantity` -> `Quantity`, `String` -> `string`, `DateTime` -> `dateTime`.
pub(crate) fn choice_type_pub(suffix: &str) -> &'static str {
    choice_type(suffix)
}

pub(super) fn choice_type(suffix: &str) -> &'static str {
    const PRIMS: [&str; 20] = [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ];
    for p in PRIMS {
        if p.len() == suffix.len()
            && p[1..] == suffix[1..]
            && p.as_bytes()[0].eq_ignore_ascii_case(&suffix.as_bytes()[0])
        {
            return p;
        }
    }
    const COMPLEX: [&str; 30] = [
        "Address",
        "Age",
        "Annotation",
        "Attachment",
        "CodeableConcept",
        "Coding",
        "ContactPoint",
        "Count",
        "Distance",
        "Duration",
        "HumanName",
        "Identifier",
        "Money",
        "Period",
        "Quantity",
        "Range",
        "Ratio",
        "Reference",
        "SampledData",
        "Signature",
        "Timing",
        "ContactDetail",
        "Contributor",
        "DataRequirement",
        "Expression",
        "ParameterDefinition",
        "RelatedArtifact",
        "TriggerDefinition",
        "UsageContext",
        "Dosage",
    ];
    COMPLEX.iter().find(|c| **c == suffix).copied().unwrap_or("Meta")
}

pub(super) fn eval<'a, 'b>(
    expr: &Expr,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Coll<'a>, EvalError> {
    Ok(match expr {
        Expr::Empty => vec![],
        Expr::Bool(b) => vec![Item::Bool(*b)],
        Expr::Str(s) => vec![Item::Str(s.clone())],
        Expr::Int(i) => vec![Item::Int(*i)],
        Expr::Dec(d) => vec![Item::Dec(*d)],
        Expr::Date(d) => vec![Item::Date(d.clone())],
        Expr::DateTime(d) => vec![Item::DateTime(d.clone())],
        Expr::Time(d) => vec![Item::Time(d.clone())],
        Expr::Quantity(v, u) => vec![Item::Quantity(*v, u.clone())],
        Expr::This => fr.this.cloned().into_iter().collect(),
        Expr::Index => vec![Item::Int(fr.index as i64)],
        Expr::Total => fr.total.cloned().unwrap_or_default(),
        Expr::Var(v) => match v.as_str() {
            "resource" => env.resource.clone().into_iter().collect(),
            "rootResource" => env.root_resource.clone().or(env.resource.clone()).into_iter().collect(),
            "context" => env.context.clone().into_iter().collect(),
            "ucum" => vec![Item::Str("http://unitsofmeasure.org".into())],
            "sct" => vec![Item::Str("http://snomed.info/sct".into())],
            "loinc" => vec![Item::Str("http://loinc.org".into())],
            s if s.starts_with("vs-") => vec![Item::Str(format!("http://hl7.org/fhir/ValueSet/{}", &s[3..]))],
            s if s.starts_with("ext-") => {
                vec![Item::Str(format!("http://hl7.org/fhir/StructureDefinition/{}", &s[4..]))]
            }
            s => return Err(format!("unknown variable %{s}")),
        },
        Expr::Ident(name) => {
            let mut out = Vec::new();
            for it in focus {
                // A leading type name selects the focus when it is of that type.
                if name.starts_with(|c: char| c.is_ascii_uppercase())
                    && let Item::Node(Some(v), _, ty) = it
                {
                    if *ty == name || crate::defs::resource_type(v) == Some(name) {
                        out.push(it.clone());
                        continue;
                    }
                    if env.model.is_subtype(ty, name) {
                        out.push(it.clone());
                        continue;
                    }
                }
                navigate(it, name, env, &mut out);
            }
            out
        }
        Expr::Member(base, name) => {
            let b = eval(base, focus, env, fr)?;
            let mut out = Vec::new();
            for it in &b {
                navigate(it, name, env, &mut out);
            }
            out
        }
        Expr::IndexOp(base, idx) => {
            let b = eval(base, focus, env, fr)?;
            let i = eval(idx, focus, env, fr)?;
            match singleton(&i)? {
                Some(Item::Int(n)) if n >= 0 => b.into_iter().nth(n as usize).into_iter().collect(),
                _ => vec![],
            }
        }
        Expr::Unary(_, e) => {
            let v = eval(e, focus, env, fr)?;
            match singleton(&v)? {
                Some(Item::Int(n)) => vec![Item::Int(-n)],
                Some(Item::Dec(n)) => vec![Item::Dec(-n)],
                Some(Item::Quantity(n, u)) => vec![Item::Quantity(-n, u)],
                None => vec![],
                _ => return Err("unary minus on a non-number".into()),
            }
        }
        Expr::TypeOp(is, e, ty) => {
            let v = eval(e, focus, env, fr)?;
            if *is {
                match v.as_slice() {
                    [] => vec![],
                    [one] => vec![Item::Bool(is_type(one, ty, env, false))],
                    _ => return Err("'is' on a collection".into()),
                }
            } else {
                if v.len() > 1 {
                    return Err("'as' on a collection".into());
                }
                v.into_iter().filter(|x| is_type(x, ty, env, true)).collect()
            }
        }
        Expr::Bin(op, l, r) => binary(*op, l, r, focus, env, fr)?,
        Expr::Call(base, name, args) => {
            let input = match base {
                Some(b) => eval(b, focus, env, fr)?,
                None => focus.to_vec(),
            };
            call(name, input, args, focus, env, fr)?
        }
    })
}

pub(super) fn type_name_of<'a>(it: &Item<'a>) -> (&'static str, String) {
    match it {
        Item::Bool(_) => ("System", "Boolean".into()),
        Item::Int(_) => ("System", "Integer".into()),
        Item::Dec(_) => ("System", "Decimal".into()),
        Item::Str(_) => ("System", "String".into()),
        Item::Date(_) => ("System", "Date".into()),
        Item::DateTime(_) => ("System", "DateTime".into()),
        Item::Time(_) => ("System", "Time".into()),
        Item::Quantity(..) => ("System", "Quantity".into()),
        Item::Type(..) => ("System", "TypeInfo".into()),
        Item::Node(v, _, ty) => {
            let t = if ty.is_empty() || ty.contains('.') {
                v.and_then(|v| v.get("resourceType")).and_then(Value::as_str).unwrap_or(if ty.contains('.') {
                    "BackboneElement"
                } else {
                    ""
                })
            } else {
                ty
            };
            ("FHIR", t.to_string())
        }
    }
}

/// `is` accepts subtypes; `as` and `ofType` (`exact`) do not treat FHIR primitives derived from each other
/// (code from string, uuid from uri) as the same type, like the HL7 engines.
pub(super) fn is_type(it: &Item, ty: &str, env: &Env, exact: bool) -> bool {
    let (ns, name) = type_name_of(it);
    let (want_ns, want) = match ty.split_once('.') {
        Some((n, t)) => (Some(n), t),
        None => (None, ty),
    };
    if let Some(n) = want_ns
        && n != ns
    {
        return false;
    }
    if name == want {
        return true;
    }
    if ns == "FHIR" {
        if want_ns.is_none() && name.eq_ignore_ascii_case(want) && want.starts_with(char::is_lowercase) {
            return true;
        }
        if exact && name.starts_with(char::is_lowercase) {
            return false;
        }
        return env.model.is_subtype(&name, want);
    }
    false
}

pub(super) fn binary<'a, 'b>(
    op: Op,
    l: &Expr,
    r: &Expr,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Coll<'a>, EvalError> {
    let lv = eval(l, focus, env, fr)?;
    match op {
        Op::And => {
            let a = single_bool(&lv)?;
            if a == Some(false) {
                return Ok(vec![Item::Bool(false)]);
            }
            let b = single_bool(&eval(r, focus, env, fr)?)?;
            return Ok(match (a, b) {
                (_, Some(false)) => vec![Item::Bool(false)],
                (Some(true), Some(true)) => vec![Item::Bool(true)],
                _ => vec![],
            });
        }
        Op::Or => {
            let a = single_bool(&lv)?;
            if a == Some(true) {
                return Ok(vec![Item::Bool(true)]);
            }
            let b = single_bool(&eval(r, focus, env, fr)?)?;
            return Ok(match (a, b) {
                (_, Some(true)) => vec![Item::Bool(true)],
                (Some(false), Some(false)) => vec![Item::Bool(false)],
                _ => vec![],
            });
        }
        Op::Implies => {
            let a = single_bool(&lv)?;
            if a == Some(false) {
                return Ok(vec![Item::Bool(true)]);
            }
            let b = single_bool(&eval(r, focus, env, fr)?)?;
            return Ok(match (a, b) {
                (_, Some(true)) => vec![Item::Bool(true)],
                (Some(true), Some(false)) => vec![Item::Bool(false)],
                _ => vec![],
            });
        }
        _ => {}
    }
    // `code = 'literal'`, the common comparison, is decided without making an item of the literal.
    if let (Op::Eq | Op::Ne, Expr::Str(lit), [one]) = (op, r, lv.as_slice())
        && let Some(s) = plain_str(one)
    {
        return Ok(vec![Item::Bool((s == lit) == (op == Op::Eq))]);
    }
    let rv = eval(r, focus, env, fr)?;
    Ok(match op {
        Op::Xor => match (single_bool(&lv)?, single_bool(&rv)?) {
            (Some(a), Some(b)) => vec![Item::Bool(a != b)],
            _ => vec![],
        },
        Op::Union => {
            let mut out: Coll = Vec::new();
            for it in lv.into_iter().chain(rv) {
                if !out.iter().any(|o| equal(o, &it) == Some(true)) {
                    out.push(it);
                }
            }
            out
        }
        Op::Eq | Op::Ne => {
            if lv.is_empty() || rv.is_empty() {
                return Ok(vec![]);
            }
            let eq = if lv.len() != rv.len() {
                Some(false)
            } else {
                let mut res = Some(true);
                for (a, b) in lv.iter().zip(rv.iter()) {
                    match equal(a, b) {
                        Some(true) => {}
                        Some(false) => {
                            res = Some(false);
                            break;
                        }
                        None => res = None,
                    }
                }
                res
            };
            match eq {
                Some(e) => vec![Item::Bool(if op == Op::Eq { e } else { !e })],
                None => vec![],
            }
        }
        Op::Equiv | Op::NotEquiv => {
            let e = if lv.is_empty() && rv.is_empty() {
                true
            } else if lv.len() != rv.len() {
                false
            } else {
                lv.iter().all(|a| rv.iter().any(|b| equivalent(a, b)))
            };
            vec![Item::Bool(if op == Op::Equiv { e } else { !e })]
        }
        Op::In | Op::Contains => {
            let (item, coll) = if op == Op::In { (&lv, &rv) } else { (&rv, &lv) };
            match item.as_slice() {
                [] => vec![],
                [one] => vec![Item::Bool(coll.iter().any(|c| equal(c, one) == Some(true)))],
                _ => return Err("'in' with more than one item".into()),
            }
        }
        Op::Lt | Op::Gt | Op::Le | Op::Ge => {
            let (Some(a), Some(b)) = (singleton(&lv)?, singleton(&rv)?) else { return Ok(vec![]) };
            match compare(&a, &b)? {
                None => vec![],
                Some(ord) => vec![Item::Bool(match op {
                    Op::Lt => ord == Ordering::Less,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Le => ord != Ordering::Greater,
                    _ => ord != Ordering::Less,
                })],
            }
        }
        Op::Concat => {
            let a = singleton(&lv)?.and_then(|x| as_string(&x)).unwrap_or_default();
            let b = singleton(&rv)?.and_then(|x| as_string(&x)).unwrap_or_default();
            vec![Item::Str(a + &b)]
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::IntDiv | Op::Mod => {
            let (Some(a), Some(b)) = (singleton(&lv)?, singleton(&rv)?) else { return Ok(vec![]) };
            arith(op, a, b)?.into_iter().collect()
        }
        _ => unreachable!(),
    })
}

pub(super) fn arith<'a>(op: Op, a: Item<'a>, b: Item<'a>) -> Result<Option<Item<'a>>, EvalError> {
    Ok(match (op, a, b) {
        (Op::Add, Item::Str(x), Item::Str(y)) => Some(Item::Str(x + &y)),
        (_, Item::Int(x), Item::Int(y)) => match op {
            Op::Add => x.checked_add(y).map(Item::Int),
            Op::Sub => x.checked_sub(y).map(Item::Int),
            Op::Mul => x.checked_mul(y).map(Item::Int),
            Op::Div => (y != 0).then(|| Item::Dec(x as f64 / y as f64)),
            Op::IntDiv => (y != 0).then(|| Item::Int(x / y)),
            Op::Mod => (y != 0).then(|| Item::Int(x % y)),
            _ => None,
        },
        (_, Item::Int(x), Item::Dec(y)) => arith(op, Item::Dec(x as f64), Item::Dec(y))?,
        (_, Item::Dec(x), Item::Int(y)) => arith(op, Item::Dec(x), Item::Dec(y as f64))?,
        (_, Item::Dec(x), Item::Dec(y)) => match op {
            Op::Add => Some(Item::Dec(x + y)),
            Op::Sub => Some(Item::Dec(x - y)),
            Op::Mul => Some(Item::Dec(x * y)),
            Op::Div => (y != 0.0).then(|| Item::Dec(x / y)),
            Op::IntDiv => (y != 0.0).then(|| Item::Int((x / y).trunc() as i64)),
            Op::Mod => (y != 0.0).then(|| Item::Dec(round8(x % y))),
            _ => None,
        },
        (Op::Add | Op::Sub, Item::Date(d), Item::Quantity(v, u)) => {
            add_duration(&d, v, &u, op == Op::Sub)?.map(Item::Date)
        }
        (Op::Add | Op::Sub, Item::DateTime(d), Item::Quantity(v, u)) => {
            add_duration(&d, v, &u, op == Op::Sub)?.map(Item::DateTime)
        }
        (Op::Add, Item::Quantity(x, u), Item::Quantity(y, w)) if u == w => Some(Item::Quantity(x + y, u)),
        (Op::Sub, Item::Quantity(x, u), Item::Quantity(y, w)) if u == w => Some(Item::Quantity(x - y, u)),
        // products and quotients of quantities combine their UCUM units (`'cm' * 'm'` is `'cm.m'`)
        (Op::Mul, Item::Quantity(x, u), Item::Quantity(y, w)) => Some(Item::Quantity(x * y, format!("{u}.{w}"))),
        (Op::Div, Item::Quantity(x, u), Item::Quantity(y, w)) if u != w && y != 0.0 => {
            Some(Item::Quantity(x / y, format!("{u}/{w}")))
        }
        (Op::Mul, Item::Quantity(x, u), Item::Int(y)) => Some(Item::Quantity(x * y as f64, u)),
        (Op::Mul, Item::Quantity(x, u), Item::Dec(y)) => Some(Item::Quantity(x * y, u)),
        (Op::Div, Item::Quantity(x, u), Item::Quantity(y, w)) if u == w && y != 0.0 => {
            Some(Item::Quantity(x / y, "1".into()))
        }
        _ => return Err("invalid operand types for arithmetic".into()),
    })
}

pub(super) fn round8(x: f64) -> f64 {
    (x * 1e8).round() / 1e8
}

pub(super) fn compare(a: &Item, b: &Item) -> Result<Option<Ordering>, EvalError> {
    Ok(match (a, b) {
        (Item::Int(x), Item::Int(y)) => Some(x.cmp(y)),
        (Item::Int(x), Item::Dec(y)) => compare_decimal(*x as f64, *y),
        (Item::Dec(x), Item::Int(y)) => compare_decimal(*x, *y as f64),
        (Item::Dec(x), Item::Dec(y)) => compare_decimal(*x, *y),
        (Item::Str(x), Item::Str(y)) => Some(x.cmp(y)),
        (Item::Date(x) | Item::DateTime(x), Item::Date(y) | Item::DateTime(y)) => {
            let (mut pa, ta) = dt_parts(x);
            let (mut pb, tb) = dt_parts(y);
            // times with and without a timezone cannot be ordered
            if pa.len() > 3 && pb.len() > 3 && ta.is_some() != tb.is_some() {
                return Ok(None);
            }
            if ta.is_some() && tb.is_some() {
                normalize_tz(&mut pa, ta);
                normalize_tz(&mut pb, tb);
            }
            compare_parts(&pa, &pb, 5)
        }
        (Item::Time(x), Item::Time(y)) => compare_parts(&time_parts(x), &time_parts(y), 2),
        (Item::Str(s), Item::Date(_) | Item::DateTime(_)) => compare(&Item::DateTime(s.clone()), b)?,
        (Item::Date(_) | Item::DateTime(_), Item::Str(s)) => compare(a, &Item::DateTime(s.clone()))?,
        (Item::Quantity(x, u), Item::Quantity(y, w)) => {
            crate::ucum::compare((*x, calendar_to_ucum(u)), (*y, calendar_to_ucum(w)))
        }
        _ => return Err("cannot compare these values".into()),
    })
}

/// Decimals are binary floating point here: values equal to 12 significant digits are equal (`1.8 - 1.2 = 0.6`).
pub(super) fn compare_decimal(x: f64, y: f64) -> Option<Ordering> {
    if (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0) { Some(Ordering::Equal) } else { x.partial_cmp(&y) }
}

/// The items of `input` without repeats, in order. FHIRPath equality is no hash equality across
/// types, so in general each item is compared with those kept; a collection of plain strings (the
/// fullUrls that bdl-7 checks on a Bundle of thousands of entries) goes through a set instead.
pub(super) fn distinct(input: Coll<'_>) -> Coll<'_> {
    if input.iter().all(|it| plain_str(it).is_some()) {
        let mut seen = crate::FxSet::default();
        let keep: Vec<bool> = input.iter().map(|it| seen.insert(plain_str(it))).collect();
        return input.into_iter().zip(keep).filter_map(|(it, keep)| keep.then_some(it)).collect();
    }
    let mut out: Coll = Vec::new();
    for it in input {
        if !out.iter().any(|o| equal(o, &it) == Some(true)) {
            out.push(it);
        }
    }
    out
}

/// The string an item's primitive value is when that is a `String` (as `prim` would give it, without the copy).
pub(super) fn plain_str<'x>(it: &'x Item) -> Option<&'x str> {
    match it {
        Item::Str(s) => Some(s),
        Item::Node(Some(Value::String(s)), _, ty) if !matches!(*ty, "date" | "dateTime" | "instant" | "time") => {
            Some(s)
        }
        _ => None,
    }
}

pub(super) fn equal(a: &Item, b: &Item) -> Option<bool> {
    if let (Some(x), Some(y)) = (plain_str(a), plain_str(b)) {
        return Some(x == y);
    }
    let (pa, pb) = (prim(a), prim(b));
    match (&pa, &pb) {
        (Item::Node(Some(x), _, _), Item::Node(Some(y), _, _)) => Some(json_eq(x, y)),
        (Item::Node(..), _) | (_, Item::Node(..)) => Some(false),
        (Item::Bool(x), Item::Bool(y)) => Some(x == y),
        (Item::Str(x), Item::Str(y)) => Some(x == y),
        (Item::Int(_) | Item::Dec(_), Item::Int(_) | Item::Dec(_)) => {
            compare(&pa, &pb).ok().flatten().map(|o| o == Ordering::Equal)
        }
        (Item::Date(_) | Item::DateTime(_), Item::Date(_) | Item::DateTime(_)) | (Item::Time(_), Item::Time(_)) => {
            compare(&pa, &pb).ok().flatten().map(|o| o == Ordering::Equal)
        }
        (Item::Str(_), Item::Date(_) | Item::DateTime(_)) | (Item::Date(_) | Item::DateTime(_), Item::Str(_)) => {
            compare(&pa, &pb).ok().flatten().map(|o| o == Ordering::Equal)
        }
        (Item::Quantity(..), Item::Quantity(..)) => compare(&pa, &pb).ok().flatten().map(|o| o == Ordering::Equal),
        _ => Some(false),
    }
}

pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

pub(super) fn equivalent(a: &Item, b: &Item) -> bool {
    let (pa, pb) = (prim(a), prim(b));
    match (&pa, &pb) {
        (Item::Str(x), Item::Str(y)) => norm_ws(x) == norm_ws(y),
        (Item::Dec(_) | Item::Int(_), Item::Dec(_) | Item::Int(_)) => {
            let x = num(&pa).unwrap_or(0.0);
            let y = num(&pb).unwrap_or(0.0);
            let prec = decimals(&pa).min(decimals(&pb));
            let f = 10f64.powi(prec as i32);
            (x * f).round() == (y * f).round()
        }
        (Item::Date(_) | Item::DateTime(_), Item::Date(_) | Item::DateTime(_)) => {
            compare(&pa, &pb).ok().flatten() == Some(Ordering::Equal)
        }
        // quantities are equivalent at the precision of the less precise one, in its unit
        (Item::Quantity(x, u), Item::Quantity(y, w)) => {
            let (u, w) = (calendar_to_ucum(u), calendar_to_ucum(w));
            let y = if u == w {
                Some(*y)
            } else {
                crate::ucum::canonical(u)
                    .zip(crate::ucum::canonical(w))
                    .filter(|((_, a), (_, b))| a == b)
                    .map(|((fu, _), (fw, _))| y * fw / fu)
            };
            y.is_some_and(|y| {
                let f = 10f64.powi(decimal_places(*x).min(decimal_places(y)) as i32);
                (x * f).round() == (y * f).round()
            })
        }
        _ => equal(&pa, &pb) == Some(true),
    }
}

pub(super) fn decimals(it: &Item) -> usize {
    match it {
        Item::Dec(d) => {
            let s = fmt_dec(*d);
            s.split_once('.').map(|(_, f)| f.len()).unwrap_or(0)
        }
        _ => 0,
    }
}

pub(super) fn num(it: &Item) -> Option<f64> {
    match it {
        Item::Int(i) => Some(*i as f64),
        Item::Dec(d) => Some(*d),
        _ => None,
    }
}

pub(super) fn norm_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}
