"""The Mathlib world: checking whole-proof attempts against Lean 4 + Mathlib, with the mini world's interface
(check / check_many -> lean_env.Result(ok, status, messages), in order). The paper verifies with the Kimina Lean
Server, a pool of Lean REPLs. Three backends; scripts choose one with lean_env.load("repl:PROJECT") and the like:
    env = ReplPool(project="mathlib4", repl="repl/.lake/build/bin/repl", workers=8)   # a pool of Lean REPLs
    env = lean_kimina.KiminaClient(url="http://localhost:8000")                      # a running Kimina Lean Server
    env = LakeEnv(project="mathlib4")                                  # `lake env lean --json FILE` per attempt
Tested only against fakes (tests/test_lean_mathlib.py: a fake REPL and `lake`, a local HTTP server that answers as
the Kimina server's source of January 2026 does): Lean + Mathlib cannot be installed on this project's machines.
Watch the first real run.

Set-up on a GPU machine (as Kimina's setup.sh does; V = a Lean version tag both repositories have, e.g. v4.19.0):
    curl https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh -sSf | sh -s -- -y --default-toolchain V
    git clone --depth 1 -b V https://github.com/leanprover-community/repl && (cd repl && lake build)
    git clone --depth 1 -b V https://github.com/leanprover-community/mathlib4 && (cd mathlib4 && lake exe cache get)
(`cache get` downloads Mathlib's built .olean files; a project that `require`s REPL needs no repl=). Or run
project-numina/kimina-lean-server and pass its url.

Accepted only if the proof passes screen(), Lean reports no error and no sorry, and `#print axioms THEOREM` run
after it names nothing beyond propext, Classical.choice, Quot.sound. In the REPL that command runs in the env the
proof produced, so its answer is ours alone; in a file (Kimina, lake) it is our last line and every message of its
form placed after the proof must be clean (nothing skips that line without an error: `#`, `end` and commands are
screened out). A slow proof is "timeout" and a dead Lean "crash", for that item only.
"""
from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from fdlean import lean
from fdlean import screen as lean_screen
from fdlean.lean import DEFAULT_HEADER, LeanNotFound, Result, Task

STANDARD_AXIOMS = {"propext", "Classical.choice", "Quot.sound"}


class KiminaError(RuntimeError):
    """The Kimina server cannot be reached, or refuses our requests."""


# ----------------------------------------------------------------------------- screening and judging
def screen(task: Task, proof, max_chars: int = lean_screen.MAX_CHARS) -> str | None:
    """Why an attempt is rejected unread, or None: its statement's problem, else lean_screen.screen's rules (sorry /
    admit, declarations, commands, options, attributes, `#`, the theorem's own name) but not `x%` (`n%2` is
    arithmetic here). Tactic proofs are normal in Mathlib; `#` also rejects Mathlib's `#s` card notation."""
    bad = lean_screen.statement_problem(task)
    if bad:
        return f"statement: {bad}"
    kind, why = lean_screen.screen(task, proof.replace("%", " ") if isinstance(proof, str) else proof, max_chars)
    return why if kind == "reject" else None


def build(header: str, task: Task, proof: str, print_axioms: bool):
    """Lean text `header  statement proof  [#print axioms NAME]` and the proof's span in it: (first line, the
    proof's column there, last line), lines counted from 1 as Lean does."""
    stmt, proof = task.statement.rstrip(), proof.rstrip()
    if not stmt.endswith(":="):
        raise ValueError(f"statement of {task.name} must end with ':=': {task.statement!r}")
    before = (header.rstrip("\n") + "\n\n" if header.strip() else "") + stmt + " "
    line0 = before.count("\n") + 1
    span = (line0, len(before) - before.rfind("\n") - 1, line0 + proof.count("\n"))
    return before + proof + (f"\n\n#print axioms {task.name}\n" if print_axioms else ""), span


def _axioms(name: str, data: str):
    """The set of axioms a `#print axioms NAME` message lists, or None if it is not such a message."""
    m = re.fullmatch(rf"'(?:\S+\.)?{re.escape(name)}' (?:does not depend on any axioms|depends on axioms: \[(.*)\])",
                     data.strip(), re.S)
    return None if m is None else {a.strip() for a in (m.group(1) or "").split(",") if a.strip()}


