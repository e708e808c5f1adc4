//! `Accept-Language` (RFC 9110 §12.5.4): the language rex writes in for a request.

use crate::Lang;

/// The most preferred language of an `Accept-Language` value that rex writes, if any: ranges in
/// order of their `q` (ties keep the client's order), `q=0` meaning "not this one", `*` saying
/// nothing (the partner's configured language then decides).
pub fn negotiate(accept_language: &str) -> Option<Lang> {
    let mut ranges: Vec<(u16, &str)> = accept_language
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let range = parts.next()?.trim();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .map(quality)
                .next()
                .unwrap_or(Some(1000))?;
            (weight > 0 && !range.is_empty() && range != "*").then_some((weight, range))
        })
        .collect();
    ranges.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    ranges.into_iter().find_map(|(_, range)| Lang::from_tag(range))
}

/// A `q` value in thousandths; `None` when malformed (the range is then ignored).
fn quality(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0).contains(&value).then(|| (value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_variants_and_scripts_map_to_rex_languages() {
        assert_eq!(negotiate("es-MX"), Some(Lang::Es));
        assert_eq!(negotiate("zh-CN"), Some(Lang::Zh));
        assert_eq!(negotiate("zh-Hans"), Some(Lang::Zh));
        assert_eq!(negotiate("zh"), Some(Lang::Zh));
        assert_eq!(negotiate("ar-AE"), Some(Lang::Ar));
        assert_eq!(negotiate("fr-CA"), Some(Lang::Fr));
        assert_eq!(negotiate("en-GB"), Some(Lang::En));
        assert_eq!(negotiate("zh-TW"), None, "Traditional Chinese is not offered");
        assert_eq!(negotiate("zh-Hant-HK"), None);
    }

    #[test]
    fn quality_values_order_the_choices() {
        assert_eq!(negotiate("de, fr;q=0.5, es;q=0.8"), Some(Lang::Es));
        assert_eq!(negotiate("ar;q=0, fr;q=0.1"), Some(Lang::Fr));
        assert_eq!(negotiate("fr;q=0.5, es;q=0.5"), Some(Lang::Fr), "ties keep the client's order");
        assert_eq!(negotiate("es;q=abc, ar"), Some(Lang::Ar));
        assert_eq!(negotiate("de, *;q=0.5"), None);
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("x-klingon"), None);
    }
}
