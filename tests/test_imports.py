"""Imports go one way. Each top-level script and each folder is one unit; a unit imports only the units
before it in ORDER (counting imports inside functions: a lazy import is still a dependency a reader has to
follow), so no two units import each other, directly or through others; and no module imports itself back
through its own folder. A default `python fd.py` imports nothing it does not run."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = [  # lowest first: the data flows down this list
    "fdlean",        # the machinery every script shares: CLI, the Lean contract, the policy, sampling, attempts
    "mathlib",       # Lean + Mathlib checkers (behind lean_env.load)
    "mini",          # the mini world: generator, task sets, tutor, probes
    "lean_env",      # the Lean environment: load(spec), the mini world's checker
    "feedback",      # F(y)
    "small_prover",  # the small prover's builds
    "training",      # what the trainers share: the run, its steps, the run folder, FSDP, tracking
    "fd_loss",       # the FD loss
    "evaluate",      # pass@k and the rest
    "fd", "grpo",    # the trainers
    "scripts",       # experiments
]
FOLDERS = [u for u in ORDER if os.path.isdir(os.path.join(ROOT, u))]


def modules() -> dict:
    """{dotted module name: its file} for the top-level scripts and every module in the folders."""
    found = {name[:-3]: os.path.join(ROOT, name) for name in os.listdir(ROOT) if name.endswith(".py")}
    for folder in FOLDERS:
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".py") and name != "__init__.py":
                found[f"{folder}.{name[:-3]}"] = os.path.join(ROOT, folder, name)
    return found


def imports(path: str, ours: set) -> set:
    """The project's modules a file imports, anywhere in it (top level or inside a function)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found & ours


def test_every_unit_has_a_place():
    top = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    folders = {d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}
    assert top | folders == set(ORDER), f"place these in ORDER: {sorted((top | folders) ^ set(ORDER))}"


def test_units_import_only_units_below_them():
    ours = modules()
    unit = lambda m: m.split(".")[0]
    wrong = sorted({(m, d) for m, path in ours.items() for d in imports(path, set(ours))
                    if unit(d) != unit(m) and ORDER.index(unit(d)) > ORDER.index(unit(m))})
    assert not wrong, f"imports against the order (importer, imported): {wrong}"


def test_no_import_cycle_inside_a_folder():
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


def test_a_default_fd_run_imports_only_what_it_runs():
    """The Mathlib checkers, the HTTP critics, the chat tools and the tutor load when named, not by default."""
    code = "import sys, fd; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = set(out.stdout.split())
    assert "fd" in loaded and "fdlean.turns" in loaded
    assert not loaded & {"mathlib.repl", "mathlib.kimina", "fdlean.critics", "fdlean.tools", "fdlean.agent",
                          "mini.tutor", "mini.rules", "requests"}
