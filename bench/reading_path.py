"""How much code a reader follows through `python fd.py`: the lines that run, file by file.

One FD run (defaults: 1 step, 4 prompts, 4 held-out tasks) is traced in-process, imports included;
every line of the project's own files that executes is counted once (module-level code such as
imports, settings and `def` lines too; Lean runs in child processes; third-party code is not
counted). The project's files are every .py file of the traced checkout, in folders too, except
tests/, bench/, exercises/ and hidden folders. Two tables:

- the whole run: per file, the lines run inside functions, at module level, and the file's length;
- one FD step, everything it runs: the files whose code runs while `fd.fd_step` is on the call stack
  (or in a thread started while it is: Lean checks, feedback calls), in the order they are first
  entered, with the lines run in each during the step and each file's length;
- the reading path of one FD step: fd.py and the files of the functions `fd_step` itself calls (what a
  reader opens to follow one step of Section 3, one call deep), with their length.

Run it on another checkout (an older commit, say) to compare; the same script reads both layouts
(the flat one with `cli.py`, `model.py`, ... at the top, and the one with fdlean/, training/, ...):

    python -m small_prover.sft --steps 30 --n-tasks 400 --d-model 32 --n-layers 1 --n-heads 2 --d-ff 64 --out /tmp/tiny
    python bench/reading_path.py --model /tmp/tiny
    git worktree add /tmp/old a18ef2b && python bench/reading_path.py --model /tmp/tiny --repo /tmp/old

(In the flat layout the tiny model was built with `python sft.py --steps 30 ...`, the same flags.)
"""
import importlib
import inspect
import os
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = {"tests", "bench", "exercises"}   # top-level folders that are not the project's code


@dataclass
class Config:
    model: str = ""               # an HF-format model folder (a tiny one is enough: see the docstring)
    repo: str = HERE              # the checkout whose fd.py is traced (this one, or an older one in either layout)
    steps: int = 1                # FD optimizer steps traced
    prompts: int = 4              # statements per step


def project_files(repo: str) -> dict:
    """{absolute path: path relative to repo} of the checkout's own .py files, wherever they are: every
    folder but tests/, bench/, exercises/, hidden ones and virtual environments."""
    files = {}
    for top, dirs, names in os.walk(repo):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (top == repo and d in SKIPPED)
                         and not os.path.exists(os.path.join(top, d, "pyvenv.cfg")))
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(top, name)
                files[path] = files[os.path.realpath(path)] = os.path.relpath(path, repo)
    return files


def forget_project(repos):
    """Drop every imported module of these checkouts (either layout) from sys.modules, and their
    folders from sys.path, so that the traced checkout's modules are imported fresh, from it alone."""
    files = {}
    for repo in repos:
        files.update(project_files(repo))
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name != "__main__" and path and (path in files or os.path.realpath(path) in files):
            del sys.modules[name]  # imported again under the trace: module-level code counts too

    def ours(entry):  # the checkout or one of its folders (bench/, where this script lies), not a hidden .venv
        path = os.path.realpath(entry)
        for repo in map(os.path.realpath, repos):
            rest = os.path.relpath(path, repo)
            parts = rest.split(os.sep)
            if rest == "." or not (parts[0] == ".." or "site-packages" in parts or any(p[0] == "." for p in parts)):
                return True
        return False
    sys.path[:] = [p for p in sys.path if p == "" or not ours(p)]  # "" is the working folder: the traced repo
    importlib.invalidate_caches()


