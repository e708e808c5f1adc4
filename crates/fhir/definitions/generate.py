#!/usr/bin/env python3
"""Writes r4-search.json, the search parameters rex indexes and queries.

Run from the repository root with the official package beside it:
    python3 crates/fhir/definitions/generate.py ../shared/fhir-r4-core/package
It also takes rex's own SearchParameters from profiles/SearchParameter-*.json.

For every concrete resource type of FHIR R4 (4.0.1) the output lists its search parameters as
{code, type, expression, targets, types, choices}. `expression` keeps only the alternatives of the
SearchParameter's FHIRPath that apply to that type. From the StructureDefinitions, `types` names
the FHIR types the expression yields, so the indexer knows an Identifier from a ContactPoint
without guessing from the JSON shape, and `choices` names the choice elements (`value[x]`) it
steps through, which JSON spells with their type (`valueQuantity`).
"""
import glob
import json
import os
import re
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
COMMON_BASES = ("Resource", "DomainResource")
INLINE_TYPES = ("BackboneElement", "Element")


def type_code(t):
    # Elements such as Resource.id carry a FHIRPath system type and name the FHIR type in an extension.
    for ext in t.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return ext.get("valueUrl") or ext.get("valueUri")
    return t["code"]


def load_structures(package):
    """Concrete resource types (with whether they are DomainResources) and every element's types."""
    resources, elements = {}, {}
    for path in sorted(glob.glob(os.path.join(package, "StructureDefinition-*.json"))):
        sd = json.load(open(path, encoding="utf-8"))
        if sd["kind"] == "logical" or sd.get("derivation") == "constraint":
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resources[sd["type"]] = sd["baseDefinition"].endswith("/DomainResource")
        for el in sd["snapshot"]["element"][1:]:
            name = el["path"].removesuffix("[x]")
            if "contentReference" in el:
                elements[name] = el["contentReference"].lstrip("#")
            else:
                elements[name] = ([type_code(t) for t in el.get("type", [])], el["path"].endswith("[x]"))
    return resources, elements


def split_union(expression):
    """Top-level alternatives of `a | b | (c | d)`, ignoring bars inside parentheses or quotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for c in expression:
        quoted ^= c == "'"
        if not quoted:
            depth += (c == "(") - (c == ")")
            if c == "|" and depth == 0:
                parts.append(current.strip())
                current = ""
                continue
        current += c
    return parts + [current.strip()]


def root(alternative):
    return re.match(r"\(*(\w+)", alternative).group(1)


def own_alternatives(alternatives, base):
    """The alternatives of a SearchParameter's expression that apply to resources of type `base`."""
    # An unrooted path (InsurancePlan's `name | alias`) is relative to the resource.
    rooted = [f"{base}.{a}" if root(a)[0].islower() else a for a in alternatives]
    return [a for a in rooted if root(a) in (base, *COMMON_BASES)]


def walk(alternative, elements):
    """The types of the element an alternative ends on, whether that is a choice element, and
    (name, is_choice) for every element it steps through; None for paths we do not model."""
    # Filters keep the type, and extension('url') yields Extensions just like `.extension`.
    text = re.sub(r"\.where\((?:[^()]|\([^()]*\))*\)", "", alternative)
    text = re.sub(r"extension\('[^']*'\)", "extension", text)
    text = re.sub(r"\.(?:as|ofType)\((\w+)\)", r" as \1", text)
    tokens = [t for t in re.findall(r"\w+|\S", text) if t not in "()."]
    path, types, choice, steps = tokens[0], [tokens[0]], False, []
    casting = False
    for token in tokens[1:]:
        if not re.fullmatch(r"[A-Za-z]\w*", token):
            return None
        if casting:
            types, casting = [token], False
        elif token == "as":
            casting = True
        elif len(types) == 1:  # past a choice element, only a cast says which type to go on in
            path = (path if types[0] in INLINE_TYPES else types[0]) + "." + token
            while isinstance(elements.get(path), str):
                path = elements[path]
            if path not in elements:
                return None
            types, choice = elements[path]
            steps.append((token, choice))
        else:
            return None
    return types, choice, steps


def param_entry(sp, expression, elements):
    types, plain_result, steps = set(), False, set()
    # Composite and special parameters are not indexed, so their types do not matter.
    modelled = expression and sp["type"] not in ("composite", "special")
    for alternative in split_union(expression) if modelled else []:
        found = walk(alternative, elements)
        if found:
            types.update(found[0])
            plain_result |= not found[1]
            steps.update(found[2])
    # The indexer takes the type of a choice element from its JSON key, and otherwise relies on
    # `types` naming exactly one type.
    assert not plain_result or len(types) == 1, (sp["id"], expression, types)
    # `choices` names the choice elements (value[x]) the expression steps through; a name must not
    # be a choice in one place and a plain element in another.
    choices = sorted(name for name, choice in steps if choice)
    assert not any((name, False) in steps for name in choices), (sp["id"], expression)
    return {
        "code": sp["code"],
        "type": sp["type"],
        "expression": expression,
        "targets": sorted(sp.get("target", [])),
        "types": sorted(types),
        "choices": choices,
    }


def main(package):
    resources, elements = load_structures(package)
    params = {name: [] for name in resources}
    # rex's own SearchParameters (referral queues) sit in profiles/ beside the core ones.
    own = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "profiles")
    paths = sorted(glob.glob(os.path.join(package, "SearchParameter-*.json")))
    paths += sorted(glob.glob(os.path.join(own, "SearchParameter-*.json")))
    for path in paths:
        sp = json.load(open(path, encoding="utf-8"))
        # Skip the package's sample SearchParameters and the extension ones that name no base.
        if sp["id"].startswith("example") or "base" not in sp:
            continue
        alternatives = split_union(sp["expression"]) if "expression" in sp else []
        for base in sp["base"]:
            if base in COMMON_BASES:
                applies_to = [name for name, domain in resources.items() if base == "Resource" or domain]
                expression = sp.get("expression", "")
            else:
                applies_to = [base]
                expression = " | ".join(own_alternatives(alternatives, base))
            for name in applies_to:
                params[name].append(param_entry(sp, expression, elements))
    for name, entries in params.items():
        entries.sort(key=lambda p: p["code"])
        codes = [p["code"] for p in entries]
        assert len(codes) == len(set(codes)), name
    out = {"resourceTypes": sorted(resources), "params": dict(sorted(params.items()))}
    target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "r4-search.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/fhir-r4-core/package")
