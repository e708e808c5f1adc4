//! The FHIRPath lexer: source text to tokens.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Delimited(String),
    Str(String),
    Num(String),
    Date(String),
    Var(String),
    Sym(&'static str),
    End,
}

pub(super) fn lex(src: &str) -> Result<Vec<Tok>, String> {
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

pub(super) fn read_quoted(s: &str, q: char) -> Result<(String, usize), String> {
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
