"""What model-written text may reach Lean: the screen in front of every verifier (mini world and Mathlib).

    kind, why = lean_screen.screen(task, proof)    # "reject" | "error" | "batch" | "solo", and why
    lean_screen.statement_problem(task)            # why a task's statement cannot be checked, or None
    lean_screen.parse_messages(lean_json_output)   # Lean's --json messages, malformed lines skipped

Model-written Lean is untrusted code. A proof is read into words the way Lean reads identifiers (so `endλ` is the
keyword `end`, and `0b1end` a number then `end`); every command keyword, option, attribute, `#` command, sorry and
the theorem's own name are rejected. Of the rest, only plain terms made of a small whitelist of tokens may share a
Lean process with other proofs ("batch"); anything else is checked alone ("solo"). A statement is one theorem with
no comment, command or second `:=`, so a task file cannot carry its own proof.
"""
from __future__ import annotations

import json
import re

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


def words(text: str) -> set[str]:
    """Every identifier-like word Lean could read in `text`, and more: dotted names are split, and in a run that
    starts with a digit (a number: `0b1end` is `0b1` then `end`) every later identifier start is tried."""
    words = set()
    for run in RUN.findall(text):
        starts = [0] if re.match(f"[{ID_FIRST}]", run) else [m.start() for m in re.finditer(f"[{ID_FIRST}]", run)]
        words.update(run[i:] for i in starts)
    return words


def screen(task, proof, max_chars: int = MAX_CHARS, known: set[str] = frozenset()) -> tuple[str, str]:
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
    if re.match(r"\s*(theorem|lemma|example)\b", proof):  # model.proof_text keeps only a restatement that differs
        return "reject", "the answer restates the theorem with a different statement; prove the statement as given"
    for bad, why in [("#", "`#` commands are not allowed"), ("@[", "attributes are not allowed")]:
        if bad in proof:
            return "reject", why
    if re.search(r"\w%", proof):
        return "reject", "`%` term elaborators are not allowed"
    found = words(proof)
    if task.name in found:
        return "reject", f"the proof may not mention the theorem's own name `{task.name}`"
    bad = sorted(found & FORBIDDEN)
    if bad:
        what = "sorry/admit" if {"sorry", "admit", "sorryAx"} & set(bad) else "new declarations, commands or options"
        return "reject", f"`{bad[0]}` is not allowed in a proof ({what})"
    kind = _batchable(task, proof, known)
    if kind == "unbalanced":
        return "error", "unexpected end of proof: its brackets ( ) ⟨ ⟩ { } do not balance (found before running Lean)"
    return kind, ""


def _batchable(task, proof: str, known: set[str] = frozenset()) -> str:
    """"batch": only whitelisted tokens and balanced brackets, so the proof cannot leave its own item;
    "unbalanced": whitelisted tokens, brackets off; "solo": anything else."""
    pos, depth = 0, []
    known = set(known) | ((words(task.statement) | words(task.header)) - FORBIDDEN - SHORT_KEYWORDS)
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


def statement_problem(task) -> str | None:
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
    bad = sorted(words(s[m.end(1):]) & FORBIDDEN)
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
