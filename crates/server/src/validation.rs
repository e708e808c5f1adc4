//! Profile validation on the request path: the validator is CPU-bound, so it runs on the blocking
//! thread pool and never stalls the async runtime, even for large Bundles.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use rex_fhir::Issue;
use rex_validation::{Definitions, Options, UnknownProfiles, Validator};
use serde_json::Value;

use crate::error::ApiError;

/// Canonical URL of one of rex's own StructureDefinitions.
pub fn rex_profile(name: &str) -> String {
    format!("https://rex.example/fhir/StructureDefinition/{name}")
}

/// Profiles that apply to one partner's submissions: the StructureDefinitions in
/// `profiles/partners/{partner-id}/`, by the resource type they constrain.
#[derive(Debug, Clone, Default)]
pub struct PartnerProfiles {
    by_partner: std::collections::HashMap<String, Vec<(String, String)>>,
}

impl PartnerProfiles {
    /// Reads `profiles_dir/partners/*/StructureDefinition-*.json`.
    pub fn load(profiles_dir: &Path) -> Result<PartnerProfiles, String> {
        let mut by_partner = std::collections::HashMap::new();
        let Ok(partners) = std::fs::read_dir(profiles_dir.join("partners")) else {
            return Ok(PartnerProfiles::default());
        };
        for folder in partners.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()) {
            let partner = folder.file_name().unwrap_or_default().to_string_lossy().to_string();
            let mut profiles = Vec::new();
            for file in
                std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?.filter_map(Result::ok)
            {
                let path = file.path();
                if path.extension().is_none_or(|x| x != "json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let definition: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                if let ("StructureDefinition", Some(resource_type), Some(url)) = (
                    definition["resourceType"].as_str().unwrap_or_default(),
                    definition["type"].as_str(),
                    definition["url"].as_str(),
                ) {
                    profiles.push((resource_type.to_string(), url.to_string()));
                }
            }
            profiles.sort();
            by_partner.insert(partner, profiles);
        }
        Ok(PartnerProfiles { by_partner })
    }

    /// Adds the profiles a partner's security configuration lists (`profiles = [...]`): each must
    /// be known to `validator`, and applies to that partner's resources of the type it constrains.
    pub fn add_configured(&mut self, partner: &str, urls: &[String], validator: &Validator) -> Result<(), String> {
        let profiles = self.by_partner.entry(partner.to_string()).or_default();
        for url in urls {
            let resource_type = validator.profile_type(url).ok_or_else(|| {
                format!(
                    "partner \"{partner}\": profile {url} is not loaded (put it in the profiles folder or a --package)"
                )
            })?;
            profiles.push((resource_type.to_string(), url.clone()));
        }
        profiles.sort();
        profiles.dedup();
        Ok(())
    }

    /// The profile URLs a partner's resources of `resource_type` must also meet.
    pub fn for_resource(&self, partner: &str, resource_type: &str) -> impl Iterator<Item = &str> {
        self.by_partner
            .get(partner)
            .into_iter()
            .flatten()
            .filter(move |(t, _)| t == resource_type)
            .map(|(_, url)| url.as_str())
    }
}

