//! `rex profiles doc`: the profile reference (`docs/profiles.md`), generated from rex's conformance
//! resources in `profiles/` so that it cannot say something the profiles do not. Each profile's
//! differential becomes a table of its constrained elements and invariants; the extensions, value
//! sets, code systems and search parameters follow; each profile names a resource of
//! `fixtures/valid/` that conforms to it, where there is one.
//!
//! Rendering is pure (JSON in, Markdown out); only [`run`] reads files and asks the validator
//! which fixture resources conform.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

/// `rex profiles ...`.
#[derive(clap::Args)]
pub struct ProfilesArgs {
    #[command(subcommand)]
    command: ProfilesCommand,
}

#[derive(clap::Subcommand)]
enum ProfilesCommand {
    /// Print the Markdown profile reference generated from the profiles folder (docs/profiles.md).
    Doc(DocArgs),
}

#[derive(clap::Args)]
struct DocArgs {
    /// Folder of rex's conformance resources (partner folders under partners/ included).
    #[arg(long, default_value = "profiles")]
    profiles: PathBuf,
    /// Folder of valid referral Bundles to take each profile's example from.
    #[arg(long, default_value = "fixtures/valid")]
    fixtures: PathBuf,
    /// Instead of printing, compare FILE with what would be generated; exit 1 when it differs.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

/// A JSON file: its path as the reference shows it, and its content.
pub struct Source {
    pub path: String,
    pub json: Value,
}

/// Exit 0 after printing (or when `--check` finds the file current), 1 when `--check` finds it
/// stale, 2 when the profiles or fixtures cannot be read.
pub fn run(args: ProfilesArgs) -> ExitCode {
    let ProfilesCommand::Doc(args) = args.command;
    let markdown = match generate_from_folders(&args.profiles, &args.fixtures) {
        Ok(markdown) => markdown,
        Err(message) => {
            eprintln!("rex: {message}");
            return ExitCode::from(2);
        }
    };
    let Some(file) = args.check else {
        print!("{markdown}");
        return ExitCode::SUCCESS;
    };
    if std::fs::read_to_string(&file).is_ok_and(|current| current == markdown) {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "rex: {} is not what `rex profiles doc` generates from {}; regenerate it with \
         `rex profiles doc --profiles {} --fixtures {} > {}`",
        file.display(),
        args.profiles.display(),
        args.profiles.display(),
        args.fixtures.display(),
        file.display()
    );
    ExitCode::from(1)
}

fn generate_from_folders(profiles: &Path, fixtures: &Path) -> Result<String, String> {
    let mut resources = read_folder(profiles)?;
    let partners = profiles.join("partners");
    if partners.is_dir() {
        for folder in sorted_entries(&partners)?.into_iter().filter(|path| path.is_dir()) {
            resources.extend(read_folder(&folder)?);
        }
    }
    let fixtures = read_folder(fixtures)?;
    let validator = rex_server::validation::load_validator(profiles, &[])?;
    let conforms = |resource: &Value, profile: &str| {
        !validator.validate(resource, &[profile]).iter().any(rex_fhir::Issue::is_error)
    };
    Ok(generate(&resources, &fixtures, &conforms))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    Ok(paths)
}

/// The `*.json` files directly in `dir`, sorted by name.
fn read_folder(dir: &Path) -> Result<Vec<Source>, String> {
    let mut sources = Vec::new();
    for path in sorted_entries(dir)? {
        if path.extension().is_none_or(|ext| ext != "json") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let json = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        // Forward slashes, so the reference reads the same whichever system generated it.
        sources.push(Source { path: path.display().to_string().replace('\\', "/"), json });
    }
    Ok(sources)
}

/// The whole reference. `resources` are the conformance resources (any order; they are sorted
/// here), `fixtures` the example Bundles in the order to search them, and `conforms(resource,
/// profile URL)` says whether a fixture resource meets a profile.
pub fn generate(resources: &[Source], fixtures: &[Source], conforms: &dyn Fn(&Value, &str) -> bool) -> String {
    let of_type = |resource_type: &str| {
        let mut list: Vec<&Source> = resources.iter().filter(|s| s.json["resourceType"] == resource_type).collect();
        list.sort_by(|a, b| text(&a.json, "id").cmp(text(&b.json, "id")).then(a.path.cmp(&b.path)));
        list
    };
    let definitions = of_type("StructureDefinition");
    let (extensions, profiles): (Vec<&Source>, Vec<&Source>) =
        definitions.into_iter().partition(|s| s.json["type"] == "Extension");
    let (partner_profiles, profiles): (Vec<&Source>, Vec<&Source>) =
        profiles.into_iter().partition(|s| s.path.contains("/partners/"));
    let value_sets = of_type("ValueSet");
    let code_systems = of_type("CodeSystem");
    let search_parameters = of_type("SearchParameter");

    let mut out = String::new();
    out.push_str("# rex profile reference\n\n");
    out.push_str(
        "Generated by `rex profiles doc` from the conformance resources in `profiles/` and the example \
         referrals in `fixtures/valid/`: do not edit it by hand. Regenerate it with \
         `cargo run -- profiles doc > docs/profiles.md`; the test suite fails when it is stale \
         (`rex profiles doc --check docs/profiles.md`). Why the profiles are as they are: \
         `profiles/README.md`.\n\n",
    );
    out.push_str(
        "Element tables list what each differential constrains (rex makes the snapshots when it loads \
         them): cardinality (`min`/`max` given alone leave the other as in the base), types with their \
         profiles, fixed and pattern values, bindings, slicing and must-support. An example is a \
         resource of `fixtures/valid/` that rex's validator finds free of errors against the profile.\n\n",
    );
    out.push_str("## Contents\n\n");
    let sections = [
        ("Profiles", &profiles),
        ("Partner profiles", &partner_profiles),
        ("Extensions", &extensions),
        ("Value sets", &value_sets),
        ("Code systems", &code_systems),
    ];
    for (title, list) in sections {
        let ids: Vec<String> = list.iter().map(|s| format!("`{}`", text(&s.json, "id"))).collect();
        let _ = writeln!(out, "- {title}: {}", if ids.is_empty() { "none".to_string() } else { ids.join(", ") });
    }
    let codes: Vec<String> = search_parameters.iter().map(|s| format!("`{}`", text(&s.json, "code"))).collect();
    let _ = writeln!(out, "- Search parameters: {}", codes.join(", "));

    out.push_str("\n## Profiles\n");
    for source in &profiles {
        profile_section(&mut out, source, fixtures, conforms);
    }
    if !partner_profiles.is_empty() {
        out.push_str(
            "\n## Partner profiles\n\nProfiles in `profiles/partners/<partner id>/`: rex applies them, on top \
             of its own, to the entries of that partner's referral Bundles whose type they constrain.\n",
        );
        for source in &partner_profiles {
            profile_section(&mut out, source, fixtures, conforms);
        }
    }
    out.push_str("\n## Extensions\n");
    for source in &extensions {
        extension_section(&mut out, source);
    }
    out.push_str("\n## Value sets\n");
    for source in &value_sets {
        value_set_section(&mut out, source);
    }
    out.push_str("\n## Code systems\n");
    for source in &code_systems {
        code_system_section(&mut out, source);
    }
    out.push_str("\n## Search parameters\n\n");
    out.push_str("Beyond the R4 ones; searchable like any other (`GET /fhir/Task?due=lt2026-12-01`).\n\n");
    out.push_str("| code | on | type | expression | description | URL |\n| --- | --- | --- | --- | --- | --- |\n");
    for source in &search_parameters {
        let json = &source.json;
        let bases: Vec<&str> = json["base"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` | {} | `{}` |",
            cell(text(json, "code")),
            bases.join(", "),
            text(json, "type"),
            cell(text(json, "expression")),
            cell(text(json, "description")),
            text(json, "url")
        );
    }
    // Sections end with a blank line and start with one; keep one between them.
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out
}

/// A string member of a JSON object, or "".
fn text<'a>(json: &'a Value, key: &str) -> &'a str {
    json[key].as_str().unwrap_or_default()
}

/// Text made safe for a Markdown table cell: one line, pipes escaped.
fn cell(value: &str) -> String {
    value.replace('\n', " ").replace('|', "\\|")
}

/// The last segment of a canonical URL: `…/StructureDefinition/rex-referral-task` reads
/// `rex-referral-task`, `…/StructureDefinition/PractitionerRole` reads `PractitionerRole`.
fn short_name(canonical: &str) -> &str {
    canonical.rsplit('/').next().unwrap_or(canonical)
}

/// The heading and summary lines every StructureDefinition starts with.
fn definition_header(out: &mut String, source: &Source) {
    let json = &source.json;
    let _ = writeln!(out, "\n### {}\n", text(json, "id"));
    let _ = writeln!(
        out,
        "**{}**: `{}` (version {}, {}), constrains {} (`{}`); file `{}`.\n",
        text(json, "title"),
        text(json, "url"),
        text(json, "version"),
        text(json, "status"),
        text(json, "type"),
        text(json, "baseDefinition"),
        source.path
    );
    let description = text(json, "description");
    if !description.is_empty() {
        let _ = writeln!(out, "{description}\n");
    }
}

fn profile_section(out: &mut String, source: &Source, fixtures: &[Source], conforms: &dyn Fn(&Value, &str) -> bool) {
    definition_header(out, source);
    let json = &source.json;
    let url = text(json, "url");
    match find_example(text(json, "type"), url, fixtures, conforms) {
        Some((path, location)) => {
            let _ = writeln!(out, "Example: `{path}`, {location}.\n");
        }
        None => {
            let _ = writeln!(out, "Example: none of the resources in `fixtures/valid/` conforms to this profile.\n");
        }
    }
    element_table(out, json);
    invariant_table(out, json);
}

fn extension_section(out: &mut String, source: &Source) {
    definition_header(out, source);
    let contexts: Vec<String> = source.json["context"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|context| format!("`{}` ({})", text(context, "expression"), text(context, "type")))
        .collect();
    if !contexts.is_empty() {
        let _ = writeln!(out, "Used on: {}.\n", contexts.join(", "));
    }
    element_table(out, &source.json);
    invariant_table(out, &source.json);
}

/// The first fixture resource of `resource_type` that conforms to `profile`: each file's root
/// resource, then its entries, files in the order given. Returns the file and where in it.
pub fn find_example(
    resource_type: &str,
    profile: &str,
    fixtures: &[Source],
    conforms: &dyn Fn(&Value, &str) -> bool,
) -> Option<(String, String)> {
    for fixture in fixtures {
        if fixture.json["resourceType"] == resource_type && conforms(&fixture.json, profile) {
            return Some((fixture.path.clone(), "the whole Bundle".to_string()));
        }
        for (index, entry) in fixture.json["entry"].as_array().into_iter().flatten().enumerate() {
            let resource = &entry["resource"];
            if resource["resourceType"] == resource_type && conforms(resource, profile) {
                return Some((fixture.path.clone(), format!("`Bundle.entry[{index}].resource`")));
            }
        }
    }
    None
}

/// One row per differential element.
fn element_table(out: &mut String, definition: &Value) {
    let elements = definition["differential"]["element"].as_array().map(Vec::as_slice).unwrap_or_default();
    if elements.is_empty() {
        return;
    }
    out.push_str("| element | card. | type | constraints | must support | short |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for element in elements {
        let id = element["id"].as_str().or(element["path"].as_str()).unwrap_or_default();
        let must_support = if element["mustSupport"] == true { "yes" } else { "" };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {must_support} | {} |",
            cell(id),
            cardinality(element),
            cell(&types(element)),
            cell(&constraints(element)),
            cell(text(element, "short"))
        );
    }
    out.push('\n');
}

/// `1..1` when both bounds are constrained, else `min 1` or `max 0`, or nothing.
fn cardinality(element: &Value) -> String {
    match (element["min"].as_u64(), element["max"].as_str()) {
        (Some(min), Some(max)) => format!("{min}..{max}"),
        (Some(min), None) => format!("min {min}"),
        (None, Some(max)) => format!("max {max}"),
        (None, None) => String::new(),
    }
}

/// `Reference(rex-international-patient or PractitionerRole)`, `ServiceRequest (rex-referral-servicerequest)`.
fn types(element: &Value) -> String {
    fn names(list: &Value) -> Vec<&str> {
        list.as_array().into_iter().flatten().filter_map(Value::as_str).map(short_name).collect()
    }
    let rendered: Vec<String> = element["type"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kind| {
            let code = text(kind, "code");
            let targets = names(&kind["targetProfile"]);
            let profiles = names(&kind["profile"]);
            let mut rendered = code.to_string();
            if !targets.is_empty() {
                rendered = format!("{code}({})", targets.join(" or "));
            }
            if !profiles.is_empty() {
                rendered = format!("{rendered} ({})", profiles.join(" or "));
            }
            rendered
        })
        .collect();
    rendered.join(", ")
}

/// Fixed and pattern values, the binding and the slicing of an element, `; `-separated.
fn constraints(element: &Value) -> String {
    let mut parts = Vec::new();
    for (key, value) in element.as_object().into_iter().flatten() {
        let kind = if key.starts_with("fixed") {
            "fixed"
        } else if key.starts_with("pattern") {
            "pattern"
        } else {
            continue;
        };
        let value = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        parts.push(format!("{kind} `{value}`"));
    }
    let binding = &element["binding"];
    if binding.is_object() {
        let value_set = text(binding, "valueSet");
        let mut rendered = format!("{} binding", text(binding, "strength"));
        if !value_set.is_empty() {
            rendered.push_str(&format!(" to `{value_set}`"));
        }
        parts.push(rendered);
    }
    let slicing = &element["slicing"];
    if slicing.is_object() {
        let discriminators: Vec<String> = slicing["discriminator"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} of `{}`", text(d, "type"), text(d, "path")))
            .collect();
        let ordered = if slicing["ordered"] == true { ", ordered" } else { "" };
        parts.push(format!("sliced by {} ({}{ordered})", discriminators.join(" and "), text(slicing, "rules")));
    }
    let slice = text(element, "sliceName");
    if !slice.is_empty() {
        parts.push(format!("slice `{slice}`"));
    }
    parts.join("; ")
}

/// The invariants (`constraint`) the differential adds, with the element they are on.
fn invariant_table(out: &mut String, definition: &Value) {
    let mut rows = Vec::new();
    for element in definition["differential"]["element"].as_array().into_iter().flatten() {
        let id = element["id"].as_str().or(element["path"].as_str()).unwrap_or_default();
        for constraint in element["constraint"].as_array().into_iter().flatten() {
            rows.push(format!(
                "| `{}` | {} | `{}` | {} | `{}` |",
                cell(text(constraint, "key")),
                text(constraint, "severity"),
                cell(id),
                cell(text(constraint, "human")),
                cell(text(constraint, "expression"))
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    out.push_str("Invariants:\n\n| key | severity | on | rule | expression |\n| --- | --- | --- | --- | --- |\n");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn value_set_section(out: &mut String, source: &Source) {
    let json = &source.json;
    let _ = writeln!(out, "\n### {}\n", text(json, "id"));
    let _ = writeln!(
        out,
        "**{}**: `{}` (version {}); file `{}`.\n",
        text(json, "title"),
        text(json, "url"),
        text(json, "version"),
        source.path
    );
    let description = text(json, "description");
    if !description.is_empty() {
        let _ = writeln!(out, "{description}\n");
    }
    for (verb, key) in [("Includes", "include"), ("Excludes", "exclude")] {
        for part in json["compose"][key].as_array().into_iter().flatten() {
            let system = text(part, "system");
            let concepts = part["concept"].as_array().map(Vec::as_slice).unwrap_or_default();
            let filters: Vec<String> = part["filter"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("`{} {} {}`", text(f, "property"), text(f, "op"), text(f, "value")))
                .collect();
            let value_sets: Vec<String> = part["valueSet"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|url| format!("`{url}`"))
                .collect();
            if !value_sets.is_empty() {
                let _ = writeln!(out, "{verb} the codes of {}.\n", value_sets.join(", "));
            }
            if system.is_empty() {
                continue;
            }
            if !filters.is_empty() {
                let _ = writeln!(out, "{verb} the codes of `{system}` where {}.\n", filters.join(" and "));
            } else if concepts.is_empty() {
                let _ = writeln!(out, "{verb} every code of `{system}`.\n");
            } else {
                let _ = writeln!(out, "{verb} from `{system}`:\n\n| code | display |\n| --- | --- |");
                for concept in concepts {
                    let _ = writeln!(out, "| `{}` | {} |", cell(text(concept, "code")), cell(text(concept, "display")));
                }
                out.push('\n');
            }
        }
    }
}

fn code_system_section(out: &mut String, source: &Source) {
    let json = &source.json;
    let _ = writeln!(out, "\n### {}\n", text(json, "id"));
    let _ = writeln!(
        out,
        "**{}**: `{}` (version {}, content {}); file `{}`.\n",
        text(json, "title"),
        text(json, "url"),
        text(json, "version"),
        text(json, "content"),
        source.path
    );
    let description = text(json, "description");
    if !description.is_empty() {
        let _ = writeln!(out, "{description}\n");
    }
    let mut rows = Vec::new();
    concept_rows(&json["concept"], 0, &mut rows);
    if rows.is_empty() {
        return;
    }
    out.push_str("| code | display | definition |\n| --- | --- | --- |\n");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
}

/// Table rows of a concept list, children indented under their parent.
fn concept_rows(concepts: &Value, depth: usize, rows: &mut Vec<String>) {
    for concept in concepts.as_array().into_iter().flatten() {
        let indent = "&nbsp;&nbsp;".repeat(depth);
        rows.push(format!(
            "| {indent}`{}` | {} | {} |",
            cell(text(concept, "code")),
            cell(text(concept, "display")),
            cell(text(concept, "definition"))
        ));
        concept_rows(&concept["concept"], depth + 1, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(path: &str, json: Value) -> Source {
        Source { path: path.to_string(), json }
    }

    fn profile() -> Value {
        json!({"resourceType": "StructureDefinition", "id": "p", "url": "https://rex.example/fhir/StructureDefinition/p",
        "version": "0.1.0", "status": "active", "title": "P", "type": "ServiceRequest",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/ServiceRequest", "description": "A profile.",
        "differential": {"element": [
            {"id": "ServiceRequest", "path": "ServiceRequest", "constraint": [{"key": "p-1", "severity": "error",
                "human": "code or reason", "expression": "code.exists() or reasonCode.exists()"}]},
            {"id": "ServiceRequest.status", "path": "ServiceRequest.status", "mustSupport": true,
                "short": "draft | active", "binding": {"strength": "required", "valueSet": "https://rex.example/fhir/ValueSet/s"}},
            {"id": "ServiceRequest.intent", "path": "ServiceRequest.intent", "fixedCode": "order"},
            {"id": "ServiceRequest.identifier", "path": "ServiceRequest.identifier", "min": 1,
                "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
            {"id": "ServiceRequest.identifier:partner", "path": "ServiceRequest.identifier", "sliceName": "partner",
                "min": 1, "max": "1"},
            {"id": "ServiceRequest.subject", "path": "ServiceRequest.subject", "type": [{"code": "Reference",
                "targetProfile": ["https://rex.example/fhir/StructureDefinition/rex-international-patient",
                                  "http://hl7.org/fhir/StructureDefinition/Group"]}]}
        ]}})
    }

    #[test]
    fn a_profile_lists_its_constrained_elements_and_invariants() {
        let resources = [source("profiles/StructureDefinition-p.json", profile())];
        let markdown = generate(&resources, &[], &|_, _| false);
        assert!(markdown.contains("### p\n"), "{markdown}");
        assert!(markdown.contains("`https://rex.example/fhir/StructureDefinition/p` (version 0.1.0, active)"));
        assert!(markdown.contains(
            "| `ServiceRequest.status` |  |  | required binding to `https://rex.example/fhir/ValueSet/s` | yes | draft \\| active |"
        ));
        assert!(markdown.contains("| `ServiceRequest.intent` |  |  | fixed `order` |  |  |"));
        assert!(
            markdown.contains("| `ServiceRequest.identifier` | min 1 |  | sliced by value of `system` (open) |  |  |")
        );
        assert!(markdown.contains("| `ServiceRequest.identifier:partner` | 1..1 |  | slice `partner` |  |  |"));
        assert!(markdown.contains("| Reference(rex-international-patient or Group) |"));
        assert!(markdown.contains(
            "| `p-1` | error | `ServiceRequest` | code or reason | `code.exists() or reasonCode.exists()` |"
        ));
        assert!(markdown.contains("Example: none of the resources in `fixtures/valid/` conforms to this profile."));
    }

    #[test]
    fn the_example_is_the_first_conforming_resource_of_the_profiles_type() {
        let fixtures = [
            source(
                "fixtures/valid/01.json",
                json!({"resourceType": "Bundle", "entry": [
                {"resource": {"resourceType": "ServiceRequest", "id": "rejected"}}]}),
            ),
            source(
                "fixtures/valid/02.json",
                json!({"resourceType": "Bundle", "entry": [
                {"resource": {"resourceType": "Patient"}},
                {"resource": {"resourceType": "ServiceRequest", "id": "good"}}]}),
            ),
        ];
        let conforms = |resource: &Value, profile: &str| {
            profile.ends_with("/p") && (resource["id"] == "good" || resource["resourceType"] == "Bundle")
        };
        assert_eq!(
            find_example("ServiceRequest", "https://rex.example/fhir/StructureDefinition/p", &fixtures, &conforms),
            Some(("fixtures/valid/02.json".to_string(), "`Bundle.entry[1].resource`".to_string()))
        );
        assert_eq!(
            find_example("Bundle", "https://rex.example/fhir/StructureDefinition/p", &fixtures, &conforms),
            Some(("fixtures/valid/01.json".to_string(), "the whole Bundle".to_string()))
        );
        assert_eq!(find_example("Task", "https://rex.example/fhir/StructureDefinition/p", &fixtures, &conforms), None);
        let markdown = generate(&[source("profiles/p.json", profile())], &fixtures, &conforms);
        assert!(markdown.contains("Example: `fixtures/valid/02.json`, `Bundle.entry[1].resource`."), "{markdown}");
    }

    #[test]
    fn partner_profiles_extensions_and_terminology_have_their_own_sections() {
        let mut partner = profile();
        partner["id"] = json!("rex-partner-x-servicerequest");
        let extension = json!({"resourceType": "StructureDefinition", "id": "task-flag", "type": "Extension",
            "context": [{"type": "element", "expression": "Task"}],
            "differential": {"element": [{"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
                "type": [{"code": "code"}]}]}});
        let value_set = json!({"resourceType": "ValueSet", "id": "vs", "url": "https://rex.example/fhir/ValueSet/vs",
            "title": "VS", "compose": {"include": [
                {"system": "https://rex.example/fhir/CodeSystem/cs"},
                {"system": "http://snomed.info/sct", "concept": [{"code": "3457005", "display": "Patient referral"}]}]}});
        let code_system = json!({"resourceType": "CodeSystem", "id": "cs", "url": "https://rex.example/fhir/CodeSystem/cs",
            "title": "CS", "content": "complete", "concept": [{"code": "a", "display": "A", "definition": "first",
                "concept": [{"code": "a.1", "display": "A one"}]}]});
        let search = json!({"resourceType": "SearchParameter", "id": "Task-due", "code": "due", "base": ["Task"],
            "type": "date", "expression": "Task.restriction.period.end", "description": "Due",
            "url": "https://rex.example/fhir/SearchParameter/Task-due"});
        let resources = [
            source("profiles/partners/x/StructureDefinition-rex-partner-x-servicerequest.json", partner),
            source("profiles/StructureDefinition-task-flag.json", extension),
            source("profiles/ValueSet-vs.json", value_set),
            source("profiles/CodeSystem-cs.json", code_system),
            source("profiles/SearchParameter-Task-due.json", search),
        ];
        let markdown = generate(&resources, &[], &|_, _| false);
        let position = |needle: &str| markdown.find(needle).unwrap_or_else(|| panic!("{needle} in {markdown}"));
        assert!(position("## Partner profiles") < position("### rex-partner-x-servicerequest"));
        assert!(position("## Extensions") < position("### task-flag"));
        assert!(markdown.contains("Used on: `Task` (element)."));
        assert!(markdown.contains("| `Extension.value[x]` | min 1 | code |"));
        assert!(markdown.contains("Includes every code of `https://rex.example/fhir/CodeSystem/cs`."));
        assert!(markdown.contains("| `3457005` | Patient referral |"));
        assert!(markdown.contains("| `a` | A | first |\n| &nbsp;&nbsp;`a.1` | A one |  |"));
        assert!(markdown.contains(
            "| `due` | Task | date | `Task.restriction.period.end` | Due | `https://rex.example/fhir/SearchParameter/Task-due` |"
        ));
        assert!(markdown.contains("- Search parameters: `due`"));
    }
}