def _fmt(m: dict, span) -> str:
    """"LINE:COL: severity: text", LINE:COL inside the proof (as in the mini world), else statement / end of proof."""
    (line0, col0, last), p = span, m.get("pos") or {}
    line, col = p.get("line", 0), p.get("column", 0)
    at = ("statement" if line < line0 else "end of proof" if line > last
          else f"{line - line0 + 1}:{col - col0 if line == line0 else col}")
    return f"{at}: {m.get('severity', 'error')}: {m.get('data', '')}"


def judge(name: str, response: dict, axiom_messages: list, span) -> Result:
    """Result from a REPL-format answer ({messages, sorries}) and the messages of our `#print axioms`."""
    msgs = [m for m in response.get("messages") or [] if isinstance(m, dict)]
    texts = [_fmt(m, span) for m in msgs]
    if any(m.get("severity") == "error" for m in msgs):
        return Result(False, "error", texts)
    if response.get("sorries") or any(re.search(r"declaration uses .sorry.", str(m.get("data"))) for m in msgs):
        return Result(False, "error", texts + ["end of proof: error: the proof uses sorry"])
    found = [a for a in (_axioms(name, str(m.get("data", ""))) for m in axiom_messages) if a is not None]
    if not found:
        return Result(False, "error", texts + [_fmt(m, span) for m in axiom_messages] +
                      ["end of proof: error: `#print axioms` did not confirm the theorem"])
    bad = ", ".join(sorted(set().union(*found) - STANDARD_AXIOMS))
    if bad:
        return Result(False, "error", texts + [f"end of proof: error: the proof depends on non-standard axioms: {bad}"])
    return Result(True, "ok", texts)


def judge_file(name: str, response: dict, span) -> Result:
    """judge() for a file ending with our `#print axioms` (Kimina, lake): messages of its form placed after the
    proof are ours (one `trace`d from inside the proof is not)."""
    msgs = response.get("messages") or []
    ours = [m for m in msgs if isinstance(m, dict) and _axioms(name, str(m.get("data", ""))) is not None
            and (m.get("pos") or {}).get("line", span[2] + 1) > span[2]]
    return judge(name, {**response, "messages": [m for m in msgs if m not in ours]}, ours, span)


class _Backend:
    """Shared: screening, then _check_all (default: _check on `workers` threads); close() / `with`.
    verifier_errors: how many attempts so far the checker could not judge (status "crash": a dead Lean, a failed
    server, a checker exception); they fail, and the run goes on (a trainer can log the count)."""
    workers, max_chars, header, verifier_errors = 1, lean_screen.MAX_CHARS, DEFAULT_HEADER, 0

    def check(self, task: Task, proof) -> Result:
        return self.check_many([(task, proof)])[0]

    def check_many(self, items) -> list[Result]:
        items = list(items)
        results = [Result(False, "rejected", [why]) if why else None
                   for why in (screen(task, proof, self.max_chars) for task, proof in items)]
        todo = [i for i, r in enumerate(results) if r is None]
        for i, r in zip(todo, self._check_all([items[i] for i in todo])):
            results[i] = r
        self.verifier_errors += sum(r.status == "crash" for r in results)
        return results

    def _check_all(self, items) -> list[Result]:
        with ThreadPoolExecutor(max(1, min(self.workers, len(items)))) as pool:
            return list(pool.map(lambda item: self._guarded(*item), items))

    def _guarded(self, task: Task, proof: str) -> Result:
        try:
            return self._check(task, proof)
        except (LeanNotFound, KiminaError):
            raise                     # set-up problems: the run cannot go on
        except Exception as e:        # anything else is this proof's problem: never let it stop the run
            return Result(False, "crash", [f"crash: the checker failed on this proof ({type(e).__name__}: {str(e)[:200]})"])

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _which(path: str, what: str) -> str:
    path = "~/.elan/bin/lake" if path == "lake" and not shutil.which(path) else path     # elan's default place
    found = shutil.which(os.path.abspath(os.path.expanduser(path)) if os.sep in path else path)
    if not found:
        raise LeanNotFound(f"no {what} at {path!r}; see mathlib/repl.py's docstring for the set-up commands")
    return os.path.abspath(found)


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # the whole group: our wrapper became lake, lake started the REPL
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# ----------------------------------------------------------------------------- a pool of Lean REPLs
class _Fail(Exception):
    """args: (kind: "timeout" | "crash", what happened)."""


