"""Imports go one way: the project's modules form no cycle, counting imports inside functions too
(a lazy import is still a dependency a reader has to follow), and each tier imports only tiers below:
verifier <- tasks <- policy <- feedback, turns <- preset / evaluation <- trainers and scripts."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
TIERS = [  # lowest first; a module may import its own tier's earlier modules and any lower tier
    ["cli", "parallel", "shard", "tracking", "lean_screen", "lean_env", "lean_mathlib", "lean_kimina", "verifier"],   # the verifier
    ["mini_world", "tasks", "probes"],                                # theorem sets
    ["sampling", "model", "fd_loss"],                                 # the policy and the loss
    ["tutor", "critics", "feedback", "lean_tools", "turns"],                     # F(y), the multi-turn attempt
    ["sft", "sft_turns", "report", "intervals", "evaluate", "checkpoint"],  # the preset, measures, the run
    ["fd", "grpo", "calibrate", "paper", "explain", "compare"],                             # trainers and scripts
]
ORDER = {name: i for i, name in enumerate(m for tier in TIERS for m in tier)}


def imports(name: str) -> set:
    with open(os.path.join(ROOT, name + ".py")) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return (found & OURS) - {name}


def test_every_module_has_a_tier():
    assert OURS == set(ORDER), f"place these in TIERS: {sorted(OURS ^ set(ORDER))}"


def test_imports_only_go_down():
    wrong = [(m, d) for m in sorted(OURS) for d in sorted(imports(m)) if ORDER[d] >= ORDER[m]]
    assert not wrong, f"imports against the order (importer, imported): {wrong}"