def trace_fd(repo: str, argv: list[str]):
    """Trace fd.train(fd.parse_args(argv)) of the checkout `repo`. Returns (seen, step, order, direct):
    seen {(relative path, "functions" | "module"): line numbers run} for the whole run (lines inside the
    functions that ran; module-level lines: imports, settings, `def` lines, class bodies);
    step {relative path: line numbers run with fd.fd_step on the stack (or in a thread started while it
    ran)}; order: those files in the order the step first ran a line of them; direct: fd.py and the files of the
    functions fd_step calls."""
    repo = os.path.abspath(repo)
    ours = project_files(repo)
    fd_path = os.path.join(repo, "fd.py")
    forget_project([HERE, repo])
    sys.path.insert(0, repo)
    os.chdir(repo)
    seen = defaultdict(set)   # (file, "functions" | "module") -> line numbers
    step = defaultdict(set)   # file -> line numbers run inside one FD step, files in the order first entered
    direct = {"fd.py": None}  # fd.py and the files of the functions fd_step calls, in order
    local = threading.local()  # .in_step: this thread was started while fd_step ran (a worker of the step)

    def in_step(frame) -> bool:
        while frame is not None:
            if frame.f_code.co_name == "fd_step" and frame.f_code.co_filename in (fd_path, os.path.realpath(fd_path)):
                return True
            frame = frame.f_back
        return False

    def thread_in_step() -> bool:
        flag = getattr(local, "in_step", None)
        if flag is None:  # this thread's first event: was fd_step running then (in the thread that started it)?
            me = threading.get_ident()
            flag = local.in_step = any(in_step(f) for t, f in sys._current_frames().items() if t != me)
        return flag

    def tracer(frame, event, arg):
        stepping = thread_in_step()
        name = ours.get(frame.f_code.co_filename)
        if name is None:
            return None  # not a file of the project: do not trace inside it
        caller = frame.f_back
        while caller is not None and caller.f_code.co_name in ("<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>"):
            caller = caller.f_back   # a comprehension inside fd_step is fd_step's own code
        if event == "call" and caller is not None and caller.f_code.co_name == "fd_step" \
                and caller.f_code.co_filename in (fd_path, os.path.realpath(fd_path)):
            direct.setdefault(name, None)
        # a function's code is "optimized" (fast locals); a module's or a class body's is not
        where = "functions" if frame.f_code.co_flags & inspect.CO_OPTIMIZED else "module"
        lines = seen[name, where]
        if stepping or in_step(frame):
            def local_tracer(frame, event, arg):
                if event == "line":
                    lines.add(frame.f_lineno)
                    step[name].add(frame.f_lineno)
                return local_tracer
        else:
            def local_tracer(frame, event, arg):
                if event == "line":
                    lines.add(frame.f_lineno)
                return local_tracer
        return local_tracer

    threading.settrace(tracer)
    sys.settrace(tracer)
    try:
        import fd
        fd.train(fd.parse_args(argv))
    finally:
        sys.settrace(None)
        threading.settrace(None)
    return seen, step, list(step), list(direct)


def length(repo: str, name: str) -> int:
    with open(os.path.join(repo, name)) as f:
        return sum(1 for _ in f)


def main():
    sys.path.insert(0, HERE)
    from fdlean import cli  # the CLI helper of the checkout this script lives in
    cfg = cli.parse(Config, prog="reading_path.py", description=__doc__.split("\n")[0])
    if not cfg.model:
        cli.fail("reading_path.py: --model: give a model folder (see --help)")
    repo = os.path.abspath(cfg.repo)
    if not os.path.isfile(os.path.join(repo, "fd.py")):
        cli.fail(f"reading_path.py: --repo {cfg.repo}: no fd.py there")
    out = tempfile.mkdtemp(prefix="reading-path-")
    argv = ["--model", os.path.abspath(cfg.model), "--steps", str(cfg.steps), "--prompts", str(cfg.prompts),
            "--eval-limit", "4", "--threads", "1", "--out", os.path.join(out, "run")]
    seen, step, order, direct = trace_fd(repo, argv)
    if os.path.realpath(repo) != os.path.realpath(HERE):  # the traced run must not have read this checkout's code
        mine = project_files(HERE)
        leaked = sorted({mine[f] for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None)) in mine})
        if leaked:
            print(f"warning: modules of {HERE} were imported while tracing {repo}: {', '.join(leaked)}", file=sys.stderr)

    print(f"\n`python fd.py` in {repo}: lines run per file (in functions, at module level) and its length\n")
    print("| file | lines run in functions | at module level | file lines |\n|---|---|---|---|")
    files = sorted({name for name, _ in seen}, key=lambda n: (-len(seen[n, "functions"]), n))
    totals = [0, 0, 0]
    for name in files:
        row = [len(seen[name, "functions"]), len(seen[name, "module"]), length(repo, name)]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"| {name} | " + " | ".join(map(str, row)) + " |")
    used = sum(1 for name in files if seen[name, "functions"])
    print(f"| **{len(files)} files imported, {used} with code that ran** | " + " | ".join(f"**{t}**" for t in totals) + " |")

    print(f"\nOne FD step, everything it runs (`fd.fd_step` on the stack, {cfg.steps} step(s) traced): the files in "
          "the order the step first enters them\n")
    print("| # | file | lines run in the step | file lines |\n|---|---|---|---|")
    lengths = {name: length(repo, name) for name in order}
    for i, name in enumerate(order, 1):
        print(f"| {i} | {name} | {len(step[name])} | {lengths[name]} |")
    print(f"| | **{len(order)} files, {sum(lengths.values())} lines in all** | "
          f"**{sum(len(v) for v in step.values())}** | **{sum(lengths.values())}** |")
    print("\nThe reading path of one FD step: fd.py and the files of the functions fd_step calls (one call deep)\n")
    print("| # | file | file lines |\n|---|---|---|")
    for i, name in enumerate(direct, 1):
        print(f"| {i} | {name} | {length(repo, name)} |")
    print(f"| | **{len(direct)} files to open** | **{sum(length(repo, n) for n in direct)}** |")


if __name__ == "__main__":
    main()
