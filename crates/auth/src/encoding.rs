//! Small encoding helpers shared by the JOSE and TLS code: strict base64url (no padding, canonical
//! trailing bits, as RFC 7515 requires) and lowercase hex.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as base64url without padding.
pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding. Padding, the standard alphabet's `+` and `/`, whitespace and
/// non-canonical trailing bits are all refused.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Lowercase hex of bytes.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// Decodes hex (either case). Returns `None` on odd length or a non-hex character.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// Normalises a SHA-256 certificate fingerprint written as hex, with or without `:` separators, in
/// either case, to 64 lowercase hex digits. Returns `None` if it is not 32 bytes of hex.
pub fn normalize_sha256_fingerprint(text: &str) -> Option<String> {
    let compact: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex_decode(&compact)?;
    (bytes.len() == 32).then(|| hex_lower(&bytes))
}

/// Shortens an attacker-controlled value before it goes into an error message or a log line:
/// at most 40 characters, control characters replaced.
pub(crate) fn shorten(value: &str) -> String {
    let mut out: String = value.chars().take(40).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if value.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert!(b64url_decode("-_8=").is_none(), "padding refused");
        assert!(b64url_decode("+/8").is_none(), "standard alphabet refused");
        assert!(b64url_decode("-_9").is_none(), "non-canonical trailing bits refused");
        assert!(b64url_decode("ab cd").is_none());
    }

    #[test]
    fn hex_round_trip_and_fingerprints() {
        assert_eq!(hex_lower(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(hex_decode("00AB7f").unwrap(), vec![0, 0xab, 0x7f]);
        assert!(hex_decode("abc").is_none());
        assert!(hex_decode("zz").is_none());
        let colons = (0..32).map(|i| format!("{i:02X}")).collect::<Vec<_>>().join(":");
        let expected = (0..32).map(|i| format!("{i:02x}")).collect::<String>();
        assert_eq!(normalize_sha256_fingerprint(&colons).unwrap(), expected);
        assert!(normalize_sha256_fingerprint("abcd").is_none());
    }

    #[test]
    fn shorten_truncates_and_strips_controls() {
        assert_eq!(shorten("a\nb"), "a\u{fffd}b");
        assert_eq!(shorten(&"x".repeat(100)).chars().count(), 41);
    }
}
