//! A FHIRPath (N1, as used by FHIR R4) evaluator over `serde_json::Value`, written for validation:
//! expressions are parsed once (at definition load) and evaluated without copying the JSON.
//!
//! Type information (for `is`, `as`, `ofType`, choice elements) comes from a [`Model`], which the
//! validator implements from its compiled StructureDefinitions.
//!
//! `lex` (text to tokens) and `parse` (tokens to an [`Expr`]) run once per expression; `eval` (items,
//! navigation, operators, equality and comparison), `functions` (the function library, one `match`
//! in `call`), `calendar` (date and time literals, arithmetic, boundaries) and `text` (`encode`,
//! `escape` and their inverses) evaluate it.

mod calendar;
mod eval;
mod functions;
mod lex;
mod parse;
mod text;

pub(crate) use calendar::{days_in_month, today_offset};
pub(crate) use eval::choice_type_pub;
pub use eval::{Env, Item, Model, Ty, check, evaluate};
pub use parse::parse;

/// Error during evaluation (e.g. more than one item where one is required).
pub type EvalError = String;

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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::eval::{Coll, plain_str};
    use super::*;

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
