"""The offline tutor: a rule-based critic that writes what a strong LLM would, for the mini world.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861),
Section 3, Appendix A.3 and C.3: the main runs ask Claude for 1 to 3 numbered "Do X" / "Don't do X"
items about the attempt, and the prompt ablation builds that prompt in four steps. With no LLM on a
laptop, this file writes each step's answer from the reference proof and Lean's messages (advice,
`level`): 1 a bare remark ("The attempt fails: h1 is not a conjunction."); 2 items in this attempt's
names: the reference's first rule ("Do start with Or.elim h1."), where an attempt that began right
leaves the reference ("Do apply h2 in the first part."), what Lean objected to; 3 self-contained
orders, rules over the statement's propositions (mini/rules.py); 4 the same, plus concision and
"read Lean's message" where they apply. Never the whole proof. feedback.load("tutor:N") frames them.

    from mini import tutor
    tutor.advice(task, "⟨h2.1, h1.1⟩", truncated=False, result=lean_result, level=2)
    # -> ["Do build the pair ⟨_, _⟩.", "Do apply h2 in the first part.", "Don't use h2.1: ..."]
"""
import re

from mini.rules import conclusion, general, orders, parse_term


def goal_head(statement):
    """The first word of the conclusion of `theorem n (binders) : GOAL :=`, e.g. "Iff"."""
    return (conclusion(statement).split() or [None])[0]


def _show(node):
    kind = node[0]
    if kind == "name":
        return node[1]
    if kind == "proj":
        return f"({_show(node[1])}).{node[2]}"
    if kind == "pair":
        return "⟨" + ", ".join(map(_show, node[1])) + "⟩"
    if kind == "fun":
        return f"fun {' '.join(node[1])} => {_show(node[2])}"
    return " ".join(_show(x) if x[0] in ("name", "proj", "pair") else f"({_show(x)})" for x in [node[1]] + node[2])


def rule(node, goal=None):
    """The first rule of a proof term as an imperative phrase, e.g. "start with Or.elim h1"."""
    kind = node[0]
    if kind == "fun":
        return f"introduce {' '.join(node[1])} with fun"
    if kind == "pair":
        first = node[1][0]
        if goal == "Exists" and first[0] == "name":
            return f"give the witness {first[1]} with ⟨{first[1]}, _⟩"
        blanks = "⟨" + ", ".join("_" for _ in node[1]) + "⟩"
        return f"build both directions {blanks}" if goal == "Iff" else f"build the pair {blanks}"
    if kind == "name":
        return f"use {node[1]}"
    if kind == "proj":   # (h2 h1).1: name the function, not the whole term
        fn = node[1]
        while fn[0] in ("app", "proj"):
            fn = fn[1]
        return f"apply {_show(fn)} first, then take .{node[2]}"
    head, args = node[1], node[2]
    if kind != "app" or head[0] != "name":
        return rule(head) if kind == "app" else f"start with {_show(node)}"
    name = head[1]
    if name in ("Or.inl", "Or.inr"):
        return f"prove the {'left' if name == 'Or.inl' else 'right'} side with {name}"
    if not (name[:1].isupper() or name in ("absurd", "trivial", "id", "mt")):   # a hypothesis
        return f"apply {name}"
    if len(args) > 1 and args[0][0] == "name":      # never the whole proof
        return f"start with {name} {args[0][1]}"
    return f"start with {name}"


def first_difference(ref, att):
    """Where an attempt that starts with the reference's first rule leaves it: the rule the
    reference uses at that place ("Do apply h2 in the first part.")."""
    where = ""
    while True:
        if where and rule(ref) != rule(att):
            return f"Do {rule(ref)} {where}."
        if ref[0] == "fun" and att[0] == "fun":
            ref, att = ref[2], att[2]
            continue
        if ref[0] == "pair" and att[0] == "pair" and len(ref[1]) == len(att[1]):
            pairs, place = list(zip(ref[1], att[1])), "in the {} part"
        elif ref[0] == "app" and att[0] == "app" and ref[1] == att[1]:
            if len(ref[2]) != len(att[2]):
                return f"Do give {_show(ref[1])} {len(ref[2])} arguments {where}".rstrip() + "."
            pairs, place = list(zip(ref[2], att[2])), "in argument {} of " + _show(ref[1])
        else:
            return None
        i = next((i for i, (r, a) in enumerate(pairs) if r != a), None)
        if i is None:
            return None
        ordinal = ["first", "second", "third", "fourth"][min(i, 3)] if "part" in place else i + 1
        (ref, att), where = pairs[i], place.format(ordinal)


def _as_written(term, attempt):
    # Lean prints h1.1 as h1.left (or h1.mp): show the spelling the attempt used.
    alt = re.sub(r"\.(left|mp)\b", ".1", re.sub(r"\.(right|mpr)\b", ".2", term))
    return alt if alt in attempt and term not in attempt else term


