#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a circle (`make lint` runs it over every crate's src/).

A module depends on another when its file names it: `crate::a::b`, `use crate::{a, b}`, `super::a`, or a child
`a::` of its own. Circles are the strongly connected components of that graph with more than one module. A parent
declaring its children (`mod a;`) is not counted: that is where a module lives, not what it uses.
`--self-test` checks that a planted circle is found and a line of modules is not.
"""
import os
import re
import sys
import tempfile


def modules(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    files[os.path.relpath(path, root)] = f.read()
    return files


def module_path(relative):
    parts = relative[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def graph(root):
    files = modules(root)
    known = {module_path(r) for r in files}

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in known:
                return tuple(parts[:n])
        return None

    edges = {}
    for relative, text in files.items():
        if relative.startswith("bin/"):
            continue
        me = module_path(relative)
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
        named = set()
        for m in re.finditer(r"crate::((?:\w+::)*\w+)(?!::\{)", text):
            named.add(tuple(m.group(1).split("::")))
        for m in re.finditer(r"(?:use crate|super)::((?:\w+::)*)\{([^}]*)\}", text):
            prefix = [p for p in m.group(1).split("::") if p]
            if m.group(0).startswith("super"):
                prefix = list(me[:-1]) + prefix
            for item in m.group(2).split(","):
                item = item.strip().split("::")
                named.add(tuple(prefix + ([] if item[0] in ("", "self") else item)))
        for m in re.finditer(r"\bsuper::((?:\w+::)*\w+)", text):
            named.add(tuple(list(me[:-1]) + m.group(1).split("::")))
        for m in re.finditer(r"(?<![:\w])(\w+)::", text):
            if me + (m.group(1),) in known:
                named.add(me + (m.group(1),))
        edges[me] = {t for t in (resolve(list(n)) for n in named) if t and t != me and t != ()}
    return edges


def circles(edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted("::".join(c) for c in component))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def self_test():
    with tempfile.TemporaryDirectory() as root:
        for name, text in {"lib.rs": "mod a;\nmod b;\nmod c;\n", "a.rs": "use crate::b::B;\n",
                           "b.rs": "pub struct B;\nuse crate::c;\n", "c.rs": "pub fn f() {}\n"}.items():
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        assert circles(graph(root)) == [], "a line a -> b -> c is no circle"
        with open(os.path.join(root, "c.rs"), "a") as f:
            f.write("use crate::a;\n")
        assert circles(graph(root)) == [["a", "b", "c"]], circles(graph(root))
    print("import-cycles: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    failed = 0
    for root in sys.argv[1:]:
        edges = graph(root)
        for circle in circles(edges):
            print(f"{root}: modules import each other in a circle: {' '.join(circle)}", file=sys.stderr)
            failed = 1
        if not failed:
            print(f"{root}: {len(edges)} modules, no import circles")
    return failed


if __name__ == "__main__":
    sys.exit(main())
