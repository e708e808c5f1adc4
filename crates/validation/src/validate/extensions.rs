//! Where an extension may be used: the `context` of its definition.

use rex_fhir::{IssueCode, Rule, Severity};
use serde_json::Value;

use super::Walk;
use crate::model::{CompiledStructure, Kind};

impl<'v> Walk<'v> {
    /// The element path of the node at `path[..len]` within its resource (`Patient.name`, indexes dropped).
    pub(super) fn element_path(&self, len: usize) -> String {
        let start = self.resource_starts.last().copied().unwrap_or(0).min(len);
        let rt = self.resources.last().and_then(|r| r.get("resourceType")).and_then(Value::as_str).unwrap_or("");
        let mut out = rt.to_string();
        let mut depth = 0;
        for ch in self.path[start..len].chars() {
            match ch {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(ch),
                _ => {}
            }
        }
        out
    }

    /// An extension is used where its definition's `context` allows it. `extension_path` is the path of the
    /// `extension` element in the structure that holds it (`HumanName.extension`), `holder_ty` the datatype of
    /// the element that holds it (`string` for `Condition.code.coding.display`).
    pub(super) fn extension_context(
        &mut self,
        ext: &CompiledStructure,
        extension_path: &str,
        holder_ty: &str,
        base_len: usize,
    ) {
        let Some(contexts) = &ext.contexts else { return };
        let here = self.element_path(base_len);
        let holder_type = extension_path.strip_suffix(".extension").unwrap_or(extension_path);
        let allowed = contexts.iter().any(|e| {
            let e = e.as_str();
            e == "Element"
                || e == "Base"
                || e == here
                || e == holder_type
                || self.v.is_subtype_name(holder_type, e)
                // a datatype context allows every element of that type, wherever it is
                || e == holder_ty
                || self.v.is_subtype_name(holder_ty, e)
                // R5 interfaces used by the extensions pack: a canonical resource is one with a `url`
                || (e == "CanonicalResource" || e == "MetadataResource")
                    && self.v.core_type(holder_type).is_some_and(|t| {
                        t.kind == Kind::Resource && t.by_path.contains_key(format!("{holder_type}.url").as_str())
                    })
                || e.strip_suffix("[x]").is_some_and(|p| here.starts_with(p))
                // a path inside a datatype (`HumanName.family`) where the element is named from its resource
                // (`Patient.name.family`)
                || e.split_once('.').is_some_and(|(ty, rest)| {
                    self.v.core_type(ty).is_some_and(|t| t.kind != Kind::Resource) && here.ends_with(&format!(".{rest}"))
                })
        });
        if !allowed {
            self.report_rule(
                Severity::Error,
                IssueCode::Structure,
                format!(
                    "The extension {} is not allowed to be used at this point (this element is {here}; allowed: {})",
                    ext.url,
                    contexts.join(", ")
                ),
                Rule::Extension { url: ext.url.clone() },
            );
        }
    }
}