class _Repl:
    """One REPL process (started on first use) and the header environments it has imported."""

    def __init__(self, argv, cwd, memory_mb):
        self.argv, self.cwd, self.memory_mb = argv, cwd, memory_mb
        self.proc, self.envs, self.uses, self.what = None, {}, 0, ""

    def send(self, request: dict, timeout: float) -> dict:
        if self.proc is None:
            cmd = lean.lean_command(self.argv[:1], self.argv[1:], self.memory_mb)   # RLIMIT_AS in the child
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                         start_new_session=True)
            self.lines, self.err = queue.Queue(), deque(maxlen=20)
            for stream, put in [(self.proc.stdout, self.lines.put), (self.proc.stderr, self.err.append)]:
                threading.Thread(target=lean.pump, args=(stream, put), daemon=True).start()
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n\n")
            self.proc.stdin.flush()
        except OSError:
            raise _Fail("crash", f"stopped ({self._why()})") from None
        deadline, buf = time.monotonic() + timeout, ""
        while True:               # answers: JSON objects (maybe over several lines), each ended by a blank line
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _Fail("timeout", f"did not answer within {timeout:g} s") from None
            if line is None:
                raise _Fail("crash", f"stopped ({self._why()})")
            if line.strip():
                buf += line if buf or line.lstrip().startswith("{") else ""    # skip noise between answers
            elif buf:
                try:
                    return json.loads(buf)
                except json.JSONDecodeError:
                    raise _Fail("crash", f"gave an unreadable answer {buf[:200]!r}") from None

    def _why(self) -> str:
        time.sleep(0.05)
        rc, tail = self.proc.poll(), [x.strip() for x in self.err if x and x.strip()]
        return "stdout closed" if rc is None else f"exit code {rc}" + (f": {tail[-1][:300]}" if tail else "")

    def stop(self):
        if self.proc is not None:
            _kill(self.proc)
            self.proc.stdin.close()
        self.proc, self.envs, self.uses = None, {}, 0


