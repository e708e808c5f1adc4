//! The FHIRPath functions (`where`, `exists`, `substring`, `lowBoundary`...): one `match` on the name in [`call`].

use std::cmp::Ordering;

use serde_json::Value;

use super::calendar::{
    date_boundary, is_calendar_unit, now_string, valid_date_literal, valid_datetime_literal, valid_time_literal,
};
use super::eval::{
    Coll, Env, Frame, Item, as_string, compare, distinct, each_child, equal, eval, is_type, navigate, num, prim,
    single_bool, singleton, to_bool, type_name_of,
};
use super::{EvalError, Expr};

pub(super) fn arg<'a, 'b>(
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

pub(super) fn arg_str<'a, 'b>(
    args: &[Expr],
    i: usize,
    focus: &[Item<'a>],
    env: &Env<'a>,
    fr: Frame<'a, 'b>,
) -> Result<Option<String>, EvalError> {
    Ok(singleton(&arg(args, i, focus, env, fr)?)?.and_then(|x| as_string(&x)))
}

pub(super) fn arg_int<'a, 'b>(
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

pub(super) fn type_arg(args: &[Expr]) -> Result<String, EvalError> {
    match args.first() {
        Some(Expr::Ident(s)) => Ok(s.clone()),
        Some(Expr::Member(b, n)) => match b.as_ref() {
            Expr::Ident(s) => Ok(format!("{s}.{n}")),
            _ => Err("bad type argument".into()),
        },
        _ => Err("bad type argument".into()),
    }
}

pub(super) fn str_of(it: Option<Item>) -> Option<String> {
    match it {
        Some(Item::Str(s)) => Some(s),
        Some(other) => as_string(&other),
        None => None,
    }
}

pub(super) fn call<'a, 'b>(
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
            super::text::transform(name, &format, &s).map(Item::Str).into_iter().collect()
        }
        "hasValueSet" | "hasTemplateIdOf" => vec![],
        _ => return Err(format!("unknown function {name}()")),
    })
}

/// `sort(keys...)`: each key is evaluated per item; a key written `-expr` sorts in descending order.
pub(super) fn sort<'a>(input: Coll<'a>, args: &[Expr], env: &Env<'a>) -> Result<Coll<'a>, EvalError> {
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
pub(super) fn decimal_places(d: f64) -> usize {
    let s = format!("{d}");
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

/// The digits of a date, dateTime or time value, without its timezone (`2014-01-05T10:30` -> `201401051030`).
pub(super) fn date_digits(s: &str) -> String {
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
pub(super) fn boundary<'a>(v: &Item<'a>, precision: Option<i64>, high: bool) -> Option<Item<'a>> {
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
pub(super) fn decimal_boundary(x: f64, places: usize, out: i64, high: bool) -> Option<f64> {
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

pub(super) fn same_node(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Node(Some(x), _, _), Item::Node(Some(y), _, _)) => std::ptr::eq(*x, *y),
        _ => equal(a, b) == Some(true),
    }
}

pub(super) fn is_decimal_str(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (i, f) = s.split_once('.').unwrap_or((s, "0"));
    !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse_quantity<'a>(s: &str) -> Option<Item<'a>> {
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

pub(super) fn children<'a>(it: &Item<'a>, env: &Env<'a>, out: &mut Coll<'a>) {
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
