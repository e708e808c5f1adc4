//! A FHIRPath (N1, as used by FHIR R4) evaluator over `serde_json::Value`, written for validation:
//! expressions are parsed once (at definition load) and evaluated without copying the JSON.
//!
//! Type information (for `is`, `as`, `ofType`, choice elements) comes from a [`Model`], which the
//! validator implements from its compiled StructureDefinitions.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::Value;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Empty,
    Bool(bool),
    Str(String),
    Int(i64),
    Dec(f64),
    Date(String),
    DateTime(String),
    Time(String),
    Quantity(f64, String),
    Ident(String),
    This,
    Index,
    Total,
    Var(String),
    Member(Box<Expr>, String),
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    IndexOp(Box<Expr>, Box<Expr>),
    Unary(char, Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    TypeOp(bool, Box<Expr>, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Equiv,
    Ne,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Delimited(String),
    Str(String),
    Num(String),
    Date(String),
    Var(String),
    Sym(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            if i + 1 >= b.len() {
                return Err("unterminated comment".into());
            }
            i += 2;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[st..i].to_string()));
            continue;
        }
        if c.is_ascii_digit() {
            let st = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && b[i] == b'L' {
                i += 1;
            }
            out.push(Tok::Num(src[st..i].to_string()));
            continue;
        }
        if c == b'\'' || c == b'`' {
            let (s, n) = read_quoted(&src[i..], c as char)?;
            i += n;
            out.push(if c == b'\'' { Tok::Str(s) } else { Tok::Delimited(s) });
            continue;
        }
        if c == b'@' {
            let st = i + 1;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b':' | b'.' | b'+' | b'T' | b'Z'))
            {
                // a '.' must be followed by a digit to be part of the literal
                if b[i] == b'.' && !b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
            out.push(Tok::Date(src[st..i].to_string()));
            continue;
        }
        if c == b'%' {
            i += 1;
            if i < b.len() && (b[i] == b'`' || b[i] == b'\'') {
                let (s, n) = read_quoted(&src[i..], b[i] as char)?;
                i += n;
                out.push(Tok::Var(s));
            } else {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                    i += 1;
                }
                out.push(Tok::Var(src[st..i].to_string()));
            }
            continue;
        }
        if c == b'$' {
            let st = i;
            i += 1;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push(Tok::Ident(src[st..i].to_string()));
            continue;
        }
        let two = if i + 1 < b.len() { &src[i..i + 2] } else { "" };
        let sym: &'static str = match two {
            "<=" => "<=",
            ">=" => ">=",
            "!=" => "!=",
            "!~" => "!~",
            _ => match c {
                b'.' => ".",
                b'(' => "(",
                b')' => ")",
                b'[' => "[",
                b']' => "]",
                b'{' => "{",
                b'}' => "}",
                b',' => ",",
                b'+' => "+",
                b'-' => "-",
                b'*' => "*",
                b'/' => "/",
                b'&' => "&",
                b'|' => "|",
                b'<' => "<",
                b'>' => ">",
                b'=' => "=",
                b'~' => "~",
                _ => return Err(format!("unexpected character '{}'", c as char)),
            },
        };
        i += sym.len();
        out.push(Tok::Sym(sym));
    }
    out.push(Tok::End);
    Ok(out)
}

fn read_quoted(s: &str, q: char) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((out, i + 1));
        }
        if c == '\\' {
            let (_, e) = chars.next().ok_or("unterminated escape")?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let mut hex = String::new();
                    for _ in 0..4 {
                        hex.push(chars.next().ok_or("bad unicode escape")?.1);
                    }
                    let n = u32::from_str_radix(&hex, 16).map_err(|_| "bad unicode escape")?;
                    out.push(char::from_u32(n).ok_or("bad unicode escape")?);
                }
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated string".into())
}

// ---------------------------------------------------------------- parser

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parses a FHIRPath expression.
pub fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: lex(src)?, pos: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::End {
        return Err(format!("unexpected token {:?}", p.peek()));
    }
    Ok(e)
}