/// Builds the validator: the R4 core package and IPS 2.0.0 (both embedded), every conformance
/// resource in `profiles_dir` (and its `partners/*` folders), and any extra packages (folder or `.tgz`).
pub fn load_validator(profiles_dir: &Path, packages: &[&Path]) -> Result<Validator, String> {
    let mut definitions = Definitions::r4_core().map_err(|e| e.to_string())?;
    definitions.add_ips().map_err(|e| e.to_string())?;
    let mut folders = vec![profiles_dir.to_path_buf()];
    if let Ok(partners) = std::fs::read_dir(profiles_dir.join("partners")) {
        let mut partner_folders: Vec<_> =
            partners.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        partner_folders.sort();
        folders.extend(partner_folders);
    }
    for folder in &folders {
        definitions.add_folder(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    finish_validator(definitions, packages)
}

/// The validator of [`load_validator`] from conformance resources given as (name, JSON text)
/// pairs, such as the `profiles/` folder embedded in the `rex` binary.
pub fn load_validator_from(resources: &[(&str, &str)], packages: &[&Path]) -> Result<Validator, String> {
    let mut definitions = Definitions::r4_core().map_err(|e| e.to_string())?;
    for (name, text) in resources {
        let resource: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        definitions.add_resource(resource);
    }
    finish_validator(definitions, packages)
}

fn finish_validator(mut definitions: Definitions, packages: &[&Path]) -> Result<Validator, String> {
    for package in packages {
        definitions.add_package(package).map_err(|e| format!("{}: {e}", package.display()))?;
    }
    // rex's own profiles and IPS are loaded whole: a claim of one that is not there is a mistake.
    let complete_namespaces = vec![rex_profile(""), "http://hl7.org/fhir/uv/ips/StructureDefinition/".to_string()];
    let options = Options { complete_namespaces, ..Options::default() };
    let validator = Validator::with_options(definitions, options);
    for message in validator.load_messages() {
        tracing::warn!(%message, "profile definitions");
    }
    Ok(validator)
}

/// The validator with the policy for one caller's unknown profile claims (`App::checker`).
#[derive(Clone)]
pub struct Checker {
    pub validator: Arc<Validator>,
    pub unknown_profiles: UnknownProfiles,
}

/// Validates `resource` against its base definition, its `meta.profile` and `profiles`, off the
/// async runtime. Returns the resource back with every issue found.
pub async fn validate(
    checker: &Checker,
    resource: Value,
    profiles: Vec<String>,
) -> Result<(Value, Vec<Issue>), ApiError> {
    let Checker { validator, unknown_profiles } = checker.clone();
    let slot = crate::http::large_body_slot();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let profiles: Vec<&str> = profiles.iter().map(String::as_str).collect();
        let issues = validator.validate_with(&resource, &profiles, unknown_profiles);
        (resource, issues)
    })
    .await
    .map_err(|_| ApiError::internal())
}

/// Validates a resource about to be written: any error refuses it with 422 and every issue.
pub async fn require_valid(checker: &Checker, resource: Value, profiles: Vec<String>) -> Result<Value, ApiError> {
    let (resource, issues) = validate(checker, resource, profiles).await?;
    if issues.iter().any(Issue::is_error) {
        crate::operations::record_refused_issues(&issues);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues));
    }
    Ok(resource)
}

/// Validates a Bundle before it is processed: structure first (400, as for single resources), then
/// the Bundle against `profiles` and chosen entries against their own profiles (422). Entry issues
/// are located inside the Bundle (`Bundle.entry[2].resource.identifier`); duplicates are dropped.
/// Returns the warnings about profiles claimed but not known, for the answer and the scorecard.
pub async fn require_valid_bundle(
    checker: &Checker,
    bundle: Arc<Value>,
    profiles: Vec<String>,
    entry_profiles: Vec<(usize, String)>,
) -> Result<Vec<Issue>, ApiError> {
    let Checker { validator, unknown_profiles } = checker.clone();
    let slot = crate::http::large_body_slot();
    let issues = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // The structural check walks the whole Bundle: here, off the async workers, too.
        let structure = rex_fhir::structure::StructureModel::r4().check(&bundle);
        if structure.iter().any(Issue::is_error) {
            crate::operations::record_refused_issues(&structure);
            return Err(ApiError::new(StatusCode::BAD_REQUEST, structure));
        }
        let profiles: Vec<&str> = profiles.iter().map(String::as_str).collect();
        let mut issues = validator.validate_with(&bundle, &profiles, unknown_profiles);
        for (index, profile) in &entry_profiles {
            let location = format!("Bundle.entry[{index}].resource");
            for issue in validator.validate_with(&bundle["entry"][*index]["resource"], &[profile], unknown_profiles) {
                let issue = issue.within(&location);
                if !issues.contains(&issue) {
                    issues.push(issue);
                }
            }
        }
        Ok(issues)
    })
    .await
    .map_err(|_| ApiError::internal())??;
    if issues.iter().any(Issue::is_error) {
        crate::operations::record_refused_issues(&issues);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues));
    }
    Ok(issues.into_iter().filter(|issue| rex_validation::unknown_profile_claim(issue).is_some()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_partner_profiles_apply_to_the_type_they_constrain() {
        let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
        let validator = load_validator(&profiles, &[]).unwrap();
        let mut partner_profiles = PartnerProfiles::default();
        let patient = "https://rex.example/fhir/StructureDefinition/rex-international-patient".to_string();
        partner_profiles.add_configured("gulf", std::slice::from_ref(&patient), &validator).unwrap();
        assert_eq!(partner_profiles.for_resource("gulf", "Patient").collect::<Vec<_>>(), vec![patient.as_str()]);
        assert_eq!(partner_profiles.for_resource("gulf", "Observation").count(), 0);
        let unknown = ["https://example.org/StructureDefinition/nope".to_string()];
        assert!(partner_profiles.add_configured("gulf", &unknown, &validator).unwrap_err().contains("not loaded"));
    }
}
