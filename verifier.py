"""Choose the Lean checker from a spec: the one step from a script's `--verifier` to the checker it gets.

    env = verifier.load("mini")                     # the built-in world, real Lean 4 (lean_env.py)
    env = verifier.load("repl:PROJECT")             # a pool of Lean REPLs in a Lean + Mathlib project
    env = verifier.load("lake:PROJECT")             # `lake env lean`, one Lean process per proof
    env = verifier.load("kimina:URL")               # a running Kimina Lean Server (lean_kimina.py; the others lean_mathlib.py)
    env.check_many([(task, proof), ...])            # -> [Result(ok, status, messages)], same order

    python fd.py --verifier repl:$HOME/mathlib4 --tasks jsonl:leanworkbook_train.jsonl ...

Options go to the checker: lean_env.load's for mini (lean, timeout, workers, ...), lean_mathlib's ReplPool, LakeEnv
or lean_kimina's KiminaClient for the others (verifier.load("repl", project="mathlib4", repl="repl/.lake/build/bin/repl")).
A script needs no other module for the interface: Task in, Result out, LeanNotFound when no Lean can run.
"""
import os

import lean_env
from fdlean import parallel
from lean_env import LeanNotFound, Result, Task  # noqa: F401  (the interface, re-exported)
from mathlib import kimina as lean_kimina
from mathlib import repl as lean_mathlib

MATHLIB = {"repl": (lean_mathlib.ReplPool, "project"), "lake": (lean_mathlib.LakeEnv, "project"),
           "kimina": (lean_kimina.KiminaClient, "url")}     # world -> (backend, what the part after ":" names)


def load(spec: str = "mini", **options):
    """The checker a spec names: "mini" | "repl[:PROJECT]" | "lake[:PROJECT]" | "kimina[:URL]"; options are the
    checker's own arguments; lean=None or "" names no Lean (the scripts' default). Raises ValueError for an unknown spec, LeanNotFound when no Lean can run."""
    world, _, where = spec.partition(":")
    if parallel.size() > 1 and world in ("mini", "repl", "lake") and "workers" not in options:
        options["workers"] = max(1, (os.cpu_count() or 2) // parallel.size())   # torchrun: the processes share the cores
    if options.get("lean", "") in ("", None):  # no `lean` named: the mini world finds one, the others need none
        options.pop("lean", None)
    if world in MATHLIB and "lean" in options:
        raise ValueError(f"{spec}: a `lean` executable is for the mini world; a Mathlib project brings its own Lean")
    if world in MATHLIB:
        backend, place = MATHLIB[world]
        if where:
            options[place] = where
        return backend(**options)
    if world != "mini" or where:
        raise ValueError(f"unknown verifier {world + (':' + where if where else '')!r}: "
                         "use mini, repl:PROJECT, lake:PROJECT or kimina:URL")
    return lean_env.load("mini", **options)
