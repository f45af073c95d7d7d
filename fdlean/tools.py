"""The tool side of the agentic attempt: a chat model writes, compiles and searches, then answers with its file.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4.1 and
Appendix A.2. In ONE attempt a chat model may call three tools: `lean_write_file` (write the Lean file: the
theorem as given, then a proof), `lean_check_file` (compile it: errors, warnings or success) and `rg_in_mathlib`
(regex search in Mathlib's sources). At a tool call the generation stops, the tools' outputs are appended in the
chat template's tool role, and the generation resumes. The last file written is the answer.

    from fdlean import agent, tools
    ws = tools.Workspace(task, lean_env.load("mini"), mathlib_dir="~/mathlib4")
    prompt = tokenizer.apply_chat_template(messages, tools=tools.TOOLS, tokenize=False, add_generation_prompt=True)
    text = generate(prompt, stop=tools.CALL_END)              # stops at a tool call or at the end of the turn
    calls = tools.parse_calls(text, ws.max_calls)             # [Call(name, arguments, error)], [] when none
    outputs = [ws.run(c) for c in calls]                      # one output text per call, never raises
    messages.append({"role": "assistant", "content": text})
    prompt = tokenizer.apply_chat_template(messages, tools=tools.TOOLS, tokenize=False)        # the turn, closed
    prompt += agent.tool_messages(tokenizer, messages, outputs, tools.TOOLS)                 # ... and generate again
    ws.answer, ws.result                                      # the last written file's proof, the last check's Result

Calls are in Qwen3 / Qwen2.5 (Hermes) format, the one their chat templates teach:
    <tool_call>
    {"name": "lean_write_file", "arguments": {"content": "theorem t ... := by\\n  simp"}}
    </tool_call>

Model-written calls are untrusted (a policy under RL finds any exploit that pays), so every door has a limit:
parse_calls never raises (whatever the text: a malformed call is a Call with `error`, its text the model's
answer), reads at most MAX_CALLS calls per generation (the rest get one error result, never a run) and refuses
JSON nested deeper than MAX_DEPTH; Workspace.run never raises and returns at most `result_chars` characters; a
search runs in a child process (rg, or Python's `re` when rg is not installed) that is killed at its deadline
(`rg_timeout`) or once its output, read as it comes, reaches `search_bytes`; it lists `max_matches` matches of
at most `match_chars` characters each. The defaults are the constants below.
Test: python -m pytest -q tests/test_lean_tools.py tests/test_tools_fuzz.py
"""
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
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
CALL_END = "</tool_call>"  # a call's last text: the generation stops there (agent.py), the call runs


# ---- the limits on what one model-written call may cost (Workspace's defaults)
MAX_CALLS = 8              # tool calls run per generation; the calls past it get one error result, not a run
RESULT_CHARS = 2000        # one tool output, as the model reads it
MAX_MATCHES = 20           # search matches listed (the rest are counted)
MATCH_CHARS = 300          # one listed match's text
SEARCH_BYTES = 1 << 20     # a search's output read at most; then it is stopped, its count given as a lower bound
SEARCH_TIMEOUT = 10.0      # seconds a search may run, rg or Python
PATTERN_CHARS = 1000       # the longest search pattern (it goes on a command line)
FILE_CHARS = 100_000       # the longest file lean_write_file writes
MAX_DEPTH = 64             # the deepest nesting of [ and { in a call's JSON (json.loads recurses)


@dataclass
class Call:
    name: str                     # the tool's name ("" when it could not be read)
    arguments: dict | None        # its arguments; None when the call is malformed
    error: str | None = None      # why the call is malformed: the text the model gets back instead of an output


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def _short(value, limit: int = 80) -> str:
    """Model-written text quoted in an error message, cut first: the message stays short whatever the text."""
    if not isinstance(value, str):
        return type(value).__name__
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def _problem(name, arguments) -> str | None:
    """Why (name, arguments) is not a valid call of one of TOOLS, or None: checked against the JSON schema."""
    if not isinstance(name, str) or name not in SCHEMAS:
        return f"unknown tool {_short(name)}; the tools are {', '.join(SCHEMAS)}"
    if not isinstance(arguments, dict):
        return f"{name}: arguments must be a JSON object"
    schema = SCHEMAS[name]
    for key in schema["required"]:
        if key not in arguments:
            return f"{name}: missing argument {key!r}"
    for key, value in arguments.items():
        if key not in schema["properties"]:
            return f"{name}: unexpected argument {_short(key)}"
        kind = schema["properties"][key]["type"]
        if not isinstance(value, JSON_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool)):
            return f"{name}: argument {key!r} must be a {kind}"
    return None


