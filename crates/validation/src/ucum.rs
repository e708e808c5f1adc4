//! A small subset of UCUM, enough to compare quantities whose units differ by a metric prefix or are common
//! customary units (`km` and `m`, `[mi_i]` and `m`, `mg/dL` and `g/L`). Units outside the subset are reported
//! as not convertible, never guessed.

/// Metric prefixes, two-letter `da` first so that it wins over `d`.
const PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("Y", 1e24),
    ("Z", 1e21),
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
    ("a", 1e-18),
];

/// Metric atoms (they take prefixes): (code, factor, base unit).
const METRIC: &[(&str, f64, &str)] = &[
    ("m", 1.0, "m"),
    ("g", 1.0, "g"),
    ("s", 1.0, "s"),
    ("L", 1.0, "L"),
    ("l", 1.0, "L"),
    ("mol", 1.0, "mol"),
    ("eq", 1.0, "eq"),
    ("U", 1.0, "U"),
    ("Pa", 1.0, "Pa"),
];

/// Units that take no prefix: (code, factor, base unit).
const OTHER: &[(&str, f64, &str)] = &[
    ("1", 1.0, "1"),
    ("%", 0.01, "1"),
    ("min", 60.0, "s"),
    ("h", 3600.0, "s"),
    ("d", 86_400.0, "s"),
    ("wk", 604_800.0, "s"),
    ("mo", 2_629_800.0, "s"),
    ("a", 31_557_600.0, "s"),
    ("[in_i]", 0.0254, "m"),
    ("[ft_i]", 0.3048, "m"),
    ("[yd_i]", 0.9144, "m"),
    ("[mi_i]", 1609.344, "m"),
    ("[lb_av]", 453.592_37, "g"),
    ("[oz_av]", 28.349_523_125, "g"),
];

/// The factor that converts a value in `code` to base units, and the base units as a normalized text
/// (`mg/dL` -> `L-1.g`, `cm.m` -> `m2`). Terms are joined by `.` or `/` and may carry an integer exponent
/// (`m2`, `s-1`). `None` when a term is outside the supported subset.
pub(crate) fn canonical(code: &str) -> Option<(f64, String)> {
    let mut factor = 1.0;
    let mut dims: std::collections::BTreeMap<&'static str, i32> = std::collections::BTreeMap::new();
    let mut sign = 1;
    let mut rest = code;
    while !rest.is_empty() {
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        let term = &rest[..end];
        // `m2`, `s-1`: the exponent is the trailing integer of a term that does not end with `]`
        let split = term.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').len();
        let (atom, exp) = match &term[split..] {
            "" => (term, 1),
            e if split > 0 => (&term[..split], e.parse::<i32>().ok()?),
            _ => (term, 1),
        };
        let (f, d) = simple(atom)?;
        factor *= f.powi(sign * exp);
        if d != "1" {
            *dims.entry(d).or_insert(0) += sign * exp;
        }
        sign = if rest[end..].starts_with('/') { -1 } else { 1 };
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let text: Vec<String> = dims
        .into_iter()
        .filter(|(_, e)| *e != 0)
        .map(|(d, e)| if e == 1 { d.to_string() } else { format!("{d}{e}") })
        .collect();
    Some((factor, text.join(".")))
}

fn simple(code: &str) -> Option<(f64, &'static str)> {
    // Plain atoms first: `min`, `d` and `a` are units, not prefixes.
    if let Some(&(_, f, d)) = OTHER.iter().chain(METRIC).find(|(c, _, _)| *c == code) {
        return Some((f, d));
    }
    PREFIXES.iter().find_map(|(p, pf)| {
        let rest = code.strip_prefix(p)?;
        METRIC.iter().find(|(c, _, _)| *c == rest).map(|&(_, f, d)| (pf * f, d))
    })
}

/// Compares two quantities given as (value, UCUM code). `None` when the units cannot be converted into
/// each other.
pub(crate) fn compare(a: (f64, &str), b: (f64, &str)) -> Option<std::cmp::Ordering> {
    if a.1 == b.1 {
        return a.0.partial_cmp(&b.0);
    }
    let (fa, da) = canonical(a.1)?;
    let (fb, db) = canonical(b.1)?;
    if da != db {
        return None;
    }
    let (x, y) = (a.0 * fa, b.0 * fb);
    // conversion factors are binary floating point: equal to 12 significant digits is equal
    if (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) { Some(std::cmp::Ordering::Equal) } else { x.partial_cmp(&y) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn conversions() {
        assert_eq!(compare((10_000.0, "m"), (50.0, "km")), Some(Ordering::Less));
        assert_eq!(compare((10_000.0, "m"), (5.0, "km")), Some(Ordering::Greater));
        assert_eq!(compare((1.0, "[mi_i]"), (1.6, "km")), Some(Ordering::Greater));
        assert_eq!(compare((100.0, "mg/dL"), (1.0, "g/L")), Some(Ordering::Equal));
        assert_eq!(compare((1.0, "min"), (60.0, "s")), Some(Ordering::Equal));
        assert_eq!(compare((1.0, "kg"), (1.0, "[mi_i]")), None);
        assert_eq!(compare((1.0, "kg"), (1.0, "furlong")), None);
        assert_eq!(compare((4.0, "cm.m"), (0.04, "m2")), Some(Ordering::Equal));
        assert_eq!(compare((2.0, "g/m"), (2.0, "g.m-1")), Some(Ordering::Equal));
    }
}
