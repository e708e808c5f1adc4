//! The catalogue is complete: every file parses, every message exists in every language with the
//! same variables, and the ids and arguments the code passes to `msg!` are the catalogue's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fluent_syntax::ast::{Entry, Expression, InlineExpression, Pattern, PatternElement};

use super::*;

/// Message id → the variables its text uses, for one catalogue file.
fn messages(lang: Lang) -> BTreeMap<String, BTreeSet<String>> {
    let resource = fluent_syntax::parser::parse(lang.source())
        .unwrap_or_else(|(_, errors)| panic!("locales/{}/rex.ftl does not parse: {errors:?}", lang.code()));
    let mut found = BTreeMap::new();
    for entry in &resource.body {
        match entry {
            Entry::Message(message) => {
                let pattern = message.value.as_ref().unwrap_or_else(|| panic!("{} has no text", message.id.name));
                let mut variables = BTreeSet::new();
                pattern_variables(pattern, &mut variables);
                let previous = found.insert(message.id.name.to_string(), variables);
                assert!(previous.is_none(), "{}: {} is defined twice", lang.code(), message.id.name);
            }
            Entry::Comment(_) | Entry::GroupComment(_) | Entry::ResourceComment(_) => {}
            other => panic!("{}: rex's catalogue holds messages and comments only, not {other:?}", lang.code()),
        }
    }
    found
}

fn pattern_variables(pattern: &Pattern<&str>, out: &mut BTreeSet<String>) {
    for element in &pattern.elements {
        if let PatternElement::Placeable { expression } = element {
            expression_variables(expression, out);
        }
    }
}

fn expression_variables(expression: &Expression<&str>, out: &mut BTreeSet<String>) {
    match expression {
        Expression::Select { selector, variants } => {
            inline_variables(selector, out);
            for variant in variants {
                pattern_variables(&variant.value, out);
            }
        }
        Expression::Inline(inline) => inline_variables(inline, out),
    }
}

fn inline_variables(inline: &InlineExpression<&str>, out: &mut BTreeSet<String>) {
    match inline {
        InlineExpression::VariableReference { id } => {
            out.insert(id.name.to_string());
        }
        InlineExpression::FunctionReference { arguments, .. } => {
            for argument in &arguments.positional {
                inline_variables(argument, out);
            }
        }
        InlineExpression::Placeable { expression } => expression_variables(expression, out),
        _ => {}
    }
}

#[test]
fn every_message_exists_in_every_language_with_the_same_variables() {
    let english = messages(Lang::En);
    assert!(english.len() > 100, "the English catalogue has {} messages", english.len());
    for lang in &Lang::ALL[1..] {
        let translated = messages(*lang);
        for (id, variables) in &english {
            match translated.get(id) {
                None => panic!("{}: {id} is missing", lang.code()),
                Some(found) => assert_eq!(found, variables, "{}: {id} uses other variables than English", lang.code()),
            }
        }
        let extra: Vec<&String> = translated.keys().filter(|id| !english.contains_key(*id)).collect();
        assert!(extra.is_empty(), "{}: messages English does not have: {extra:?}", lang.code());
    }
}

#[test]
fn messages_render_in_each_language_with_their_arguments() {
    let message = msg!("resource-not-known", reference = "Patient/p1");
    let texts: Vec<String> = Lang::ALL.iter().map(|lang| message.render(*lang)).collect();
    assert_eq!(texts[0], "Patient/p1 is not known");
    for (lang, text) in Lang::ALL.iter().zip(&texts) {
        assert!(text.contains("Patient/p1"), "{}: {text}", lang.code());
        assert!(!text.contains('\u{2068}'), "no isolation marks: {text:?}");
    }
    let distinct: BTreeSet<&String> = texts.iter().collect();
    assert_eq!(distinct.len(), Lang::ALL.len(), "each language has its own text: {texts:?}");
    // A missing argument is a bug in the code: English is still complete where it can be.
    assert!(Message::new("resource-not-known", vec![]).render(Lang::Fr).contains("resource-not-known"));
}

/// One `msg!("id", name = value, ...)` written in rex's source.
#[derive(Debug)]
struct Use {
    file: PathBuf,
    id: String,
    args: BTreeSet<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            // This crate's own examples are not uses.
            if path.file_name().is_some_and(|n| n != "target" && n != "i18n") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `msg!("...")` in `text`: the id and the names of its top-level arguments.
fn uses_in(file: &Path, text: &str) -> Vec<Use> {
    let mut uses = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("msg!(") {
        let call = &rest[start + "msg!(".len()..];
        let args = top_level_arguments(call);
        // `msg!(@arg ...)` is the macro's own helper, not a use.
        if let Some((first, others)) = args.split_first().filter(|(first, _)| first.trim().starts_with('"')) {
            let names = others
                .iter()
                .map(|arg| arg.split_once('=').map_or(arg.as_str(), |(name, _)| name).trim().to_string())
                .collect();
            uses.push(Use { file: file.to_path_buf(), id: first.trim().trim_matches('"').to_string(), args: names });
        }
        rest = call;
    }
    uses
}

/// The comma-separated arguments of a macro call whose text starts after its `(`, up to the
/// matching `)`; commas inside strings, brackets and closures' argument lists do not separate.
fn top_level_arguments(call: &str) -> Vec<String> {
    let mut args = vec![String::new()];
    let (mut depth, mut in_string, mut escaped, mut in_bars) = (0usize, false, false, false);
    for c in call.chars() {
        if in_string {
            args.last_mut().unwrap().push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            '|' => in_bars = !in_bars,
            ',' if depth == 0 && !in_bars => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(c);
    }
    args.into_iter().filter(|a| !a.trim().is_empty()).collect()
}

#[test]
fn every_message_the_code_uses_is_in_the_catalogue_and_every_entry_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("src"), &mut files);
    let english = messages(Lang::En);
    let mut used = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for found in uses_in(file, &text) {
            let Some(variables) = english.get(&found.id) else {
                panic!("{}: msg!(\"{}\") is not in the catalogue", found.file.display(), found.id)
            };
            assert_eq!(
                &found.args,
                variables,
                "{}: msg!(\"{}\") passes other arguments than its text uses",
                found.file.display(),
                found.id
            );
            used.insert(found.id);
        }
    }
    let unused: Vec<&String> = english.keys().filter(|id| !used.contains(*id)).collect();
    assert!(unused.is_empty(), "catalogue entries no code uses: {unused:?}");
}

#[test]
fn the_source_scan_reads_arguments_as_written() {
    let text = r#"x(msg!("a-b", reference = format!("{t}/{id}"), limit, f = |a, b| a + b), msg!("c",))"#;
    let uses = uses_in(Path::new("x.rs"), text);
    assert_eq!(uses.len(), 2);
    assert_eq!(uses[0].id, "a-b");
    assert_eq!(uses[0].args, BTreeSet::from(["reference".to_string(), "limit".to_string(), "f".to_string()]));
    assert_eq!(uses[1].id, "c");
    assert!(uses[1].args.is_empty());
}
