#!/usr/bin/env python3
"""Writes r4-structure.json, the element tree rex's structural check walks.

Run from the repository root with the official package beside it:
    python3 crates/fhir/definitions/generate_structure.py ../shared/fhir-r4-core/package

The output lists, for every concrete resource and complex data type of FHIR R4 (4.0.1), the children
of each element path with their types and cardinality, and for every primitive type the JSON kind
(string, number or boolean) its value takes.
"""
import glob
import json
import os
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
NUMBER_PRIMITIVES = {"integer", "positiveInt", "unsignedInt", "decimal"}


def type_code(t):
    # Elements such as Resource.id carry a FHIRPath system type and name the FHIR type in an extension.
    for ext in t.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return ext.get("valueUrl") or ext.get("valueUri")
    return t["code"]


def main(package):
    resources, primitives, elements = [], {}, {}
    for path in sorted(glob.glob(os.path.join(package, "StructureDefinition-*.json"))):
        sd = json.load(open(path, encoding="utf-8"))
        # Profiles (constraints) and logical models are not base structure; Element and the
        # abstract resources are kept, since primitive extensions and contained resources use them.
        if sd.get("derivation") == "constraint" or sd["kind"] == "logical":
            continue
        name = sd["type"]
        if sd["kind"] == "primitive-type":
            primitives[name] = "boolean" if name == "boolean" else "number" if name in NUMBER_PRIMITIVES else "string"
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resources.append(name)
        for el in sd["snapshot"]["element"][1:]:
            parent, child = el["path"].rsplit(".", 1)
            entry = {"n": child, "min": el.get("min", 0), "many": el.get("max", "1") != "1"}
            if "contentReference" in el:
                entry["ref"] = el["contentReference"].lstrip("#")
            else:
                entry["t"] = [type_code(t) for t in el.get("type", [])]
            elements.setdefault(parent, []).append(entry)
    out = {"resources": sorted(resources), "primitives": dict(sorted(primitives.items())), "elements": dict(sorted(elements.items()))}
    target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "r4-structure.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/fhir-r4-core/package")
