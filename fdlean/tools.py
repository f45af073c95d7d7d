"""The tool side of the agentic attempt: a chat model writes, compiles and searches, then answers with its file.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3 and
Appendix A.2. In ONE generation a chat model may call three tools: `lean_write_file` (write the Lean file: the
theorem as given, then a proof), `lean_check_file` (compile it: errors, warnings or success) and `rg_in_mathlib`
(regex search in Mathlib's sources). At a tool call the generation stops, the tools' outputs are appended in the
chat template's tool role, and the generation resumes. The last file written is the answer.

    from fdlean import tools, turns
    ws = tools.Workspace(task, lean_env.load("mini"), mathlib_dir="~/mathlib4")
    prompt = tokenizer.apply_chat_template(messages, tools=tools.TOOLS, tokenize=False, add_generation_prompt=True)
    text = generate(prompt)                                   # stops at a tool call or at the end of the turn
    calls = tools.parse_calls(text)                           # [Call(name, arguments, error)], [] when none
    outputs = [ws.run(c) for c in calls]                      # one output text per call, never raises
    messages.append({"role": "assistant", "content": text})
    prompt = tokenizer.apply_chat_template(messages, tools=tools.TOOLS, tokenize=False)        # the turn, closed
    prompt += turns.tool_messages(tokenizer, messages, outputs, tools.TOOLS)                 # ... and generate again
    ws.answer, ws.result                                      # the last written file's proof, the last check's Result

Calls are in Qwen3 / Qwen2.5 (Hermes) format, the one their chat templates teach:
    <tool_call>
    {"name": "lean_write_file", "arguments": {"content": "theorem t ... := by\\n  simp"}}
    </tool_call>
Test: python -m pytest -q tests/test_lean_tools.py
"""
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from fdlean import lean