fn binop(t: &Tok) -> Option<(Op, u8)> {
    Some(match t {
        Tok::Sym("*") => (Op::Mul, 10),
        Tok::Sym("/") => (Op::Div, 10),
        Tok::Ident(s) if s == "div" => (Op::IntDiv, 10),
        Tok::Ident(s) if s == "mod" => (Op::Mod, 10),
        Tok::Sym("+") => (Op::Add, 9),
        Tok::Sym("-") => (Op::Sub, 9),
        Tok::Sym("&") => (Op::Concat, 9),
        Tok::Sym("|") => (Op::Union, 7),
        Tok::Sym("<") => (Op::Lt, 6),
        Tok::Sym(">") => (Op::Gt, 6),
        Tok::Sym("<=") => (Op::Le, 6),
        Tok::Sym(">=") => (Op::Ge, 6),
        Tok::Sym("=") => (Op::Eq, 5),
        Tok::Sym("~") => (Op::Equiv, 5),
        Tok::Sym("!=") => (Op::Ne, 5),
        Tok::Sym("!~") => (Op::NotEquiv, 5),
        Tok::Ident(s) if s == "in" => (Op::In, 4),
        Tok::Ident(s) if s == "contains" => (Op::Contains, 4),
        Tok::Ident(s) if s == "and" => (Op::And, 3),
        Tok::Ident(s) if s == "or" => (Op::Or, 2),
        Tok::Ident(s) if s == "xor" => (Op::Xor, 2),
        Tok::Ident(s) if s == "implies" => (Op::Implies, 1),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn expect(&mut self, s: &str) -> Result<(), String> {
        match self.next() {
            Tok::Sym(x) if x == s => Ok(()),
            t => Err(format!("expected '{s}', found {t:?}")),
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, String> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            // type operators bind at precedence 8 (between additive and union)
            if let Tok::Ident(ref s) = t
                && (s == "is" || s == "as")
                && min_prec <= 8
            {
                self.next();
                let ty = self.type_spec()?;
                lhs = Expr::TypeOp(s == "is", Box::new(lhs), ty);
                continue;
            }
            let Some((op, prec)) = binop(&t) else { break };
            if prec < min_prec {
                break;
            }
            self.next();
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<String, String> {
        let mut name = match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => s,
            t => return Err(format!("expected type name, found {t:?}")),
        };
        while self.peek() == &Tok::Sym(".") {
            self.next();
            match self.next() {
                Tok::Ident(s) | Tok::Delimited(s) => {
                    name.push('.');
                    name.push_str(&s);
                }
                t => return Err(format!("expected type name, found {t:?}")),
            }
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Tok::Sym("-") => {
                self.next();
                let e = self.unary()?;
                Ok(match e {
                    Expr::Int(n) => Expr::Int(-n),
                    Expr::Dec(n) => Expr::Dec(-n),
                    Expr::Quantity(n, u) => Expr::Quantity(-n, u),
                    e => Expr::Unary('-', Box::new(e)),
                })
            }
            Tok::Sym("+") => {
                self.next();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    let name = match self.next() {
                        Tok::Ident(s) | Tok::Delimited(s) => s,
                        t => return Err(format!("expected name after '.', found {t:?}")),
                    };
                    if self.peek() == &Tok::Sym("(") {
                        let args = self.args()?;
                        e = Expr::Call(Some(Box::new(e)), name, args);
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::IndexOp(Box::new(e), Box::new(idx));
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn args(&mut self) -> Result<Vec<Expr>, String> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() == &Tok::Sym(")") {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.next() {
                Tok::Sym(",") => continue,
                Tok::Sym(")") => break,
                t => return Err(format!("expected ',' or ')', found {t:?}")),
            }
        }
        Ok(args)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Tok::Num(n) => {
                let n = n.trim_end_matches('L');
                let quantity_unit = match self.peek().clone() {
                    Tok::Str(u) => {
                        self.next();
                        Some(u)
                    }
                    Tok::Ident(u) if is_calendar_unit(&u) => {
                        self.next();
                        Some(u)
                    }
                    _ => None,
                };
                let value: f64 = n.parse().map_err(|_| "bad number")?;
                if let Some(u) = quantity_unit {
                    return Ok(Expr::Quantity(value, u));
                }
                if n.contains('.') {
                    Ok(Expr::Dec(value))
                } else {
                    Ok(Expr::Int(n.parse().map_err(|_| "integer overflow")?))
                }
            }
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Date(d) => {
                if let Some(t) = d.strip_prefix('T') {
                    if !valid_time_literal(t) {
                        return Err(format!("invalid time literal @{d}"));
                    }
                    Ok(Expr::Time(t.to_string()))
                } else if d.contains('T') {
                    if !valid_datetime_literal(&d) {
                        return Err(format!("invalid dateTime literal @{d}"));
                    }
                    Ok(Expr::DateTime(d))
                } else {
                    if !valid_date_literal(&d) {
                        return Err(format!("invalid date literal @{d}"));
                    }
                    Ok(Expr::Date(d))
                }
            }
            Tok::Var(v) => Ok(Expr::Var(v)),
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Delimited(s) => Ok(Expr::Ident(s)),
            Tok::Ident(s) => match s.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "$this" => Ok(Expr::This),
                "$index" => Ok(Expr::Index),
                "$total" => Ok(Expr::Total),
                _ if s.starts_with('$') => Err(format!("unknown {s}")),
                _ => {
                    if self.peek() == &Tok::Sym("(") {
                        let args = self.args()?;
                        Ok(Expr::Call(None, s, args))
                    } else {
                        Ok(Expr::Ident(s))
                    }
                }
            },
            t => Err(format!("unexpected token {t:?}")),
        }
    }
}

/// `1 'wk'`, `1.5 'mg'`, `1 week` (calendar duration words are not quoted).
fn quantity_string(v: f64, u: &str) -> String {
    let n = if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { fmt_dec(v) };
    if is_calendar_unit(u) { format!("{n} {u}") } else { format!("{n} '{u}'") }
}

fn is_calendar_unit(u: &str) -> bool {
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

fn valid_date_literal(d: &str) -> bool {
    let parts: Vec<&str> = d.split('-').collect();
    parts.len() <= 3
        && parts[0].len() == 4
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1..].iter().all(|p| p.len() == 2)
        && parts.get(1).is_none_or(|m| ("01".."13").contains(m))
}

fn valid_time_literal(t: &str) -> bool {
    let main = t.split('.').next().unwrap_or("");
    let parts: Vec<&str> = main.split(':').collect();
    !parts.is_empty() && parts.len() <= 3 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_datetime_literal(d: &str) -> bool {
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

// ---------------------------------------------------------------- values

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

type Coll<'a> = Vec<Item<'a>>;

/// Evaluation environment.
pub struct Env<'a> {
    pub model: &'a dyn Model,
    pub resource: Option<Item<'a>>,
    pub root_resource: Option<Item<'a>>,
    pub context: Option<Item<'a>>,
}

#[derive(Clone, Copy)]
struct Frame<'a, 'b> {
    this: Option<&'b Item<'a>>,
    index: usize,
    total: Option<&'b Coll<'a>>,
}

/// Error during evaluation (e.g. more than one item where one is required).
pub type EvalError = String;

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

fn node_kind(v: &Value) -> u8 {
    match v {
        Value::Object(_) => 0,
        _ => 1,
    }
}

/// The primitive (system) value of an item, or itself if it is complex.
fn prim<'a>(it: &Item<'a>) -> Item<'a> {
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

fn to_bool(it: &Item) -> Option<bool> {
    match prim(it) {
        Item::Bool(b) => Some(b),
        _ => None,
    }
}

fn single_bool(c: &Coll) -> Result<Option<bool>, EvalError> {
    match c.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(to_bool(one).unwrap_or(true))),
        _ => Err("expected a single boolean".into()),
    }
}

fn singleton<'a>(c: &Coll<'a>) -> Result<Option<Item<'a>>, EvalError> {
    match c.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(prim(one))),
        _ => Err(format!("expected a single value, got {}", c.len())),
    }
}

