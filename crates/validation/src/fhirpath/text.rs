//! The FHIRPath string functions `encode`, `decode`, `escape` and `unescape`.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Applies `function` (`encode`, `decode`, `escape`, `unescape`) with `format` to `s`. `None` when the
/// format is unknown or the input cannot be decoded.
pub(crate) fn transform(function: &str, format: &str, s: &str) -> Option<String> {
    match (function, format) {
        ("encode", "base64") => Some(base64_encode(s.as_bytes(), BASE64)),
        ("encode", "urlbase64") => Some(base64_encode(s.as_bytes(), BASE64_URL)),
        ("encode", "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        ("decode", "base64") => String::from_utf8(base64_decode(s, BASE64)?).ok(),
        ("decode", "urlbase64") => String::from_utf8(base64_decode(s, BASE64_URL)?).ok(),
        ("decode", "hex") => {
            let bytes: Option<Vec<u8>> =
                (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
            String::from_utf8(bytes?).ok()
        }
        ("escape", "html") => Some(
            s.chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&#39;".to_string(),
                    c => c.to_string(),
                })
                .collect(),
        ),
        ("escape", "json") => {
            let quoted = serde_json::to_string(s).ok()?;
            Some(quoted[1..quoted.len() - 1].to_string())
        }
        ("unescape", "html") => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        ("unescape", "json") => json_unescape(s),
        _ => None,
    }
}

/// Resolves JSON string escapes (`\"`, `\\`, `\n`, `\u00e9`...); other characters are kept as they are.
fn json_unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn base64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str, alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    let data = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in data {
        let v = alphabet.iter().position(|a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::transform;

    #[test]
    fn encodings() {
        assert_eq!(transform("encode", "base64", "test").as_deref(), Some("dGVzdA=="));
        assert_eq!(transform("encode", "urlbase64", "subjects?_d").as_deref(), Some("c3ViamVjdHM_X2Q="));
        assert_eq!(transform("decode", "base64", "c3ViamVjdHM/X2Q=").as_deref(), Some("subjects?_d"));
        assert_eq!(transform("decode", "hex", "74657374").as_deref(), Some("test"));
        assert_eq!(transform("escape", "json", "\"1<2\"").as_deref(), Some("\\\"1<2\\\""));
        assert_eq!(transform("unescape", "html", "&quot;1&lt;2&quot;").as_deref(), Some("\"1<2\""));
    }
}
