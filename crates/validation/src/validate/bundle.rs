//! Rules of the Bundle resource itself: paging links, fullUrls, first entry of a document or message, the
//! entries a document's sections list.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use rex_fhir::IssueCode;
use serde_json::Value;

use super::Walk;
use super::references::bundle_matches;

impl<'v> Walk<'v> {
    /// The entries of a document must include every resource its Composition's sections list.
    pub(super) fn section_entries(&mut self, bundle: &'v Value, sections: &'v Value, path_len: usize) {
        for (i, section) in sections.as_array().into_iter().flatten().enumerate() {
            let _ = write!(self.path, ".section[{i}]");
            let len = self.path.len();
            for (j, entry) in section.get("entry").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let Some(reference) = entry.get("reference").and_then(Value::as_str).filter(|r| !r.starts_with('#'))
                else {
                    continue;
                };
                let _ = write!(self.path, ".entry[{j}]");
                match bundle_matches(bundle, reference).len() {
                    0 => {
                        self.err(IssueCode::NotFound, format!("Can't find '{reference}' in the bundle (Section Entry)"))
                    }
                    1 => {}
                    n => self.err(
                        IssueCode::NotFound,
                        format!("Found {n} matches for '{reference}' in the bundle (Section Entry)"),
                    ),
                }
                self.path.truncate(len);
            }
            if let Some(sub) = section.get("section") {
                self.section_entries(bundle, sub, len);
            }
            self.path.truncate(path_len);
        }
    }

    pub(super) fn bundle_rules(&mut self, b: &'v Value) {
        let base_len = self.path.len();
        // paging links name one page each
        let mut relations = HashSet::new();
        for (i, link) in b.get("link").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(rel) = link.get("relation").and_then(Value::as_str)
                && matches!(rel, "self" | "first" | "previous" | "prev" | "next" | "last")
                && !relations.insert(rel)
            {
                let _ = write!(self.path, ".link[{i}]");
                self.err(IssueCode::Invalid, format!("The link relationship type '{rel}' can only occur once"));
                self.path.truncate(base_len);
            }
        }
        let Some(entries) = b.get("entry").and_then(Value::as_array) else { return };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let Some(full) = e.get("fullUrl").and_then(Value::as_str) else { continue };
            if !full.contains(':') {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(IssueCode::Invalid, format!("The fullUrl must be an absolute URL (not '{full}')"));
                self.path.truncate(base_len);
            }
            let version =
                e.get("resource").and_then(|r| r.get("meta")).and_then(|m| m.get("versionId")).and_then(Value::as_str);
            let key = format!("{full}|{}", version.unwrap_or(""));
            if let Some(first) = seen.insert(key, i) {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(IssueCode::Duplicate, format!("Duplicate fullUrl '{full}' (also used by entry[{first}])"));
                self.path.truncate(base_len);
            }
            if let (Some(id), Some(rt)) = (
                e.get("resource").and_then(|r| r.get("id")).and_then(Value::as_str),
                e.get("resource").and_then(|r| r.get("resourceType")).and_then(Value::as_str),
            ) && full.starts_with("http")
                && !full.ends_with(&format!("/{rt}/{id}"))
                && !full.contains("/_history/")
            {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(
                    IssueCode::Invalid,
                    format!("The fullUrl '{full}' does not match the resource id '{rt}/{id}'"),
                );
                self.path.truncate(base_len);
            }
        }
        let btype = b.get("type").and_then(Value::as_str).unwrap_or("");
        if btype == "document" || btype == "message" {
            let first_rt = entries
                .first()
                .and_then(|e| e.get("resource"))
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str);
            let want = if btype == "document" { "Composition" } else { "MessageHeader" };
            if first_rt != Some(want) {
                let _ = write!(self.path, ".entry[0]");
                self.err(IssueCode::Invalid, format!("The first entry of a {btype} Bundle must be a {want}"));
                self.path.truncate(base_len);
            } else if let Some(sections) = entries[0].get("resource").and_then(|c| c.get("section"))
                && btype == "document"
            {
                let _ = write!(self.path, ".entry[0].resource");
                let len = self.path.len();
                self.section_entries(b, sections, len);
                self.path.truncate(base_len);
            }
        }
    }
}