fn as_string(it: &Item) -> Option<String> {
    match prim(it) {
        Item::Str(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => Some(s),
        Item::Int(i) => Some(i.to_string()),
        Item::Dec(d) => Some(fmt_dec(d)),
        Item::Bool(b) => Some(b.to_string()),
        Item::Quantity(v, u) => Some(quantity_string(v, &u)),
        Item::Node(..) | Item::Type(..) => None,
    }
}

pub(crate) fn fmt_dec(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{d:.1}")
    } else {
        let s = format!("{d:.8}");
        let s = s.trim_end_matches('0');
        s.to_string()
    }
}

fn each_child<'a>(v: &'a Value, ext: Option<&'a Value>, f: &mut dyn FnMut(Option<&'a Value>, Option<&'a Value>)) {
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

fn navigate<'a>(item: &Item<'a>, name: &str, env: &Env<'a>, out: &mut Coll<'a>) {
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

fn choice_type(suffix: &str) -> &'static str {
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

fn eval<'a, 'b>(expr: &Expr, focus: &[Item<'a>], env: &Env<'a>, fr: Frame<'a, 'b>) -> Result<Coll<'a>, EvalError> {
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

fn type_name_of<'a>(it: &Item<'a>) -> (&'static str, String) {
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
fn is_type(it: &Item, ty: &str, env: &Env, exact: bool) -> bool {
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

fn binary<'a, 'b>(
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

fn arith<'a>(op: Op, a: Item<'a>, b: Item<'a>) -> Result<Option<Item<'a>>, EvalError> {
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

fn round8(x: f64) -> f64 {
    (x * 1e8).round() / 1e8
}

/// Date arithmetic on the textual form (years, months, days; hours etc. on dateTimes).
fn add_duration(d: &str, v: f64, unit: &str, sub: bool) -> Result<Option<String>, EvalError> {
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
fn add_time(d: &str, delta_ms: i64) -> Option<String> {
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

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
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
fn dt_parts(s: &str) -> (Vec<f64>, Option<i64>) {
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

fn time_parts(s: &str) -> Vec<f64> {
    s.split(':').filter_map(|p| p.parse::<f64>().ok()).collect()
}

fn compare_parts(a: &[f64], b: &[f64], sec_index: usize) -> Option<Ordering> {
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

fn normalize_tz(parts: &mut [f64], tz: Option<i64>) {
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

fn compare(a: &Item, b: &Item) -> Result<Option<Ordering>, EvalError> {
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
fn compare_decimal(x: f64, y: f64) -> Option<Ordering> {
    if (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0) { Some(Ordering::Equal) } else { x.partial_cmp(&y) }
}

/// Calendar duration words as UCUM units, except years and months, which have no fixed UCUM length.
fn calendar_to_ucum(u: &str) -> &str {
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

/// The items of `input` without repeats, in order. FHIRPath equality is no hash equality across
/// types, so in general each item is compared with those kept; a collection of plain strings (the
/// fullUrls that bdl-7 checks on a Bundle of thousands of entries) goes through a set instead.
fn distinct(input: Coll<'_>) -> Coll<'_> {
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
fn plain_str<'x>(it: &'x Item) -> Option<&'x str> {
    match it {
        Item::Str(s) => Some(s),
        Item::Node(Some(Value::String(s)), _, ty) if !matches!(*ty, "date" | "dateTime" | "instant" | "time") => {
            Some(s)
        }
        _ => None,
    }
}

fn equal(a: &Item, b: &Item) -> Option<bool> {
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

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn equivalent(a: &Item, b: &Item) -> bool {
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

fn decimals(it: &Item) -> usize {
    match it {
        Item::Dec(d) => {
            let s = fmt_dec(*d);
            s.split_once('.').map(|(_, f)| f.len()).unwrap_or(0)
        }
        _ => 0,
    }
}

fn num(it: &Item) -> Option<f64> {
    match it {
        Item::Int(i) => Some(*i as f64),
        Item::Dec(d) => Some(*d),
        _ => None,
    }
}

fn norm_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn arg<'a, 'b>(
    args: &[Expr],
    i: usize,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Coll<'a>, EvalError> {
    match args.get(i) {
        Some(a) => eval(a, focus, env, fr),
        None => Err("missing argument".into()),
    }
}

fn arg_str<'a, 'b>(
    args: &[Expr],
    i: usize,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Option<String>, EvalError> {
    Ok(singleton(&arg(args, i, focus, env, fr)?)?.and_then(|x| as_string(&x)))
}

fn arg_int<'a, 'b>(
    args: &[Expr],
    i: usize,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Option<i64>, EvalError> {
    Ok(match singleton(&arg(args, i, focus, env, fr)?)? {
        Some(Item::Int(n)) => Some(n),
        None => None,
        _ => return Err("expected an integer argument".into()),
    })
}

fn type_arg(args: &[Expr]) -> Result<String, EvalError> {
    match args.first() {
        Some(Expr::Ident(s)) => Ok(s.clone()),
        Some(Expr::Member(b, n)) => match b.as_ref() {
            Expr::Ident(s) => Ok(format!("{s}.{n}")),
            _ => Err("bad type argument".into()),
        },
        _ => Err("bad type argument".into()),
    }
}

fn str_of(it: Option<Item>) -> Option<String> {
    match it {
        Some(Item::Str(s)) => Some(s),
        Some(other) => as_string(&other),
        None => None,
    }
}

fn call<'a, 'b>(
    name: &str,
    input: Coll<'a>,
    args: &[Expr],
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Coll<'a>, EvalError> {
    let b = |v: bool| Ok(vec![Item::Bool(v)]);
    // functions that evaluate their argument per item
    match name {
        "where" | "select" | "all" | "exists" | "repeat" | "aggregate" => {
            if name == "exists" && args.is_empty() {
                return b(!input.is_empty());
            }
            let crit = args.first().ok_or("missing argument")?;
            match name {
                "where" => {
                    let mut out = Vec::new();
                    for (i, it) in input.iter().enumerate() {
                        let one = std::slice::from_ref(it);
                        let r = eval(crit, one, env, Frame { this: Some(it), index: i, total: None })?;
                        if single_bool(&r)? == Some(true) {
                            out.push(it.clone());
                        }
                    }
                    return Ok(out);
                }
                "exists" => {
                    for (i, it) in input.iter().enumerate() {
                        let one = std::slice::from_ref(it);
                        let r = eval(crit, one, env, Frame { this: Some(it), index: i, total: None })?;
                        if single_bool(&r)? == Some(true) {
                            return b(true);
                        }
                    }
                    return b(false);
                }
                "all" => {
                    for (i, it) in input.iter().enumerate() {
                        let one = std::slice::from_ref(it);
                        let r = eval(crit, one, env, Frame { this: Some(it), index: i, total: None })?;
                        if single_bool(&r)? != Some(true) {
                            return b(false);
                        }
                    }
                    return b(true);
                }
                "select" => {
                    let mut out = Vec::new();
                    for (i, it) in input.iter().enumerate() {
                        let one = std::slice::from_ref(it);
                        out.extend(eval(crit, one, env, Frame { this: Some(it), index: i, total: None })?);
                    }
                    return Ok(out);
                }
                "repeat" => {
                    let mut out: Coll = Vec::new();
                    let mut queue = input;
                    let mut guard = 0;
                    while !queue.is_empty() && guard < 10_000 {
                        guard += 1;
                        let mut next = Vec::new();
                        for (i, it) in queue.iter().enumerate() {
                            let one = std::slice::from_ref(it);
                            for r in eval(crit, one, env, Frame { this: Some(it), index: i, total: None })? {
                                if !out.iter().any(|o| same_node(o, &r)) {
                                    out.push(r.clone());
                                    next.push(r);
                                }
                            }
                        }
                        queue = next;
                    }
                    return Ok(out);
                }
                _ => {
                    // aggregate(expr, init)
                    let mut acc = match args.get(1) {
                        Some(init) => eval(init, focus, env, fr)?,
                        None => vec![],
                    };
                    for (i, it) in input.iter().enumerate() {
                        let one = std::slice::from_ref(it);
                        acc = eval(crit, one, env, Frame { this: Some(it), index: i, total: Some(&acc) })?;
                    }
                    return Ok(acc);
                }
            }
        }
        "iif" => {
            if input.len() > 1 {
                return Err("iif on a collection".into());
            }
            // The criterion and the branches are evaluated on the input, which is also `$this`.
            let frame = Frame { this: input.first(), ..fr };
            let c = eval(args.first().ok_or("missing argument")?, &input, env, frame)?;
            let cond = match c.as_slice() {
                [] => false,
                [one] => to_bool(one).ok_or("iif criterion is not a boolean")?,
                _ => return Err("iif criterion is not a single boolean".into()),
            };
            return match args.get(if cond { 1 } else { 2 }) {
                Some(e) => eval(e, &input, env, frame),
                None if cond => Err("missing argument".into()),
                None => Ok(vec![]),
            };
        }
        "ofType" => {
            let ty = type_arg(args)?;
            return Ok(input.into_iter().filter(|x| is_type(x, &ty, env, true)).collect());
        }
        "is" | "as" => {
            let ty = type_arg(args)?;
            if name == "is" {
                return match input.as_slice() {
                    [] => Ok(vec![]),
                    [one] => b(is_type(one, &ty, env, false)),
                    _ => Err("is() on a collection".into()),
                };
            }
            return Ok(input.into_iter().filter(|x| is_type(x, &ty, env, true)).collect());
        }
        "trace" => return Ok(input),
        "sort" => return sort(input, args, env),
        _ => {}
    }
    Ok(match name {
        "empty" => vec![Item::Bool(input.is_empty())],
        "not" => match single_bool(&input)? {
            Some(v) => vec![Item::Bool(!v)],
            None => vec![],
        },
        "hasValue" => vec![Item::Bool(
            input.len() == 1 && matches!(&input[0], Item::Node(Some(v), _, _) if !v.is_object() && !v.is_array()),
        )],
        "count" => vec![Item::Int(input.len() as i64)],
        "first" => input.into_iter().take(1).collect(),
        "last" => input.into_iter().last().into_iter().collect(),
        "tail" => input.into_iter().skip(1).collect(),
        "skip" => {
            let n = arg_int(args, 0, focus, env, fr)?.unwrap_or(0).max(0) as usize;
            input.into_iter().skip(n).collect()
        }
        "take" => {
            let n = arg_int(args, 0, focus, env, fr)?.unwrap_or(0).max(0) as usize;
            input.into_iter().take(n).collect()
        }
        "single" => match input.len() {
            0 | 1 => input,
            _ => return Err("single() on a collection of several items".into()),
        },
        "distinct" => distinct(input),
        "isDistinct" => {
            let n = input.len();
            vec![Item::Bool(distinct(input).len() == n)]
        }
        "allTrue" => vec![Item::Bool(input.iter().all(|x| to_bool(x) == Some(true)))],
        "anyTrue" => vec![Item::Bool(input.iter().any(|x| to_bool(x) == Some(true)))],
        "allFalse" => vec![Item::Bool(input.iter().all(|x| to_bool(x) == Some(false)))],
        "anyFalse" => vec![Item::Bool(input.iter().any(|x| to_bool(x) == Some(false)))],
        "subsetOf" | "supersetOf" => {
            let other = eval(args.first().ok_or("missing argument")?, focus, env, fr)?;
            let (small, big) = if name == "subsetOf" { (&input, &other) } else { (&other, &input) };
            vec![Item::Bool(small.iter().all(|x| big.iter().any(|y| equal(x, y) == Some(true))))]
        }
        "union" | "combine" | "intersect" | "exclude" => {
            let other = eval(args.first().ok_or("missing argument")?, focus, env, fr)?;
            match name {
                "combine" => input.into_iter().chain(other).collect(),
                "union" => {
                    let mut out: Coll = Vec::new();
                    for it in input.into_iter().chain(other) {
                        if !out.iter().any(|o| equal(o, &it) == Some(true)) {
                            out.push(it);
                        }
                    }
                    out
                }
                "intersect" => {
                    let mut out: Coll = Vec::new();
                    for it in input {
                        if other.iter().any(|o| equal(o, &it) == Some(true))
                            && !out.iter().any(|o| equal(o, &it) == Some(true))
                        {
                            out.push(it);
                        }
                    }
                    out
                }
                _ => input.into_iter().filter(|it| !other.iter().any(|o| equal(o, it) == Some(true))).collect(),
            }
        }
        "children" => {
            let mut out = Vec::new();
            for it in &input {
                children(it, env, &mut out);
            }
            out
        }
        "descendants" => {
            let mut out = Vec::new();
            let mut queue = input;
            while !queue.is_empty() {
                let mut next = Vec::new();
                for it in &queue {
                    children(it, env, &mut next);
                }
                out.extend(next.iter().cloned());
                queue = next;
            }
            out
        }
        "extension" => {
            let url = arg_str(args, 0, focus, env, fr)?.unwrap_or_default();
            let mut out = Vec::new();
            for it in &input {
                let mut exts = Vec::new();
                navigate(it, "extension", env, &mut exts);
                for e in exts {
                    if let Item::Node(Some(v), _, _) = &e
                        && v.get("url").and_then(Value::as_str) == Some(url.as_str())
                    {
                        out.push(e);
                    }
                }
            }
            out
        }
        "resolve" => {
            let mut out = Vec::new();
            let root = match env.root_resource.as_ref().or(env.resource.as_ref()) {
                Some(Item::Node(Some(v), _, _)) => Some(*v),
                _ => None,
            };
            for it in &input {
                let r = match it {
                    Item::Node(Some(v), _, _) => v.get("reference").and_then(Value::as_str).or(v.as_str()),
                    _ => None,
                };
                if let (Some(r), Some(root)) = (r, root)
                    && let Some(t) = env.model.resolve(root, r)
                {
                    let rt = t.get("resourceType").and_then(Value::as_str).unwrap_or("");
                    out.push(Item::Node(Some(t), None, rt));
                }
            }
            out
        }
        "memberOf" => {
            let vs = arg_str(args, 0, focus, env, fr)?.unwrap_or_default();
            match singleton(&input)? {
                None => vec![],
                Some(it) => {
                    let mut codes: Vec<(String, String)> = Vec::new();
                    match &it {
                        Item::Str(c) => codes.push((String::new(), c.clone())),
                        Item::Node(Some(v), _, _) => {
                            if let Some(c) = v.get("code").and_then(Value::as_str) {
                                codes.push((v.get("system").and_then(Value::as_str).unwrap_or("").into(), c.into()));
                            }
                            for c in v.get("coding").and_then(Value::as_array).into_iter().flatten() {
                                if let Some(code) = c.get("code").and_then(Value::as_str) {
                                    codes.push((
                                        c.get("system").and_then(Value::as_str).unwrap_or("").into(),
                                        code.into(),
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                    let mut known = false;
                    let mut any = false;
                    for (sys, code) in &codes {
                        if let Some(r) = env.model.member_of(sys, code, &vs) {
                            known = true;
                            any |= r;
                        }
                    }
                    if known { vec![Item::Bool(any)] } else { vec![] }
                }
            }
        }
        "conformsTo" => {
            let url = arg_str(args, 0, focus, env, fr)?.unwrap_or_default();
            match singleton(&input)? {
                Some(Item::Node(Some(v), _, _)) => env.model.conforms_to(v, &url).map(Item::Bool).into_iter().collect(),
                _ => vec![],
            }
        }
        "htmlChecks" | "htmlchecks" => vec![Item::Bool(true)],
        "getValue" => input.into_iter().map(|x| prim(&x)).filter(|x| !matches!(x, Item::Node(..))).collect(),
        "type" => input
            .iter()
            .map(|it| {
                let (ns, n) = type_name_of(it);
                Item::Type(ns, n)
            })
            .collect(),
        "toString" => singleton(&input)?.and_then(|x| as_string(&x)).map(Item::Str).into_iter().collect(),
        "toInteger" => match singleton(&input)? {
            Some(Item::Int(i)) => vec![Item::Int(i)],
            Some(Item::Bool(b)) => vec![Item::Int(b as i64)],
            Some(Item::Str(s)) => s.parse::<i64>().ok().map(Item::Int).into_iter().collect(),
            _ => vec![],
        },
        "toDecimal" => match singleton(&input)? {
            Some(Item::Int(i)) => vec![Item::Dec(i as f64)],
            Some(Item::Dec(d)) => vec![Item::Dec(d)],
            Some(Item::Bool(b)) => vec![Item::Dec(if b { 1.0 } else { 0.0 })],
            Some(Item::Str(s)) => {
                if is_decimal_str(&s) {
                    s.parse::<f64>().ok().map(Item::Dec).into_iter().collect()
                } else {
                    vec![]
                }
            }
            _ => vec![],
        },
        "toBoolean" => match singleton(&input)? {
            Some(Item::Bool(b)) => vec![Item::Bool(b)],
            Some(Item::Int(1)) => vec![Item::Bool(true)],
            Some(Item::Int(0)) => vec![Item::Bool(false)],
            Some(Item::Dec(1.0)) => vec![Item::Bool(true)],
            Some(Item::Dec(0.0)) => vec![Item::Bool(false)],
            Some(Item::Str(s)) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => vec![Item::Bool(true)],
                "false" | "f" | "no" | "n" | "0" | "0.0" => vec![Item::Bool(false)],
                _ => vec![],
            },
            _ => vec![],
        },
        "toQuantity" => match singleton(&input)? {
            Some(Item::Bool(b)) => vec![Item::Quantity(if b { 1.0 } else { 0.0 }, "1".into())],
            Some(Item::Int(i)) => vec![Item::Quantity(i as f64, "1".into())],
            Some(Item::Dec(d)) => vec![Item::Quantity(d, "1".into())],
            Some(q @ Item::Quantity(..)) => vec![q],
            Some(Item::Str(s)) => parse_quantity(&s).into_iter().collect(),
            _ => vec![],
        },
        "toDate" => match singleton(&input)? {
            Some(Item::Date(d)) => vec![Item::Date(d)],
            Some(Item::DateTime(d)) => vec![Item::Date(d.split('T').next().unwrap_or("").into())],
            Some(Item::Str(s)) if valid_date_literal(&s) => vec![Item::Date(s)],
            _ => vec![],
        },
        "toDateTime" => match singleton(&input)? {
            Some(Item::Date(d) | Item::DateTime(d)) => vec![Item::DateTime(d)],
            Some(Item::Str(s)) if valid_datetime_literal(&s) => vec![Item::DateTime(s)],
            _ => vec![],
        },
        "toTime" => match singleton(&input)? {
            Some(Item::Time(d)) => vec![Item::Time(d)],
            Some(Item::Str(s)) if valid_time_literal(&s) => vec![Item::Time(s)],
            _ => vec![],
        },
        n if n.starts_with("convertsTo") => {
            let target = &n[10..];
            let Some(_) = input.first() else { return Ok(vec![]) };
            let r = call(&format!("to{target}"), input, args, focus, env, fr)?;
            vec![Item::Bool(!r.is_empty())]
        }
        "indexOf" => {
            let sub = arg_str(args, 0, focus, env, fr)?;
            match (str_of(singleton(&input)?), sub) {
                (Some(s), Some(sub)) => {
                    vec![Item::Int(s.find(&sub).map(|p| s[..p].chars().count() as i64).unwrap_or(-1))]
                }
                _ => vec![],
            }
        }
        "substring" => {
            let Some(s) = str_of(singleton(&input)?) else { return Ok(vec![]) };
            let start = arg_int(args, 0, focus, env, fr)?;
            let len = if args.len() > 1 { arg_int(args, 1, focus, env, fr)? } else { None };
            let chars: Vec<char> = s.chars().collect();
            match start {
                Some(st) if st >= 0 && (st as usize) < chars.len() => {
                    let end = match len {
                        Some(l) => (st as usize + l.max(0) as usize).min(chars.len()),
                        None => chars.len(),
                    };
                    vec![Item::Str(chars[st as usize..end].iter().collect())]
                }
                _ => vec![],
            }
        }
        "startsWith" | "endsWith" | "contains" => {
            let sub = arg_str(args, 0, focus, env, fr)?;
            match (str_of(singleton(&input)?), sub) {
                (Some(s), Some(sub)) => vec![Item::Bool(match name {
                    "startsWith" => s.starts_with(&sub),
                    "endsWith" => s.ends_with(&sub),
                    _ => s.contains(&sub),
                })],
                _ => vec![],
            }
        }
        "upper" | "lower" | "trim" | "length" | "toChars" => match str_of(singleton(&input)?) {
            Some(s) => match name {
                "upper" => vec![Item::Str(s.to_uppercase())],
                "lower" => vec![Item::Str(s.to_lowercase())],
                "trim" => vec![Item::Str(s.trim().to_string())],
                "length" => vec![Item::Int(s.chars().count() as i64)],
                _ => s.chars().map(|c| Item::Str(c.to_string())).collect(),
            },
            None => vec![],
        },
        "replace" => {
            let (Some(s), Some(p), Some(r)) =
                (str_of(singleton(&input)?), arg_str(args, 0, focus, env, fr)?, arg_str(args, 1, focus, env, fr)?)
            else {
                return Ok(vec![]);
            };
            if p.is_empty() {
                let mut out = String::new();
                out.push_str(&r);
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&r);
                }
                vec![Item::Str(out)]
            } else {
                vec![Item::Str(s.replace(&p, &r))]
            }
        }
        "matches" | "matchesFull" | "replaceMatches" => {
            let (Some(s), Some(p)) = (str_of(singleton(&input)?), arg_str(args, 0, focus, env, fr)?) else {
                return Ok(vec![]);
            };
            if name == "replaceMatches" && p.is_empty() {
                return Ok(vec![Item::Str(s)]);
            }
            let p = if name == "matchesFull" { format!("^(?:{p})$") } else { p };
            // FHIRPath regexes run in single-line mode: `.` matches new lines.
            let re = regex::RegexBuilder::new(&p)
                .dot_matches_new_line(true)
                .build()
                .map_err(|e| format!("bad regex: {e}"))?;
            if name != "replaceMatches" {
                vec![Item::Bool(re.is_match(&s))]
            } else {
                let Some(r) = arg_str(args, 1, focus, env, fr)? else { return Ok(vec![]) };
                let r = r.replace("$", "$$").replace("$$1", "${1}");
                vec![Item::Str(re.replace_all(&s, r.as_str()).into_owned())]
            }
        }
        "split" => {
            let (Some(s), Some(sep)) = (str_of(singleton(&input)?), arg_str(args, 0, focus, env, fr)?) else {
                return Ok(vec![]);
            };
            s.split(sep.as_str()).map(|x| Item::Str(x.to_string())).collect()
        }
        "join" => {
            let sep =
                if args.is_empty() { String::new() } else { arg_str(args, 0, focus, env, fr)?.unwrap_or_default() };
            let parts: Vec<String> = input.iter().filter_map(as_string).collect();
            vec![Item::Str(parts.join(&sep))]
        }
        "abs" | "ceiling" | "floor" | "exp" | "ln" | "sqrt" | "truncate" | "round" | "log" | "power" => {
            let Some(v) = singleton(&input)? else { return Ok(vec![]) };
            if let Item::Quantity(q, u) = &v
                && name == "abs"
            {
                return Ok(vec![Item::Quantity(q.abs(), u.clone())]);
            }
            let is_int = matches!(v, Item::Int(_));
            let x = num(&v).ok_or("not a number")?;
            match name {
                "abs" => vec![if is_int { Item::Int(x.abs() as i64) } else { Item::Dec(x.abs()) }],
                "ceiling" => vec![Item::Int(x.ceil() as i64)],
                "floor" => vec![Item::Int(x.floor() as i64)],
                "truncate" => vec![Item::Int(x.trunc() as i64)],
                "exp" => vec![Item::Dec(x.exp())],
                "ln" => vec![Item::Dec(x.ln())],
                "sqrt" => {
                    if x < 0.0 {
                        vec![]
                    } else {
                        vec![Item::Dec(x.sqrt())]
                    }
                }
                "round" => {
                    let p = if args.is_empty() { 0 } else { arg_int(args, 0, focus, env, fr)?.unwrap_or(0) };
                    let f = 10f64.powi(p as i32);
                    vec![Item::Dec((x * f).round() / f)]
                }
                "log" => {
                    let Some(base) = singleton(&arg(args, 0, focus, env, fr)?)?.and_then(|b| num(&b)) else {
                        return Ok(vec![]);
                    };
                    vec![Item::Dec(x.ln() / base.ln())]
                }
                _ => {
                    let Some(e) = singleton(&arg(args, 0, focus, env, fr)?)? else { return Ok(vec![]) };
                    let r = x.powf(num(&e).unwrap_or(0.0));
                    if r.is_nan() {
                        vec![]
                    } else if is_int && matches!(e, Item::Int(_)) {
                        vec![Item::Int(r as i64)]
                    } else {
                        vec![Item::Dec(r)]
                    }
                }
            }
        }
        "now" => vec![Item::DateTime(now_string(true))],
        "today" => vec![Item::Date(now_string(false))],
        "timeOfDay" => {
            vec![Item::Time(now_string(true).split('T').nth(1).unwrap_or("00:00:00").trim_end_matches('Z').into())]
        }
        "lowBoundary" | "highBoundary" => {
            let Some(v) = singleton(&input)? else { return Ok(vec![]) };
            // a FHIR dateTime given as a date is still a dateTime: its boundaries have a time
            let v = match (&input[0], v) {
                (Item::Node(_, _, "dateTime" | "instant"), Item::Date(d)) => Item::DateTime(d),
                (_, v) => v,
            };
            let precision = if args.is_empty() { None } else { arg_int(args, 0, focus, env, fr)? };
            boundary(&v, precision, name == "highBoundary").into_iter().collect()
        }
        "precision" => match singleton(&input)? {
            Some(Item::Int(_)) => vec![Item::Int(0)],
            Some(Item::Dec(d) | Item::Quantity(d, _)) => vec![Item::Int(decimal_places(d) as i64)],
            Some(Item::Date(d) | Item::DateTime(d) | Item::Time(d)) => {
                vec![Item::Int(date_digits(&d).len() as i64)]
            }
            _ => vec![],
        },
        "comparable" => {
            let other = singleton(&arg(args, 0, focus, env, fr)?)?;
            match (singleton(&input)?, other) {
                (Some(Item::Quantity(_, u)), Some(Item::Quantity(_, w))) => vec![Item::Bool(
                    u == w
                        || crate::ucum::canonical(&u)
                            .zip(crate::ucum::canonical(&w))
                            .is_some_and(|((_, a), (_, b))| a == b),
                )],
                _ => vec![],
            }
        }
        "encode" | "decode" | "escape" | "unescape" => {
            let (Some(s), Some(format)) = (str_of(singleton(&input)?), arg_str(args, 0, focus, env, fr)?) else {
                return Ok(vec![]);
            };
            crate::fhirpath_text::transform(name, &format, &s).map(Item::Str).into_iter().collect()
        }
        "hasValueSet" | "hasTemplateIdOf" => vec![],
        _ => return Err(format!("unknown function {name}()")),
    })
}

/// `sort(keys...)`: each key is evaluated per item; a key written `-expr` sorts in descending order.
fn sort<'a>(input: Coll<'a>, args: &[Expr], env: &Env<'a>) -> Result<Coll<'a>, EvalError> {
    let mut keyed: Vec<(Vec<Option<Item<'a>>>, Item<'a>)> = Vec::with_capacity(input.len());
    for (i, it) in input.iter().enumerate() {
        let one = std::slice::from_ref(it);
        let mut keys = Vec::new();
        for a in args {
            let e = match a {
                Expr::Unary('-', e) => e.as_ref(),
                other => other,
            };
            keys.push(singleton(&eval(e, one, env, Frame { this: Some(it), index: i, total: None })?)?);
        }
        if args.is_empty() {
            keys.push(Some(prim(it)));
        }
        keyed.push((keys, it.clone()));
    }
    let descending: Vec<bool> = args.iter().map(|a| matches!(a, Expr::Unary('-', _))).collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            // empty keys sort first
            let o = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    let o = compare(x, y).ok().flatten().unwrap_or(Ordering::Equal);
                    if descending.get(i).copied().unwrap_or(false) { o.reverse() } else { o }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    Ok(keyed.into_iter().map(|(_, it)| it).collect())
}

/// Digits after the decimal point in the shortest representation of `d`.
fn decimal_places(d: f64) -> usize {
    let s = format!("{d}");
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

/// The digits of a date, dateTime or time value, without its timezone (`2014-01-05T10:30` -> `201401051030`).
fn date_digits(s: &str) -> String {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, t),
        None if s.contains(':') => ("", s),
        None => (s, ""),
    };
    let time = time.trim_end_matches('Z');
    let time = match time.rfind(['+', '-']) {
        Some(p) => &time[..p],
        None => time,
    };
    date.chars().chain(time.chars()).filter(char::is_ascii_digit).collect()
}

/// lowBoundary / highBoundary: the least or greatest value that `v`, given at its own precision, may stand
/// for, expressed at `precision` digits (decimal places for numbers, digits for dates and times).
fn boundary<'a>(v: &Item<'a>, precision: Option<i64>, high: bool) -> Option<Item<'a>> {
    match v {
        Item::Int(i) => decimal_boundary(*i as f64, 0, precision.unwrap_or(8), high).map(Item::Dec),
        Item::Dec(d) => decimal_boundary(*d, decimal_places(*d), precision.unwrap_or(8), high).map(Item::Dec),
        Item::Quantity(d, u) => {
            decimal_boundary(*d, decimal_places(*d), precision.unwrap_or(8), high).map(|b| Item::Quantity(b, u.clone()))
        }
        Item::Date(s) => {
            date_boundary(s, precision.unwrap_or(8).min(9), high, false).filter(|d| d.len() <= 10).map(Item::Date)
        }
        Item::DateTime(s) => date_boundary(s, precision.unwrap_or(17), high, false).map(Item::DateTime),
        Item::Time(s) => date_boundary(s, precision.unwrap_or(9), high, true).map(Item::Time),
        _ => None,
    }
}

/// Decimal boundaries in exact integer arithmetic: `x` has `places` decimals, so it stands for
/// `x ± 0.5 * 10^-places`; the low boundary is truncated to `out` decimals, the high one rounded.
fn decimal_boundary(x: f64, places: usize, out: i64, high: bool) -> Option<f64> {
    if !(0..=28).contains(&out) || places > 15 {
        return None;
    }
    let out = out as u32;
    let negative = x < 0.0;
    // below zero the boundaries swap: low(-x) = -high(x)
    let up = high != negative;
    let m = (x.abs() * 10f64.powi(places as i32)).round() as i128;
    let scale = places as u32 + 1;
    let b = if up { m * 10 + 5 } else { m * 10 - 5 };
    let r = if out >= scale {
        b.checked_mul(10i128.checked_pow(out - scale)?)?
    } else {
        let d = 10i128.pow(scale - out);
        if up { (b + d / 2) / d } else { b / d }
    };
    let v = r as f64 / 10f64.powi(out as i32);
    Some(if negative { -v } else { v })
}

/// Date, dateTime and time boundaries: missing components are filled with their least or greatest value,
/// then the value is written with `digits` digits. A dateTime without a timezone takes the extreme ones.
fn date_boundary(s: &str, digits: i64, high: bool, time_only: bool) -> Option<String> {
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

fn same_node(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Node(Some(x), _, _), Item::Node(Some(y), _, _)) => std::ptr::eq(*x, *y),
        _ => equal(a, b) == Some(true),
    }
}

fn is_decimal_str(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (i, f) = s.split_once('.').unwrap_or((s, "0"));
    !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())
}

fn parse_quantity<'a>(s: &str) -> Option<Item<'a>> {
    let s = s.trim();
    let (n, u) = match s.find(' ') {
        Some(p) => (&s[..p], s[p + 1..].trim()),
        None => (s, ""),
    };
    if !is_decimal_str(n) && n.parse::<i64>().is_err() {
        return None;
    }
    let v = n.parse::<f64>().ok()?;
    let u = if u.is_empty() {
        "1".to_string()
    } else if let Some(q) = u.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
        q.to_string()
    } else if is_calendar_unit(u) {
        u.to_string()
    } else {
        return None;
    };
    Some(Item::Quantity(v, u))
}

fn children<'a>(it: &Item<'a>, env: &Env<'a>, out: &mut Coll<'a>) {
    if let Item::Node(Some(Value::Object(o)), _, ty) = it {
        for (k, v) in o {
            if k == "resourceType" {
                continue;
            }
            let name = k.strip_prefix('_').unwrap_or(k);
            if k.starts_with('_') && o.contains_key(name) {
                continue;
            }
            let ext = if k.starts_with('_') { None } else { o.get(&format!("_{k}")) };
            let cty = env.model.child_type(ty, k).map(|x| x.0).unwrap_or("");
            if k.starts_with('_') {
                each_child(&Value::Null, Some(v), &mut |n, e| out.push(Item::Node(n, e, cty)));
                continue;
            }
            each_child(v, ext, &mut |n, e| {
                let rt = n.and_then(|n| n.get("resourceType")).and_then(Value::as_str).unwrap_or(cty);
                out.push(Item::Node(n, e, rt))
            });
        }
    } else if let Item::Node(None, Some(Value::Object(o)), _) = it {
        for (k, v) in o {
            let cty = if k == "extension" { "Extension" } else { "string" };
            each_child(v, None, &mut |n, e| out.push(Item::Node(n, e, cty)));
        }
    }
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

fn now_string(with_time: bool) -> String {
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

#[allow(dead_code)]
fn is_object(v: &Value) -> bool {
    node_kind(v) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoModel;
    impl Model for NoModel {
        fn child_type<'m>(&'m self, _: &str, _: &str) -> Option<(&'m str, bool)> {
            None
        }
        fn is_subtype(&self, _: &str, _: &str) -> bool {
            false
        }
        fn is_resource_type(&self, _: &str) -> bool {
            false
        }
    }

    fn run(expr: &str, v: &Value) -> Coll<'static> {
        let v: &'static Value = Box::leak(Box::new(v.clone()));
        let env = Env { model: &NoModel, resource: None, root_resource: None, context: None };
        evaluate(&parse(expr).unwrap(), vec![Item::Node(Some(v), None, "Patient")], &env).unwrap()
    }

    #[test]
    fn navigation_and_functions() {
        let p = json!({"resourceType":"Patient","name":[{"given":["a","b"]},{"family":"x"}],"active":true});
        assert_eq!(run("Patient.name.given.count()", &p).len(), 1);
        assert!(matches!(run("name.given.count()", &p)[0], Item::Int(2)));
        assert!(matches!(run("name.where(family = 'x').exists()", &p)[0], Item::Bool(true)));
        assert!(matches!(run("active and name.exists()", &p)[0], Item::Bool(true)));
        assert!(matches!(run("(1 + 2 * 3) = 7", &p)[0], Item::Bool(true)));
        assert!(matches!(run("@2012-01-01 < @2012-02-01", &p)[0], Item::Bool(true)));
        assert!(parse("name.").is_err());
    }

    #[test]
    fn distinct_keeps_first_occurrences_of_strings_and_of_other_items() {
        let p = json!({"resourceType":"Patient","name":[{"given":["a","b","a","c","b"]}]});
        let given: Vec<String> =
            run("name.given.distinct()", &p).iter().filter_map(plain_str).map(String::from).collect();
        assert_eq!(given, ["a", "b", "c"]);
        assert!(matches!(run("name.given.isDistinct()", &p)[0], Item::Bool(false)));
        assert!(matches!(run("name.given.take(2).isDistinct()", &p)[0], Item::Bool(true)));
        // Not all strings: compared by FHIRPath equality (1 = 1.0).
        assert!(matches!(run("(1).combine(1.0).combine('a').isDistinct()", &p)[0], Item::Bool(false)));
    }
}
