#!/usr/bin/env python3
# Lists public symbols of the given modules that have no doc comment, from their
# symbol graphs (scripts/docs.sh makes them); exits 1 if there is any.
#   scripts/doc-coverage.py SYMBOL_GRAPH_DIR MODULE...
import json, sys
# Protocol witnesses carry the protocol's documentation (DocC shows it).
WITNESSES = {"description", "encode(to:)", "init(from:)", "rawValue", "init(rawValue:)", "hash(into:)", "hashValue"}
total = 0
for mod in sys.argv[2:]:
    d = json.load(open(f"{sys.argv[1]}/{mod}.symbols.json"))
    missing = []
    for s in d["symbols"]:
        if s.get("accessLevel") not in ("public", "open"): continue
        if "::SYNTHESIZED::" in s["identifier"]["precise"]: continue
        loc = s.get("location", {}).get("uri", "")
        if "/Sources/" not in loc: continue
        if s.get("docComment"): continue
        if s["pathComponents"][-1] in WITNESSES: continue
        missing.append((loc.split("/Sources/")[1], s["location"]["position"]["line"] + 1, ".".join(s["pathComponents"])))
    for m in sorted(missing): print(f"{mod}\t{m[0]}:{m[1]}\t{m[2]}")
    total += len(missing)
print(f"{total} public symbol(s) without a doc comment", file=sys.stderr)
sys.exit(1 if total else 0)