# a JSON string (closed, or running to the end: every start matches at once, so the scan is linear) or a bracket
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{}]', re.S)


def _loads(text: str):
    """json.loads, after refusing nesting deeper than MAX_DEPTH: json recurses once per level, so deep nesting
    raises RecursionError (or, under a raised recursion limit, overflows the C stack)."""
    depth = 0
    for m in _TOKEN.finditer(text):
        bracket = m.group()
        if bracket[0] != '"':
            depth += 1 if bracket in "[{" else -1
            if depth > MAX_DEPTH:
                raise ValueError(f"nested over {MAX_DEPTH} levels")
    return json.loads(text)


def _read_call(body: str) -> Call:
    """One call from the JSON between the tags: {"name": ..., "arguments": {...} or a JSON string of it}.
    Never raises: whatever the text makes the parser raise is that call's error."""
    try:
        return _call_of(body)
    except Exception as e:   # e.g. RecursionError or MemoryError on text we did not foresee: one bad call, no more
        return Call("", None, f"the tool call could not be read ({type(e).__name__})")


def _call_of(body: str) -> Call:
    try:
        obj = _loads(body)
    except ValueError as e:
        return Call("", None, f"the tool call is not valid JSON ({_cut(str(e), 200)})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return Call("", None, 'a tool call is a JSON object {"name": ..., "arguments": {...}}')
    name, arguments = obj["name"], obj.get("arguments", {})
    if arguments is None:                  # `"arguments": null` for a tool without arguments
        arguments = {}
    if isinstance(arguments, str):         # OpenAI-style messages carry arguments as a JSON string; Qwen's template
        try:                               # prints a string as is, so a model may have learnt either form
            arguments = _loads(arguments) if arguments.strip() else {}
        except ValueError as e:
            return Call(name, None, f"{name[:80]}: arguments are not valid JSON ({_cut(str(e), 200)})")
    why = _problem(name, arguments)
    return Call(name, None, why) if why else Call(name, arguments)


def parse_calls(text: str, max_calls: int | None = MAX_CALLS) -> list[Call]:
    """The tool calls in one assistant generation, in order; a malformed one is a Call with `error` set. At most
    `max_calls` calls are read (None: all); when more follow, one more Call stands for them, with an error saying
    they were not run. Never raises: anything the text makes the parser raise becomes a Call with `error`."""
    try:
        return _calls(text, max_calls)
    except Exception as e:   # e.g. text that is not a str: one bad "call", never a lost batch
        return [Call("", None, f"the tool calls could not be read ({type(e).__name__})")]


def _calls(text: str, max_calls: int | None) -> list[Call]:
    if not isinstance(text, str):
        raise TypeError(f"a generation is text, not {type(text).__name__}")
    calls, at = [], 0
    while (start := text.find("<tool_call>", at)) >= 0:
        if max_calls is not None and len(calls) >= max_calls:   # counted, not read: parsing too costs
            rest = text.count("<tool_call>", start)
            calls.append(Call("", None, f"{rest} more tool call{'s' * (rest > 1)} not run: at most {max_calls} "
                                        "per generation"))
            break
        end = text.find(CALL_END, start)
        if end < 0:                        # the generation stopped inside a call: the length limit, or a bad stop
            calls.append(Call("", None, "unclosed <tool_call> tag: end each call with </tool_call>"))
            break
        calls.append(_read_call(text[start + len("<tool_call>"):end].strip()))
        at = end + len(CALL_END)
    return calls


def _spaced(text: str) -> str:
    # a regex for `text` up to whitespace: each run of spaces / newlines matches any other run
    return r"\s+".join(re.escape(w) for w in text.split())


class Workspace:
    """One attempt's state: the written file, the last check's Result, and the tools that act on them.

    Limits (defaults: the constants above): result_chars (2000) characters per tool output; max_calls (8) calls run
    per generation (parse_calls' limit: pass ws.max_calls); file_chars (100,000) characters per written file;
    a search: rg_timeout (10 s, rg or Python), pattern_chars (1000), max_matches (20) listed of at most match_chars
    (300) characters each, its output read up to search_bytes (1 MiB) and the search stopped there."""

    def __init__(self, task, env, mathlib_dir=None, result_chars=RESULT_CHARS, max_matches=MAX_MATCHES,
                 rg_timeout=SEARCH_TIMEOUT, max_calls=MAX_CALLS, match_chars=MATCH_CHARS, search_bytes=SEARCH_BYTES,
                 pattern_chars=PATTERN_CHARS, file_chars=FILE_CHARS):
        self.task, self.env, self.result_chars, self.max_matches = task, env, result_chars, max_matches
        self.mathlib_dir = os.path.expanduser(mathlib_dir) if mathlib_dir else None
        self.rg_timeout, self.max_calls, self.match_chars = rg_timeout, max_calls, match_chars
        self.search_bytes, self.pattern_chars, self.file_chars = search_bytes, pattern_chars, file_chars
        self.file: str | None = None       # the last file written (None: nothing yet)
        self.answer = ""                   # its proof: the text after the statement's `:=`
        self.result = None                 # the last lean_check_file's lean_env.Result
        # the file must be the task's statement, optionally after its header; the rest is the proof
        head = rf"(?:{_spaced(task.header)}\s+)?" if task.header.strip() else ""
        self._statement = re.compile(rf"\s*{head}{_spaced(task.statement)}")

    def run(self, call: Call) -> str:
        """Execute one call; its output text (an error text when the call cannot run), at most result_chars long
        and valid UTF-8. Never raises: a tool that fails (a remote verifier's network error, a call of the wrong
        shape) gives an error text."""
        try:
            why = call.error or _problem(call.name, call.arguments)
            out = f"error: {why}" if why else getattr(self, call.name)(**call.arguments)
            if not isinstance(out, str):
                raise TypeError(f"the tool gave {type(out).__name__}, not text")
        except Exception as e:   # one tool output, not a lost batch
            name = getattr(call, "name", "")
            name = name[:80] if isinstance(name, str) else "the call"
            out = f"error: {name} failed ({type(e).__name__}: {_cut(str(e), 300)})"
        return self._cap(out)

    def _cap(self, text: str) -> str:
        # cut, and made valid UTF-8: a lone surrogate (a JSON escape like \ud800, quoted back) cannot be tokenized
        return _cut(text, self.result_chars).encode("utf-8", "replace").decode("utf-8")

    # ---- the three tools: each returns the text the model reads
    def lean_write_file(self, content: str) -> str:
        if len(content) > self.file_chars:
            return f"error: the file was not written: it has {len(content)} characters, over {self.file_chars}"
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
            out = ACCEPTED
            for m in self.result.messages:
                if len(out) > self.result_chars:   # joined only up to the cap (run cuts it there)
                    break
                out += "\n" + m
            return out
        return lean.lean_output(self.result, self.result_chars)

    def rg_in_mathlib(self, pattern: str) -> str:
        if not self.mathlib_dir or not os.path.isdir(self.mathlib_dir):
            return "error: no Mathlib sources to search here"
        if len(pattern) > self.pattern_chars:
            return f"error: the pattern has {len(pattern)} characters, over {self.pattern_chars}"
        if "\0" in pattern or _unencodable(pattern):
            return "error: the pattern holds a character a command line cannot carry (NUL or a lone surrogate)"
        search = _rg if shutil.which("rg") else _grep
        found = search(pattern, self.mathlib_dir, self.rg_timeout, self.max_matches, self.search_bytes)
        if isinstance(found, str):
            return f"error: {found}"
        matches, more, whole = found
        if not matches and not more:
            return f"no match for {_short(pattern, 200)}"
        lines = [f"{path}:{n}: {_cut(text.strip(), self.match_chars)}" for path, n, text in matches]
        if more and whole:
            lines.append(f"... {more} more")
        elif not whole:    # stopped at search_bytes: the count is a lower bound
            lines.append(f"... {more}+ more (the search stopped there: use a more specific pattern)")
        return "\n".join(lines)


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


# ---- search: ripgrep when installed, else the same search in Python. Both run in a child process that lists
# matches on stdout as `./path\0line:text\n` (path relative to the folder, files in path order, *.lean only, hidden
# files and folders skipped, ignore files and symbolic links not followed), read as it comes by _stream: the child
# is killed at the deadline (Python's regexes backtrack: `(\w+\s?)+$` takes minutes on one long line, and a thread
# cannot be stopped) or once its output reaches search_bytes. An error is a str.
def _rg(pattern: str, folder: str, timeout: float, keep: int = MAX_MATCHES, max_bytes: int = SEARCH_BYTES):
    cmd = [shutil.which("rg") or "rg", "--no-heading", "--line-number", "--with-filename", "--null", "--color",
           "never", "--no-ignore", "--no-config", "--sort", "path", "--glob", "*.lean", "--regexp", pattern, "."]
    got = _stream(cmd, folder, timeout, keep, max_bytes)
    if isinstance(got, str):
        return got
    matches, more, whole, code, err = got
    if whole and code not in (0, 1):        # 1: no match; 2: a bad regex, or another error
        return "rg: " + " ".join(err.split())[:300]
    return matches, more, whole


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # where the child imports this module from
# -I: no environment variables, user site or current folder on the path; -S: no site (the search needs only the
# standard library), so the child starts in a tenth of a second
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from fdlean.tools import _search; sys.exit(_search(sys.argv[2]))"


def _grep(pattern: str, folder: str, timeout: float = SEARCH_TIMEOUT, keep: int = MAX_MATCHES,
          max_bytes: int = SEARCH_BYTES):
    cmd = [sys.executable or "python3", "-I", "-S", "-c", _CHILD, _ROOT, pattern]
    got = _stream(cmd, folder, timeout, keep, max_bytes)
    if isinstance(got, str):
        return got
    matches, more, whole, code, err = got
    if whole and code != 0:                 # 2: a bad regex (its message); else the child failed
        return " ".join(err.split())[:300] if code == 2 else f"the search failed (exit {code}: {err[-300:].strip()})"
    return matches, more, whole


def _search(pattern: str) -> int:
    """The Python search, in the child process _grep starts: the matches of `pattern` in the *.lean files under
    the current folder, written to stdout byte for byte as rg writes them (`./path\0line:text\n`, the path's and
    the line's own bytes), so that a search cut at search_bytes is cut at the same place. Returns the exit code:
    0, or 2 for a bad pattern."""
    try:
        regex = re.compile(pattern)
    except Exception as e:   # re.error; also RecursionError / OverflowError from a deeply nested or huge pattern
        sys.stderr.write(f"invalid regular expression: {e}")
        return 2
    paths = []
    for root, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.relpath(os.path.join(root, f), ".") for f in files
                  if f.endswith(".lean") and not f.startswith(".") and not os.path.islink(os.path.join(root, f))]
    out = sys.stdout.buffer
    for path in sorted(paths, key=lambda p: p.split(os.sep)):   # rg --sort path: name order inside each folder
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:                                            # unreadable (rg says so on stderr): skipped
            continue
        if b"\0" in data:                                          # rg skips binary files (a NUL byte)
            continue
        lines = data.split(b"\n")                                 # rg's lines end at "\n" only
        if lines[-1] == b"":                                       # a final newline ends the last line
            lines.pop()
        name = b"./" + os.fsencode(path) + b"\0"
        for i, line in enumerate(lines, 1):
            if regex.search(line.decode("utf-8", "replace")):
                out.write(name + b"%d:" % i + line + b"\n")
    out.flush()
    return 0