TOOLS = [
    {"type": "function", "function": {
        "name": "lean_write_file",
        "description": ("Write the whole Lean 4 file, replacing what was written before: the theorem statement exactly "
                        "as given (after the header, if any), then its proof. The last file written is the answer."),
        "parameters": {"type": "object", "properties": {
            "content": {"type": "string", "description": "the complete Lean file"}}, "required": ["content"]}}},
    {"type": "function", "function": {
        "name": "lean_check_file",
        "description": "Compile the written Lean file; returns Lean's errors and warnings, or says the proof is accepted.",
        "parameters": {"type": "object", "properties": {}, "required": []}}},
    {"type": "function", "function": {
        "name": "rg_in_mathlib",
        "description": ("Search Mathlib's Lean sources with a regular expression (ripgrep syntax); returns matching "
                        "lines as `path:line: text`."),
        "parameters": {"type": "object", "properties": {
            "pattern": {"type": "string", "description": "a regular expression, e.g. `theorem Nat\\.add_comm`"}},
            "required": ["pattern"]}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}
ACCEPTED = "no errors: the proof is accepted"


@dataclass
class Call:
    name: str                     # the tool's name ("" when it could not be read)
    arguments: dict | None        # its arguments; None when the call is malformed
    error: str | None = None      # why the call is malformed: the text the model gets back instead of an output


def _problem(name, arguments) -> str | None:
    """Why (name, arguments) is not a valid call of one of TOOLS, or None: checked against the JSON schema."""
    if name not in SCHEMAS:
        return f"unknown tool {name!r}; the tools are {', '.join(SCHEMAS)}"
    if not isinstance(arguments, dict):
        return f"{name}: arguments must be a JSON object"
    schema = SCHEMAS[name]
    for key in schema["required"]:
        if key not in arguments:
            return f"{name}: missing argument {key!r}"
    for key, value in arguments.items():
        if key not in schema["properties"]:
            return f"{name}: unexpected argument {key!r}"
        kind = schema["properties"][key]["type"]
        if not isinstance(value, JSON_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool)):
            return f"{name}: argument {key!r} must be a {kind}"
    return None


def _read_call(body: str) -> Call:
    """One call from the JSON between the tags: {"name": ..., "arguments": {...} or a JSON string of it}."""
    try:
        obj = json.loads(body)
    except ValueError as e:
        return Call("", None, f"the tool call is not valid JSON ({e})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return Call("", None, 'a tool call is a JSON object {"name": ..., "arguments": {...}}')
    name, arguments = obj["name"], obj.get("arguments", {})
    if arguments is None:                  # `"arguments": null` for a tool without arguments
        arguments = {}
    if isinstance(arguments, str):         # OpenAI-style messages carry arguments as a JSON string; Qwen's template
        try:                               # prints a string as is, so a model may have learnt either form
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as e:
            return Call(name, None, f"{name}: arguments are not valid JSON ({e})")
    why = _problem(name, arguments)
    return Call(name, None, why) if why else Call(name, arguments)


def parse_calls(text: str) -> list[Call]:
    """The tool calls in one assistant generation, in order; a malformed one is a Call with `error` set."""
    calls, at = [], 0
    while (start := text.find("<tool_call>", at)) >= 0:
        end = text.find("</tool_call>", start)
        if end < 0:                        # the generation stopped inside a call: the length limit, or a bad stop
            calls.append(Call("", None, "unclosed <tool_call> tag: end each call with </tool_call>"))
            break
        calls.append(_read_call(text[start + len("<tool_call>"):end].strip()))
        at = end + len("</tool_call>")
    return calls


def _spaced(text: str) -> str:
    # a regex for `text` up to whitespace: each run of spaces / newlines matches any other run
    return r"\s+".join(re.escape(w) for w in text.split())


class Workspace:
    """One attempt's state: the written file, the last check's Result, and the tools that act on them."""

    def __init__(self, task, env, mathlib_dir=None, result_chars=2000, max_matches=20, rg_timeout=10.0):
        self.task, self.env, self.result_chars, self.max_matches = task, env, result_chars, max_matches
        self.mathlib_dir = os.path.expanduser(mathlib_dir) if mathlib_dir else None
        self.rg_timeout = rg_timeout
        self.file: str | None = None       # the last file written (None: nothing yet)
        self.answer = ""                   # its proof: the text after the statement's `:=`
        self.result = None                 # the last lean_check_file's lean_env.Result
        # the file must be the task's statement, optionally after its header; the rest is the proof
        head = rf"(?:{_spaced(task.header)}\s+)?" if task.header.strip() else ""
        self._statement = re.compile(rf"\s*{head}{_spaced(task.statement)}")

    def run(self, call: Call) -> str:
        """Execute one call; its output text (an error text when the call cannot run), at most result_chars long."""
        why = call.error or _problem(call.name, call.arguments)
        if why:
            return self._cap(f"error: {why}")
        try:
            out = getattr(self, call.name)(**call.arguments)
        except Exception as e:   # e.g. a remote verifier's network failure: one tool output, not a lost batch
            out = f"error: {call.name} failed ({type(e).__name__}: {e})"
        return self._cap(out)

    def _cap(self, text: str) -> str:
        return text if len(text) <= self.result_chars else text[:self.result_chars].rstrip() + " ..."

    # ---- the three tools: each returns the text the model reads
    def lean_write_file(self, content: str) -> str:
        m = self._statement.match(content)
        if not m:   # refused, not written: the answer must prove THIS theorem, and the last good file stays
            head = "the header, then " if self.task.header.strip() else ""
            return (f"error: the file was not written: it must start with {head}the theorem exactly as given:\n"
                    f"{self.task.statement}")
        self.file, self.answer = content, content[m.end():].strip()
        lines = content.count("\n") + 1
        return f"wrote the file ({lines} line{'s' * (lines > 1)}); lean_check_file compiles it"

    def lean_check_file(self) -> str:
        if self.file is None:
            return "error: no file to check: write it first with lean_write_file"
        if not self.answer:
            return "error: the file has no proof after the statement's `:=`"
        self.result = self.env.check_many([(self.task, self.answer)])[0]
        if self.result.ok:   # warnings too (e.g. an unused hypothesis): the paper's tool reports them
            return ACCEPTED + "".join("\n" + m for m in self.result.messages)
        return lean.lean_output(self.result, self.result_chars)

    def rg_in_mathlib(self, pattern: str) -> str:
        if not self.mathlib_dir or not os.path.isdir(self.mathlib_dir):
            return "error: no Mathlib sources to search here"
        found = _rg(pattern, self.mathlib_dir, self.rg_timeout) if shutil.which("rg") else _grep(pattern, self.mathlib_dir)
        if isinstance(found, str):
            return f"error: {found}"
        if not found:
            return f"no match for {pattern!r}"
        lines = [f"{path}:{n}: {text.strip()}" for path, n, text in found[:self.max_matches]]
        if len(found) > self.max_matches:
            lines.append(f"... {len(found) - self.max_matches} more")
        return "\n".join(lines)


# ---- search: ripgrep when installed, else the same search in Python. Both list matches as (path relative to the
# folder, line number, line), files in path order, *.lean only, hidden files and folders skipped, ignore files and
# symbolic links not followed; an error is a str. Only rg has a time limit: its regexes run in linear time, but
# Python's backtrack, and a thread cannot be stopped (install ripgrep wherever Mathlib is searched).
def _rg(pattern: str, folder: str, timeout: float):
    cmd = ["rg", "--no-heading", "--line-number", "--with-filename", "--null", "--color", "never", "--no-ignore",
           "--no-config", "--sort", "path", "--glob", "*.lean", "--regexp", pattern, "."]
    try:
        p = subprocess.run(cmd, cwd=folder, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the search took over {timeout:g} s: use a more specific pattern"
    if p.returncode not in (0, 1):        # 1: no match; 2: a bad regex, or another error
        return "rg: " + " ".join(p.stderr.decode("utf-8", "replace").split())[:300]
    found = []
    for line in p.stdout.decode("utf-8", "replace").split("\n"):   # not splitlines(): a line may hold \r, \x0c, ...
        path, _, rest = line.partition("\0")          # --null: the path ends with NUL, whatever it holds
        n, _, text = rest.partition(":")
        if n.isdigit():                               # (rg prints nothing else with these flags; be safe)
            found.append((path.removeprefix("./"), int(n), text))
    return found


def _grep(pattern: str, folder: str):
    try:
        regex = re.compile(pattern)
    except re.error as e:
        return f"invalid regular expression: {e}"
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.relpath(os.path.join(root, f), folder) for f in files
                  if f.endswith(".lean") and not f.startswith(".") and not os.path.islink(os.path.join(root, f))]
    found = []
    for path in sorted(paths, key=lambda p: p.split(os.sep)):   # rg --sort path: name order inside each folder
        with open(os.path.join(folder, path), encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
        if "\0" in text:                                           # rg skips binary files (a NUL byte)
            continue
        lines = text.split("\n")                                   # rg's lines end at "\n" only
        if lines[-1] == "":                                        # a final newline ends the last line
            lines.pop()
        found += [(path, i, line) for i, line in enumerate(lines, 1) if regex.search(line)]
    return found