_ERRORS = [  # (pattern over one Lean message, "Don't" item from the match and the attempt)
    (r"Unknown identifier `([^`]+)`", lambda m, a: f"Don't use {m[1]}: {m[1].split('.')[0]} is not a hypothesis here."),
    (r"Invalid (?:projection|field notation).*?\n\s*(\S+)\n", lambda m, a: _bad_projection(m[1], a)),
    (r"Invalid field `(\w+)`.*?expression\n\s*(\S+)\n", lambda m, a: f"Don't use {m[2]}.{m[1]}: {m[2]} has no field {m[1]}."),
    (r"(?:Type|Application type) mismatch.*?\n\s*(.+?)\nhas type\n\s*(.+?)\nbut is expected to have type\n\s*(.+?)(?:\n|$)",
     lambda m, a: _mismatch(_as_written(m[1], a), m[2], m[3])),
    (r"notation: The expected type `([^`]+)` has more than one", lambda m, a: f"Don't build a pair for {m[1]}: use Or.inl or Or.inr."),
    (r"notation: The expected type `([^`]+)` is not", lambda m, a: f"Don't build a pair for {m[1]}."),
    (r"Insufficient number of fields", lambda m, a: "Don't leave out a part of ⟨_, _⟩."),
    (r"^empty proof$", lambda m, a: "Don't leave the proof empty."),
    (r"Function expected|Unknown constant `CoeFun`", lambda m, a: "Don't apply a proof that is not an implication."),
    (r"unexpected (?:token|end of input)", lambda m, a: "Don't leave a bracket open: close every ( and ⟨."),
]


def _bad_projection(name, attempt):
    used = (re.findall(re.escape(name) + r"\.\w+", attempt) or [name + ".1"])[0]
    kind = "an iff" if used.endswith(("mp", "mpr")) else "a conjunction"
    return f"Don't use {used}: {name} is not {kind}."


def _mismatch(term, has, want):
    if term.startswith("fun "):
        return "Don't start with fun: the goal is not an implication."
    if has.endswith("→ " + want):
        return f"Don't stop at {term}: it needs one more argument."
    if "?m" in has + want or len(has + want) > 40:   # unreadable or long types: leave them out
        return f"Don't use {term} there: its type does not fit."
    return f"Don't use {term} there: it proves {has}, not {want}."


def error_item(attempt, result):
    """A "Don't ..." item from the first Lean message the tutor understands, else None."""
    for msg in result.messages:   # Lean's variants of one message, made alike first
        msg = re.sub(r"The last\n\s*(.+?)\nargument ", r"The argument\n  \1\n", msg)
        msg = re.sub(r"\nof sort `\w+` ", "\n", msg)
        for pattern, item in _ERRORS:
            m = re.search(pattern, msg, re.S)
            if m:
                text = item(m, attempt)
                return text if len(text) <= 90 else text.split(":")[0] + "."   # long types: drop them
    return None


def advice(task, text, truncated, result, level=4, candidates=()):
    """The tutor's feedback on one attempt at the paper's four prompt levels (Appendix A.3, C.3), as items
    (level 1: one unnumbered remark). 1: a bare remark on what went wrong, in the attempt's names. 2: 1-3
    items about this attempt: the reference's first rule, where the attempt leaves the reference, what Lean
    objected to. 3: 1-3 self-contained orders over the statement's shapes (rules.orders: the reference's rules,
    outermost first, and the rule Lean's complaint breaks): no hypothesis names, no proof. 4: as 3, plus
    "be concise" when the attempt was cut off and "read Lean's message" when a multi-turn attempt repeated a
    rejected candidate. Never the proof at any level. text: the proof text; candidates: a multi-turn
    attempt's candidates, in order."""
    if level not in (1, 2, 3, 4):
        raise ValueError(f"tutor level must be 1, 2, 3 or 4, not {level!r}")
    if result.ok:
        return ["The attempt is right."] if level == 1 else ["Do keep the same proof."]
    if not (task.solution or "").strip():
        raise ValueError(f"tutor: task {task.name} has no reference solution")
    error = error_item(text, result)
    if level == 1:
        why = error.split(": ", 1)[1] if error and ": " in error else None
        return [f"The attempt fails: {why}" if why else "The attempt does not prove the goal."]
    goal = goal_head(task.statement)
    try:
        ref = parse_term(task.solution)
    except ValueError:             # not a mini-world term (e.g. a tactic proof)
        ref = None
    if level == 2:
        found = [f"Do {rule(ref, goal)}." if ref else f"Do start with {task.solution.split()[0]}."]
        try:
            att = parse_term(text)
            if ref is not None and rule(att, goal) == rule(ref, goal):
                found.append(first_difference(ref, att))
        except ValueError:
            pass
        return [x for x in found + [error] if x][:3]
    try:
        rules = orders(task.statement, task.solution)
    except ValueError:   # not a mini-world term (e.g. a tactic proof)
        rules = []
    rules = rules or ["Do prove the goal from the hypotheses of the statement."]
    extra = [general(error)] if error else []
    if level == 4 and truncated:
        extra.append("Do write a shorter proof.")
    if level == 4 and text in list(candidates)[:-1]:
        extra.append("Don't repeat a rejected proof: read Lean's message first.")
    return rules[:max(1, 3 - len(extra))] + extra[:2]     # at least the first rule, at most 3 items
