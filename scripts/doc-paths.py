#!/usr/bin/env python3
"""Fails when a document names a repository path that does not exist.

    scripts/doc-paths.py

Reads README.md, tests/README.md and every Markdown file under docs/ and deploy/, finds each
path that starts with one of the repository's top-level folders (`crates/...`, `tests/...`,
`scripts/...`, `docs/...`, ...), in code spans, links or plain text, and prints the ones that
name nothing. A path may end in `:LINE`, `#anchor` or a trailing `/`; one with a glob or a
placeholder (`*`, `<`, `{`, `...`) is not checked.
"""

import os
import re
import sys


def documents(root: str) -> list[str]:
    docs = [p for p in ("README.md", "tests/README.md") if os.path.exists(os.path.join(root, p))]
    for top in ("docs", "deploy"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            docs += [os.path.relpath(os.path.join(dirpath, f), root) for f in files if f.endswith(".md")]
    return sorted(docs)


def main() -> int:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    tops = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")]
    tops = [d for d in tops if d not in ("target",)] + [".ci", ".config"]
    pattern = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(t) for t in tops) + r")/[\w./-]*)")
    missing = 0
    checked = 0
    for doc in documents(root):
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                for m in pattern.finditer(line):
                    path = m.group(1)
                    rest = line[m.end(1) : m.end(1) + 1]
                    if rest in ("*", "<", "{") or "..." in path:
                        continue
                    path = re.sub(r"[.:,]+$", "", path.split("#")[0]).rstrip("/")
                    checked += 1
                    # A path relative to the document's own folder is fine too.
                    here = os.path.join(root, os.path.dirname(doc), path)
                    if not os.path.exists(os.path.join(root, path)) and not os.path.exists(here):
                        print(f"{doc}:{n}: no such path: {path}")
                        missing += 1
    print(f"{checked} repository paths named in the docs, {missing} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
