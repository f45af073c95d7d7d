"""Imports go one way: the project's modules, in every folder, form no cycle, counting imports inside
functions too (a lazy import is still a dependency a reader has to follow)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ["fdlean", "training", "mini", "small_prover", "mathlib", "scripts"]


def modules() -> dict:
    """{dotted module name: its file} for the top-level scripts and every module in the folders."""
    found = {name[:-3]: os.path.join(ROOT, name) for name in os.listdir(ROOT) if name.endswith(".py")}
    for folder in FOLDERS:
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".py") and name != "__init__.py":
                found[f"{folder}.{name[:-3]}"] = os.path.join(ROOT, folder, name)
    return found


def imports(path: str, ours: set) -> set:
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found & ours


def test_no_import_cycle():
    ours = modules()
    graph = {m: imports(path, set(ours)) - {m} for m, path in ours.items()}
    done, path = set(), []

    def visit(m):
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        path.append(m)
        for d in sorted(graph[m]):
            visit(d)
        path.pop()
        done.add(m)
    for m in sorted(graph):
        visit(m)
