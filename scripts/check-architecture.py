#!/usr/bin/env python3
# Fails when docs/ARCHITECTURE.md names a file or a type that does not exist,
# so the map of the code cannot drift from it. Checked: every `code span` that
# is a file name or path (*.swift, *.c, *.h, *.sh, *.py, a/b), and every one
# that starts with a CamelCase identifier (`Planner`, `Migrator.status`):
# its first part must be a type, protocol, typealias, module or target, or a
# file's base name.
#   scripts/check-architecture.py [FILE...]   (default: docs/ARCHITECTURE.md)
import os, re, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
docs = sys.argv[1:] or [os.path.join(root, "docs", "ARCHITECTURE.md")]
trees = ["Sources", "Tests", "bench", "Plugins-Examples", "scripts", ".ci", "docs"]
files, names, types = set(), set(), set()
for tree in trees:
    for d, _, fs in os.walk(os.path.join(root, tree)):
        if "/.build" in d:
            continue
        for f in fs:
            rel = os.path.relpath(os.path.join(d, f), root)
            files.add(rel)
            names.add(f)
            names.add(os.path.splitext(f)[0])
            if f.endswith((".swift", ".h", ".c")):
                text = open(os.path.join(d, f), encoding="utf-8", errors="replace").read()
                types.update(re.findall(
                    r"\b(?:class|struct|enum|protocol|typealias|actor|extension|case)\s+([A-Za-z_][A-Za-z0-9_]*)", text))
                types.update(re.findall(r"\b(?:typedef\s+struct|struct)\s+([a-z_][a-z0-9_]*)", text))
        names.update(os.path.basename(d) for _ in [0])
package = open(os.path.join(root, "Package.swift")).read()
targets = set(re.findall(r'name:\s*"([^"]+)"', package))
known = types | targets | names

problems = []
for doc in docs:
    for n, line in enumerate(open(doc, encoding="utf-8"), 1):
        for span in re.findall(r"`([^`\n]+)`", line):
            span = span.strip()
            if re.fullmatch(r"[\w.\-/]+\.(swift|c|h|sh|py|md|modulemap)", span) or (
                "/" in span and re.fullmatch(r"[\w.\-]+(/[\w.\-]+)+/?", span) and not span.startswith("/")
            ):
                path = span.rstrip("/")
                if not (path in files or os.path.basename(path) in names or os.path.exists(os.path.join(root, path))):
                    problems.append(f"{os.path.relpath(doc, root)}:{n}: names the file '{span}', which does not exist")
                continue
            # CamelCase only: C constants (`O_NOFOLLOW`, `EVP_sha256`) are the system's.
            m = re.match(r"([A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*)(?:[.(<]|$)", span)
            if m and re.fullmatch(r"[A-Za-z0-9_.()<>:, ]+", span) and m.group(1) not in known:
                problems.append(f"{os.path.relpath(doc, root)}:{n}: names '{m.group(1)}' (in `{span}`), which is not a type, module or file")
for p in problems:
    print(p)
print(f"{len(problems)} stale name(s) in {', '.join(os.path.relpath(d, root) for d in docs)}", file=sys.stderr)
sys.exit(1 if problems else 0)
