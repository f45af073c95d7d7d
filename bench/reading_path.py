"""How much code a reader follows through `python fd.py`: the lines that run, file by file.

One FD run (defaults: 1 step, 4 prompts, 4 held-out tasks) is traced in-process, imports included;
every line of the project's own files that executes is counted once (module-level code such as
imports, settings and `def` lines too; Lean runs in child processes; third-party code is not
counted). Beside it, each file's total length. Run it on another checkout
(an older commit, say) to compare:

    python sft.py --steps 30 --n-tasks 400 --d-model 32 --n-layers 1 --n-heads 2 --d-ff 64 --out /tmp/tiny
    python bench/reading_path.py --model /tmp/tiny
    git worktree add /tmp/old 982b943 && python bench/reading_path.py --model /tmp/tiny --repo /tmp/old
"""
import inspect
import os
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Config:
    model: str = ""               # an HF-format model folder (a tiny one is enough: see the docstring)
    repo: str = HERE              # the checkout whose fd.py is traced
    steps: int = 1
    prompts: int = 4


def trace_fd(repo: str, argv: list[str]) -> dict:
    """{(file name, "functions" or "module"): line numbers run} for fd.train(fd.parse_args(argv)) of
    that checkout: lines inside the functions that ran, and module-level lines (imports, settings,
    `def` lines, class bodies) of every module imported."""
    repo = os.path.abspath(repo)
    sys.path.insert(0, repo)
    os.chdir(repo)
    ours = {os.path.join(repo, name) for name in os.listdir(repo) if name.endswith(".py")}
    for name in [m for m in sys.modules if os.path.join(repo, m + ".py") in ours]:
        del sys.modules[name]  # imported below, under the trace: module-level code counts too
    seen = defaultdict(set)  # (file, "functions" | "module") -> line numbers

    def tracer(frame, event, arg):
        path = frame.f_code.co_filename
        if path not in ours:
            return None  # not a top-level file of the project: do not trace inside it
        if event == "line":
            # a function's code is "optimized" (fast locals); a module's or a class body's is not
            where = "functions" if frame.f_code.co_flags & inspect.CO_OPTIMIZED else "module"
            seen[os.path.basename(path), where].add(frame.f_lineno)
        return tracer

    threading.settrace(tracer)
    sys.settrace(tracer)
    try:
        import fd
        fd.train(fd.parse_args(argv))
    finally:
        sys.settrace(None)
        threading.settrace(None)
    return seen


def main():
    sys.path.insert(0, HERE)
    from fdlean import cli
    cfg = cli.parse(Config, prog="reading_path.py", description=__doc__.split("\n")[0])
    if not cfg.model:
        cli.fail("reading_path.py: --model: give a model folder (see --help)")
    out = tempfile.mkdtemp(prefix="reading-path-")
    argv = ["--model", os.path.abspath(cfg.model), "--steps", str(cfg.steps), "--prompts", str(cfg.prompts),
            "--eval-limit", "4", "--threads", "1", "--out", os.path.join(out, "run")]
    seen = trace_fd(cfg.repo, argv)
    print(f"\n`python fd.py` in {cfg.repo}: lines run per file (in functions, at module level) and its length\n")
    print("| file | lines run in functions | at module level | file lines |\n|---|---|---|---|")
    files = sorted({name for name, _ in seen}, key=lambda n: -len(seen[n, "functions"]))
    totals = [0, 0, 0]
    for name in files:
        with open(os.path.join(os.path.abspath(cfg.repo), name)) as f:
            length = sum(1 for _ in f)
        row = [len(seen[name, "functions"]), len(seen[name, "module"]), length]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"| {name} | " + " | ".join(map(str, row)) + " |")
    used = sum(1 for name in files if seen[name, "functions"])
    print(f"| **{len(files)} files imported, {used} with code that ran** | " + " | ".join(f"**{t}**" for t in totals) + " |")


if __name__ == "__main__":
    main()
