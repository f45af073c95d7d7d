"""A fake Lean that speaks the Lean REPL's JSON protocol, used only by tests/test_lean_mathlib.py.

The real Lean + Mathlib cannot be installed on this project's machines, so lean_mathlib.py's backends are
tested against this script. It answers like leanprover-community/repl (JSON objects separated by blank
lines, pretty-printed over several lines), with canned-but-computed answers driven by words in the text:
    wrong        -> an error message at that word        sorry       -> a sorry and "declaration uses 'sorry'"
    hang         -> never answers                        crash       -> the process exits
    cheat_axiom  -> `#print axioms` lists sorryAx        rlimit      -> an info message with our RLIMIT_AS
    BadImport    -> (in a header) an import error
Modes:  python fake_repl.py [--log FILE]     the REPL (stdin/stdout); with --log, every command is appended
                                             to FILE as "PID<TAB>JSON" (tests count header imports)
        python fake_repl.py --lake env lean --json FILE     a fake `lake` running `lean --json` on a file
"""
import json
import os
import re
import sys
import time

STANDARD = "[propext, Classical.choice, Quot.sound]"


def pos(text, i):
    line = text.count("\n", 0, i) + 1
    return {"line": line, "column": i - (text.rfind("\n", 0, i) + 1)}


def check_text(text, defined_before=""):
    """(messages, sorries) for Lean text; `#print axioms X` lines are answered from everything seen so far."""
    if "hang" in text:
        time.sleep(3600)
    if "crash" in text:
        sys.stdout.flush()
        os._exit(7)
    messages, sorries = [], []
    for m in re.finditer(r"wrong", text):
        messages.append({"severity": "error", "pos": pos(text, m.start()), "endPos": pos(text, m.end()),
                         "data": "unsolved goals\nx : ℝ\n⊢ x ^ 2 ≥ 0"})
    for m in re.finditer(r"\bsorry\b", text):
        sorries.append({"pos": pos(text, m.start()), "endPos": pos(text, m.end()), "goal": "⊢ False"})
        messages.append({"severity": "warning", "pos": pos(text, m.start()), "endPos": pos(text, m.end()),
                         "data": "declaration uses 'sorry'"})
    if "rlimit" in text:
        import resource
        messages.append({"severity": "info", "pos": pos(text, text.index("rlimit")), "endPos": None,
                         "data": f"RLIMIT_AS={resource.getrlimit(resource.RLIMIT_AS)[0]}"})
    for m in re.finditer(r"^#print axioms (\S+)", text, re.M):
        seen = defined_before + text[:m.start()]
        if not re.search(rf"theorem {re.escape(m.group(1))}\b", seen):
            data, sev = f"unknown constant '{m.group(1)}'", "error"
        elif "cheat_axiom" in seen:
            data, sev = f"'{m.group(1)}' depends on axioms: [propext, sorryAx, Classical.choice]", "info"
        elif "noaxioms" in seen:
            data, sev = f"'{m.group(1)}' does not depend on any axioms", "info"
        else:
            data, sev = f"'{m.group(1)}' depends on axioms: {STANDARD}", "info"
        messages.append({"severity": sev, "pos": pos(text, m.start()), "endPos": pos(text, m.end()), "data": data})
    return messages, sorries


def repl(log=None):
    envs = {}            # env id -> all text run to get there
    buf = ""
    for line in sys.stdin:
        if line.strip():
            buf += line
            continue
        if not buf.strip():
            continue
        req, buf = json.loads(buf), ""
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\t{json.dumps(req)}\n")
        before = ""
        if "env" in req:
            if req["env"] not in envs:
                print(json.dumps({"message": f"Unknown environment {req['env']}."}), end="\n\n", flush=True)
                continue
            before = envs[req["env"]]
            if "import" in req["cmd"]:
                print(json.dumps({"message": "imports are only allowed without env"}), end="\n\n", flush=True)
                continue
        messages, sorries = check_text(req["cmd"], before)
        if "BadImport" in req["cmd"]:
            messages.append({"severity": "error", "pos": {"line": 1, "column": 0}, "endPos": None,
                             "data": "unknown module prefix 'BadImport'"})
        env = len(envs)
        envs[env] = before + req["cmd"] + "\n"
        out = {"env": env}
        if messages:
            out["messages"] = messages
        if sorries:
            out["sorries"] = sorries
        print(json.dumps(out, indent=1, ensure_ascii=False), end="\n\n", flush=True)


def lake(args):
    """`lake env lean --json FILE`: Lean's messages, one JSON object a line; exit 1 when there are errors."""
    if args[:3] != ["env", "lean", "--json"]:
        print(f"fake lake: unsupported {args}", file=sys.stderr)
        return 2
    with open(args[3]) as f:
        text = f.read()
    messages, _ = check_text(text)
    for m in messages:
        print(json.dumps({"fileName": args[3], "caption": "", **m}))
    return 1 if any(m["severity"] == "error" for m in messages) else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lake"]:
        sys.exit(lake(sys.argv[2:]))
    repl(sys.argv[2] if sys.argv[1:2] == ["--log"] else None)