class ReplPool(_Backend):
    """`workers` REPL processes (`lake env REPL`, run in `project`; lake=None runs REPL directly). Each imports a
    header once ({"cmd": header} -> env), then per attempt sends {"cmd": statement + " " + proof, "env": that env}
    and {"cmd": "#print axioms NAME", "env": the env it produced}. A task's own header (e.g. "import Mathlib\\nopen
    Real") wins over `header`: one env per distinct header per process. repl: a path or a command list.
    recycle_after: restart a process after that many attempts (the REPL keeps every env it made). A slow proof
    ("timeout") kills its process group (lake + REPL), a dead process is a "crash"; the next attempt restarts it and
    re-imports its header. RLIMIT_AS = lean.LEAN_RESERVE_MB + memory_mb (mapped .oleans count; a guess)."""

    def __init__(self, project: str = ".", repl=None, lake: str | None = "lake", workers: int = 2,
                 timeout: float = 60.0, import_timeout: float = 600.0, memory_mb: int | None = 12288,
                 header: str = DEFAULT_HEADER, max_chars: int = lean_screen.MAX_CHARS, recycle_after: int = 500):
        self.project = os.path.abspath(os.path.expanduser(project))
        if repl is None:
            built = [os.path.join(self.project, p, ".lake/build/bin/repl") for p in (".lake/packages/REPL", "")]
            repl = next((p for p in built if os.path.isfile(p)), None) or shutil.which("repl")
            if repl is None:
                raise LeanNotFound(f"no REPL binary in {self.project}/.lake/packages/REPL or on PATH; pass repl=PATH "
                                   "(see mathlib/repl.py's docstring for the set-up commands)")
        argv = [repl] if isinstance(repl, str) else list(repl)
        argv = ([_which(lake, "lake"), "env"] if lake else []) + [_which(argv[0], "Lean REPL")] + argv[1:]
        self.workers, self.timeout, self.import_timeout = max(1, workers), timeout, import_timeout
        self.header, self.max_chars, self.recycle_after = header, max_chars, recycle_after
        self.repls = [_Repl(argv, self.project, memory_mb) for _ in range(self.workers)]
        self.free = queue.Queue()
        for r in self.repls:
            self.free.put(r)
        self.started = False          # has any header import worked? (if not, a failure is a set-up problem)
        self.bad_headers = {}         # header -> Lean's complaint, so a broken header is imported once
        self.version = f"Lean REPL pool: {' '.join(argv)} (in {self.project})"
        weakref.finalize(self, lambda rs: [r.stop() for r in rs], self.repls)

    def close(self):
        for r in self.repls:
            r.stop()

    def _check(self, task: Task, proof: str) -> Result:
        r = self.free.get()
        try:
            return self._run(r, task, proof)
        except _Fail as e:
            r.stop()                  # the next use restarts it and re-imports its header
            if not self.started:
                raise LeanNotFound(f"the Lean REPL ({self.version}) {e.args[1]} while importing the header") from None
            return Result(False, e.args[0], [f"{e.args[0]}: the Lean REPL {e.args[1]} while {r.what}"])
        finally:
            self.free.put(r)

    def _run(self, r: _Repl, task: Task, proof: str) -> Result:
        header = task.header or self.header
        text, span = build("", task, proof, print_axioms=False)
        if r.uses >= self.recycle_after:
            r.stop()
        if header in self.bad_headers:
            return Result(False, "error", [self.bad_headers[header]])
        r.what = "importing the header"
        if header not in r.envs:
            ans = r.send({"cmd": header}, self.import_timeout)
            errors = [str(m.get("data")) for m in ans.get("messages", []) if m.get("severity") == "error"]
            if "env" not in ans or errors:
                self.bad_headers[header] = f"header: error: {ans.get('message') or '; '.join(errors)}"
                return Result(False, "error", [self.bad_headers[header]])
            r.envs[header], self.started = ans["env"], True
        r.what = "checking the proof"
        ans = r.send({"cmd": text, "env": r.envs[header]}, self.timeout)
        r.uses += 1
        if "env" not in ans:                           # the REPL's own error answer: {"message": ...}
            return Result(False, "error", [f"statement: error: {ans.get('message', ans)}"])
        ours = []
        if not ans.get("sorries") and all(m.get("severity") != "error" for m in ans.get("messages", [])):
            r.what = "printing the axioms"
            ours = r.send({"cmd": f"#print axioms {task.name}", "env": ans["env"]}, self.timeout).get("messages", [])
        return judge(task.name, ans, ours, span)


# ----------------------------------------------------------------------------- lake env lean, one file per attempt
class LakeEnv(_Backend):
    """Each attempt is a file in a hidden folder of `project`, run there as `lake env lean --json FILE`; killed at
    the timeout ("timeout"), an exit code other than 0 / 1 is "crash"."""

    def __init__(self, project: str = ".", lake: str = "lake", timeout: float = 300.0, memory_mb: int | None = 12288,
                 workers: int = 2, header: str = DEFAULT_HEADER, max_chars: int = lean_screen.MAX_CHARS):
        self.project, self.lake = os.path.abspath(os.path.expanduser(project)), _which(lake, "lake")
        self.timeout, self.memory_mb, self.workers = timeout, memory_mb, max(1, workers)
        self.header, self.max_chars = header, max_chars
        self.tmp = tempfile.mkdtemp(prefix=".lean_mathlib_", dir=self.project)
        self.close = weakref.finalize(self, shutil.rmtree, self.tmp, True)
        self.version = f"{self.lake} env lean (in {self.project})"

    def _check(self, task: Task, proof: str) -> Result:
        text, span = build(task.header or self.header, task, proof, print_axioms=True)
        path = os.path.join(self.tmp, f"{task.name}_{secrets.token_hex(4)}.lean")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        cmd = lean.lean_command([self.lake], ["env", "lean", "--json", path], self.memory_mb)
        proc = subprocess.Popen(cmd, cwd=self.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                encoding="utf-8", errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            return Result(False, "timeout", [f"timeout: Lean did not finish within {self.timeout:g} s"])
        finally:
            os.remove(path)
        if proc.returncode not in (0, 1):
            why = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:300]
            return Result(False, "crash", [f"crash: Lean stopped ({why})"])
        return judge_file(task.name, {"messages": lean_screen.parse_messages(out)}, span)   # skips lake's chatter