def _match(line: bytes):
    """(path, line number, text) from one line of the search's output, or None."""
    path, _, rest = line.partition(b"\0")           # --null: the path ends with NUL, whatever it holds
    n, _, text = rest.partition(b":")
    if not (n.isdigit() and len(n) < 19):          # (rg prints nothing else with these flags; be safe)
        return None
    return path.decode("utf-8", "replace").removeprefix("./"), int(n), text.decode("utf-8", "replace")


def _stream(cmd: list[str], folder: str, timeout: float, keep: int, max_bytes: int):
    """Run a search whose stdout lists matches as `path\\0line:text\\n` and read that output as it comes: the
    first `keep` matches kept, the others counted. The child is killed when `timeout` seconds have passed since
    its start (then the error text) or when its output reaches max_bytes (whole=False: the count is a lower
    bound). Returns (matches, more, whole, exit code, stderr's first 4 KiB) or an error text."""
    late = f"the search took over {timeout:g} s: use a more specific pattern"
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except (OSError, ValueError) as e:
        return f"the search could not start ({type(e).__name__}: {_cut(str(e), 200)})"
    matches, more, size, pending, err, whole = [], 0, 0, b"", b"", True
    try:
        with selectors.DefaultSelector() as sel:   # stdout and stderr at once: neither pipe fills and blocks the child
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while whole and sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    return late
                for key, _ in sel.select(left):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stderr:
                        err = (err + chunk)[:4096]
                    else:
                        chunk = chunk[:max_bytes - size]   # exactly max_bytes: rg and Python are cut alike
                        size += len(chunk)
                        if len(matches) < keep:   # lines split only while matches are kept: the rest is counted
                            lines = (pending + chunk).split(b"\n")
                            pending = lines.pop()
                            for line in lines:
                                if (m := _match(line)) and len(matches) < keep:
                                    matches.append(m)
                                elif m:
                                    more += 1
                        else:
                            more += chunk.count(b"\n")
                            pending = b"" if chunk.endswith(b"\n") else b"-"   # a line begun: counted at the end
                        if size >= max_bytes:
                            whole = False
                            break
        if pending:          # a last line without its newline (or cut at max_bytes)
            m = _match(pending) if len(matches) < keep else None
            if m:
                matches.append(m)
            elif len(matches) >= keep:
                more += 1
        if whole:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return late
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return matches, more, whole, proc.returncode, err.decode("utf-8", "replace")
