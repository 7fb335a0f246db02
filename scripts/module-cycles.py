#!/usr/bin/env python3
"""Prints the cycles among a crate's top-level modules, and fails when there is one.

    scripts/module-cycles.py [CRATE_SRC_DIR ...]   (default: crates/server/src crates/raft/src)

A top-level module is a file `x.rs` or a folder `x/` beside `lib.rs`. Module `a` depends on `b`
when code anywhere under `a` names `crate::b` (alone, in a path or in a `use crate::{..}` group)
or reaches it with `super::`. Comments and `#[cfg(test)] mod tests` blocks are left out: what
tests import does not tie the rooms together. Each strongly connected group of two or more
modules is printed with the references that make it, and the exit status is 1 if any exists.
"""

import os
import re
import sys

DEFAULT = ["crates/server/src", "crates/raft/src"]


def strip(code: str) -> str:
    """The code without comments, string literals' contents and the test module."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", code)
    if m:
        code = code[: m.start()]
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r"//[^\n]*", "", code)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', code)


def group_heads(code: str, start: int) -> list[str]:
    """The first names of the items of the `{...}` group that opens at `start`."""
    depth, i, item, heads = 0, start, "", []
    while i < len(code):
        c = code[i]
        if c == "{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and c == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += c
        i += 1
    names = []
    for h in heads:
        m = re.match(r"\s*(\w+)", h)
        if m and m.group(1) != "self":
            names.append(m.group(1))
    return names


def references(code: str, depth: int) -> list[str]:
    """Top-level module names a file at `depth` (1: beside lib.rs or a folder's mod.rs) names."""
    names = []
    for m in re.finditer(r"\bcrate::(\{|\w+)", code):
        names.extend(group_heads(code, m.start(1)) if m.group(1) == "{" else [m.group(1)])
    # super:: from depth d climbs one level; depth-many supers reach the crate root.
    pattern = r"\b" + r"super::" * depth + r"(\{|\w+)"
    for m in re.finditer(pattern, code):
        names.extend(group_heads(code, m.start(1)) if m.group(1) == "{" else [m.group(1)])
    return names


def modules(src: str) -> dict[str, list[tuple[str, int]]]:
    """Each top-level module's files, with each file's depth below the crate root."""
    out: dict[str, list[tuple[str, int]]] = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            out.setdefault(entry[:-3], []).append((path, 1))
        elif os.path.isdir(path) and entry not in ("bin",):
            for root, _, files in os.walk(path):
                for f in files:
                    if f.endswith(".rs"):
                        p = os.path.join(root, f)
                        rel = os.path.relpath(p, src).split(os.sep)
                        depth = len(rel) - 1 if f == "mod.rs" else len(rel)
                        out.setdefault(entry, []).append((p, depth))
    return out


def graph(src: str) -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    mods = modules(src)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    why: dict[tuple[str, str], str] = {}
    for m, files in mods.items():
        for path, depth in files:
            with open(path, encoding="utf-8") as f:
                code = strip(f.read())
            for name in references(code, depth):
                if name in mods and name != m:
                    edges[m].add(name)
                    why.setdefault((m, name), os.path.relpath(path))
    return edges, why


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main() -> int:
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    failed = False
    for src in sys.argv[1:] or DEFAULT:
        edges, why = graph(src)
        groups = strongly_connected(edges)
        if not groups:
            print(f"{src}: {len(edges)} top-level modules, no cycle")
            continue
        failed = True
        for g in groups:
            print(f"{src}: a cycle of {len(g)} modules: {', '.join(g)}")
            for a in g:
                for b in sorted(edges[a]):
                    if b in g:
                        print(f"    {a} -> {b}   ({why[(a, b)]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
