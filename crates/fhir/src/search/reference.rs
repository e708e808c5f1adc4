//! Literal references as search sees them: the resource type and id they name.

/// Splits a literal reference into resource type and id: `Patient/1`, `Patient/1/_history/2`, or an
/// absolute URL ending in `Patient/1`. Contained (`#x`) and `urn:uuid:` references have neither.
/// Search matches `Patient/1` against what this returns, so a reference it splits points at the
/// server's `Patient/1` as far as searches are concerned (the write executor checks such targets).
pub fn split_reference(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split_once("/_history/").map_or(reference, |(path, _)| path);
    let mut segments = path.rsplit('/');
    let (id, resource_type) = (segments.next()?, segments.next()?);
    let absolute = reference.contains("://");
    if !absolute && segments.next().is_some() {
        return None;
    }
    let is_type = resource_type.starts_with(|c: char| c.is_ascii_uppercase())
        && resource_type.chars().all(|c| c.is_ascii_alphanumeric());
    let is_id = (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (is_type && is_id).then_some((resource_type, id))
}

/// The resource type a reference points to, if it says.
pub(super) fn reference_type(reference: &str) -> Option<&str> {
    split_reference(reference).map(|(resource_type, _)| resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("Patient/123"), Some(("Patient", "123")));
        assert_eq!(split_reference("Patient/123/_history/2"), Some(("Patient", "123")));
        assert_eq!(split_reference("https://example.org/fhir/Patient/a.b-1"), Some(("Patient", "a.b-1")));
        assert_eq!(split_reference("https://example.org/fhir/Patient/1/_history/2"), Some(("Patient", "1")));
        assert_eq!(split_reference("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"), None);
        assert_eq!(split_reference("#contained"), None);
        assert_eq!(split_reference("123"), None);
        assert_eq!(split_reference("a/Patient/1"), None);
        assert_eq!(split_reference("patient/1"), None);
    }
}
