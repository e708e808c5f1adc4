//! The FHIRPath parser: tokens to an [`Expr`], by precedence climbing.

use super::calendar::{is_calendar_unit, valid_date_literal, valid_datetime_literal, valid_time_literal};
use super::lex::{Tok, lex};
use super::{Expr, Op};

pub(super) struct Parser {
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

pub(super) fn binop(t: &Tok) -> Option<(Op, u8)> {
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
