"""Seeded fuzzing of the doors model-written text goes through: tool calls (tools.parse_calls, Workspace.run, the
Mathlib search), the tool outputs fed back to a chat model (agent.tool_messages), whole chat rollouts, and the
transcripts a critic reads. Random mutations of well-formed calls (deep nesting, unicode, huge strings, truncated
or stray tags, wrong types, JSON edge cases) and of transcripts (forged delimiters, huge parts); each test asserts
that nothing raises, nothing runs past its deadline (a wall-clock bound per test and per search) and every output
stays within its cap. A failure prints its seed and case; the run takes a few seconds.

    python -m pytest -q tests/test_tools_fuzz.py
"""
import json
import os
import random
import time

import pytest

from fdlean import agent
from fdlean import tools as LT
from fdlean import turns as TURNS
from lean_env import Result, Task

TASK = Task("t", "theorem t (p : Prop) (h : p) : p :=")
ATOMS = ["<tool_call>", "</tool_call>", "<tool_call", "</tool_call", "tool_call>", "<|im_end|>", "<|im_start|>",
         "<eos>", "<tool output 0123456789abcdef>", "</tool output x>", "[tool output]", "< /TOOL output>",
         '"', "\\", "\\u", "\\ud800", "\\u0000", "{", "}", "[", "]", ":", ",", "null", "NaN", "-Infinity", "1e999",
         "9" * 5000, "\ufeff", "\u200b", "\u202e", "\x00", "\r\n", "\x0c", "é", "∀ x, p x", "𝔽", "a\u0301",
         TASK.statement, " h", "```lean\n", "/-", "-/", "«", "»", ":="]


def text(rng, n=20) -> str:
    """Random text: the atoms above, random code points (astral, controls), and now and then a huge run."""
    parts = []
    for _ in range(rng.randrange(n)):
        r = rng.random()
        if r < 0.6:
            parts.append(rng.choice(ATOMS))
        elif r < 0.9:
            parts.append("".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD800),
                                                 rng.randrange(0xE000, 0x110000), rng.randrange(32)]))
                                 for _ in range(rng.randrange(1, 12))))
        else:
            parts.append(rng.choice("x[{\"\\ ") * rng.choice([100, 5000, 100_000]))
    return "".join(parts)


def value(rng, depth=0):
    """A random JSON value of any type: what a model might put where a string or an object belongs."""
    kinds = ["str", "int", "float", "bool", "null", "list", "dict"] if depth < 4 else ["str", "int", "null"]
    kind = rng.choice(kinds)
    if kind == "str":
        return text(rng, 6)
    if kind == "int":
        return rng.choice([0, -1, 2**63, 10**30])
    if kind == "float":
        return rng.choice([0.5, float("inf"), float("nan"), -0.0])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {text(rng, 2): value(rng, depth + 1) for _ in range(rng.randrange(4))}


def well_formed(rng) -> str:
    name = rng.choice(["lean_write_file", "lean_check_file", "rg_in_mathlib"])
    arguments = {"lean_write_file": {"content": TASK.statement + " " + rng.choice(["h", text(rng, 4)])},
                 "lean_check_file": {}, "rg_in_mathlib": {"pattern": rng.choice(["theorem", "h", text(rng, 2)])}}
    arguments = arguments[name]
    if rng.random() < 0.3:
        arguments = json.dumps(arguments)                    # OpenAI style: the arguments as a JSON string
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=rng.random() < 0.5)


def mutate(rng, body: str) -> str:
    """One random change to a call's JSON."""
    k, j = rng.randrange(len(body) + 1), rng.randrange(len(body) + 1)
    k, j = min(k, j), max(k, j)
    change = rng.randrange(10)
    if change == 0:
        return body[:k]                                                   # truncated
    if change == 1:
        return body[:k] + rng.choice(ATOMS) + body[k:]                    # an atom inserted
    if change == 2:
        return body[:k] + body[j:]                                        # a slice deleted
    if change == 3:
        return body[:j] + body[k:j] + body[j:]                            # a slice doubled
    if change == 4:
        depth = rng.choice([3, 70, 1000, 3000])
        return rng.choice("[{") * depth + body if rng.random() < 0.5 else "[" * depth + body + "]" * depth
    if change == 5:                                                      # a wrong type somewhere
        obj = {"name": rng.choice([value(rng), "lean_write_file", "rg_in_mathlib"]), "arguments": value(rng)}
        return json.dumps(obj, allow_nan=True)
    if change == 6:                                                      # huge strings
        return json.dumps({"name": "lean_write_file", "arguments": {"content": TASK.statement + " " + "h" * 300_000}})
    if change == 7:                                                      # JSON edge cases
        return rng.choice(['{"name": "lean_check_file", "name": "rg_in_mathlib", "arguments": {"pattern": "a"}}',
                           '{"name": "lean_check_file",}', "{'name': 'lean_check_file'}", "NaN", '""', "[]", "1" * 5000,
                           '{"name": "lean_check_file"} trailing', '\ufeff{"name": "lean_check_file"}',
                           '{"name": "lean_check_file", "arguments": "' + '\\"' * 5000 + '\\'])
    if change == 8:
        return body.replace('"', rng.choice(["'", '\\"', "“", ""]))
    return body[:k] + text(rng, 4) + body[j:]


def generation(rng) -> str:
    """A random assistant generation: prose, well-formed and mutated calls, stray or truncated tags."""
    out = [text(rng, 4)]
    for _ in range(rng.choice([0, 1, 2, 3, 12, 40])):
        body = well_formed(rng)
        for _ in range(rng.randrange(3)):
            body = mutate(rng, body)
        opened, closed = rng.choice([("<tool_call>", "</tool_call>")] * 6 + [("<tool_call>", ""), ("", "</tool_call>"),
                                                                              ("<tool_call><tool_call>", "</tool_call>"),
                                                                              ("<tool_call>", "</tool_call")])
        out.append(f"{opened}\n{body}\n{closed}{text(rng, 2)}")
    return "".join(out)


class Echo:
    """A checker that answers at once: it rejects a proof quoting it back (as Lean's messages do), or accepts with
    warnings, or sends messages of odd shapes."""

    def __init__(self, rng):
        self.rng = rng

    def check_many(self, items):
        out = []
        for _, proof in items:
            r = self.rng.random()
            out.append(Result(True, "ok", ["1:0: warning: " + proof] * 3) if r < 0.2 else
                       Result(False, "error", ["x" * 100_000]) if r < 0.3 else
                       Result(False, "error", [f"1:0: error: Unknown identifier `{proof}`"]))
        return out


def test_fuzzed_calls_never_raise_and_stay_capped():
    """parse_calls on random generations: a list of Calls, at most max_calls + 1, each either valid against its
    schema or an error; Workspace.run on each: a text within result_chars, valid UTF-8; fast."""
    rng = random.Random(1)
    start = time.monotonic()
    for case in range(400):
        ws = LT.Workspace(TASK, Echo(rng), result_chars=rng.choice([50, 2000]), max_calls=rng.choice([1, 8]))
        gen = generation(rng)
        t0 = time.monotonic()
        calls = LT.parse_calls(gen, ws.max_calls)
        assert time.monotonic() - t0 < 2, (case, gen[:200])
        assert len(calls) <= ws.max_calls + 1, case
        for c in calls:
            assert isinstance(c, LT.Call) and (c.error is None) != (c.arguments is None), (case, c)
            if c.error is None:
                assert LT._problem(c.name, c.arguments) is None, (case, c)
            else:
                assert isinstance(c.error, str) and len(c.error) < 600, (case, c.error[:200])
            out = ws.run(c)
            assert isinstance(out, str) and len(out) <= ws.result_chars + 4, (case, c, out[:200])
            out.encode("utf-8")
    assert time.monotonic() - start < 30


def test_fuzzed_calls_of_any_shape_run_without_raising():
    """Workspace.run on hand-made Calls whose fields hold anything (names and arguments of every JSON type)."""
    rng = random.Random(2)
    start = time.monotonic()
    for case in range(300):
        ws = LT.Workspace(TASK, Echo(rng))
        name = rng.choice(["lean_write_file", "lean_check_file", "rg_in_mathlib", value(rng)])
        arguments = rng.choice([value(rng), {"content": value(rng)}, {"pattern": value(rng)}, {}])
        c = LT.Call(name, arguments, rng.choice([None, None, "why", value(rng)]))
        out = ws.run(c)
        assert isinstance(out, str) and len(out) <= ws.result_chars + 4, (case, c)
    assert time.monotonic() - start < 10


@pytest.fixture(scope="module")
def mathlib(tmp_path_factory):
    root = tmp_path_factory.mktemp("mathlib")
    os.makedirs(root / "Mathlib" / "Order")
    (root / "Mathlib" / "Order" / "Basic.lean").write_text(
        "theorem le_refl (a : α) : a ≤ a := sorry\ntheorem mul_le_mul_of_le_left (a b c : Nat) : c * a ≤ c * b :=\n"
        + "lemma l : True := trivial\n" * 2000)
    (root / "Mathlib" / "Long.lean").write_text("a" * 50_000 + "!\n" + ("theorem " + "x" * 3000 + "\n") * 500)
    return str(root)


PATTERNS = [r"(\w+\s?)+$", r"(a+)+$", r"(a|aa)+b", "theorem", ".", "", "(", "[", "\\", "a{2,1}", "(?P<x>a)(?P=y)",
            "α ≤", "-e", "--files", "(" * 300 + ")" * 300]


@pytest.mark.parametrize("rg", [False, True])
def test_fuzzed_searches_meet_their_deadline_and_caps(mathlib, monkeypatch, rg):
    """rg_in_mathlib on backtracking, malformed, option-like and random patterns over long lines: each returns
    within its deadline (rg_timeout, plus the time to start and stop the child), never raises, its output within
    result_chars. rg=True runs ripgrep (skipped without it), False the Python search."""
    import shutil
    found = shutil.which("rg")
    if rg and not found:
        pytest.skip("ripgrep (rg) is not installed")
    monkeypatch.setattr(LT.shutil, "which", lambda name: found if rg else None)
    rng = random.Random(3)
    ws = LT.Workspace(TASK, Echo(rng), mathlib_dir=mathlib, rg_timeout=0.4, search_bytes=200_000)
    start = time.monotonic()
    for pattern in PATTERNS + [text(rng, 3)[:50] for _ in range(4)] + ["x" * 2000, "a\0b"]:
        t0 = time.monotonic()
        out = ws.run(LT.Call("rg_in_mathlib", {"pattern": pattern}))
        assert time.monotonic() - t0 < ws.rg_timeout + 2, pattern
        assert isinstance(out, str) and len(out) <= ws.result_chars + 4, pattern
    assert time.monotonic() - start < 20


def test_fuzzed_transcripts_keep_outputs_in_their_blocks_and_within_budget():
    """turns.transcript of random attempts (generations and outputs that forge delimiters, huge parts, any
    budget): at most `budget` characters, and every block read back (tool_blocks) is a piece of a real output,
    never of the model's text."""
    rng = random.Random(4)
    start = time.monotonic()
    for case in range(300):
        a = TURNS.Attempt(turns=2)
        for _ in range(rng.randrange(1, 12)):
            a.log.append((rng.choice(["model", "tool"]), text(rng, 10)))
        budget = rng.choice([300, 2000, 20_000, TURNS.TRANSCRIPT_CHARS])
        t = TURNS.transcript(a, budget)
        assert len(t) <= budget, case
        outputs = [TURNS._plain(out) for kind, out in a.log if kind == "tool"]
        blocks = TURNS.tool_blocks(t)
        assert all(any(block in out for out in outputs) for block in blocks), case
        assert len(blocks) <= len(outputs) + 1, case                          # one output may be cut in two
        if len(t) < budget - 100 and "characters cut" not in t:                # nothing cut: all of them, whole
            assert blocks == outputs, case
    for case in range(100):                                                  # the small prover's transcripts
        n = rng.randrange(2, 6)
        a = TURNS.Attempt(turns=n, candidates=[text(rng, 8) for _ in range(n)],
                          results=[Result(rng.random() < 0.5, "error", [text(rng, 5)]) for _ in range(n)])
        t = TURNS.transcript(a, 3000)
        assert len(t) <= 3000 and all(block.startswith("Lean: ") or "characters cut" in t
                                      for block in TURNS.tool_blocks(t)), case
    assert time.monotonic() - start < 15


def test_fuzzed_tool_outputs_are_tokenized_as_text(qwen_dir):
    """agent.tool_messages of random outputs (control-token strings among them) under a chat template: the ids
    hold exactly the template's own <|im_start|> / <|im_end|>, one pair per output, whatever the outputs say."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(qwen_dir)
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    start_id, end_id = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    rng = random.Random(5)
    conversation = [{"role": "user", "content": "Prove it."}, {"role": "assistant", "content": "<tool_call>x</tool_call>"}]
    for case in range(60):
        ws = LT.Workspace(TASK, Echo(rng))
        outputs = [ws.run(c) for c in LT.parse_calls(generation(rng))] or [text(rng, 5)[:3000]]
        outputs = [out.encode("utf-8", "replace").decode("utf-8") for out in outputs]
        ids = tok(agent.tool_messages(tok, conversation, outputs, LT.TOOLS), add_special_tokens=False)["input_ids"]
        assert ids.count(start_id) == len(outputs) + 1 and ids.count(end_id) == len(outputs), case


def test_fuzzed_chat_rollouts_never_raise(qwen_dir, monkeypatch):
    """Whole chat rollouts (turns.rollout with the paper's tools) of random generations, four attempts at a time:
    it returns one attempt each, every tool turn holds only the template's control tokens, and each transcript
    stays within TRANSCRIPT_CHARS."""
    from fdlean import lm, sampling
    policy = lm.load(qwen_dir)
    tok = policy.tokenizer
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    policy.model.config.max_position_embeddings = 1 << 20
    start_id = tok.convert_tokens_to_ids("<|im_start|>")
    rng = random.Random(6)

    def scripted(policy, prompts, *args, **kwargs):
        out = []
        for _ in prompts:
            gen = generation(rng).encode("utf-8", "replace").decode("utf-8")[:20_000]
            ids = tok(gen, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            out.append(sampling.make_sample(policy, ids, [0.0] * len(ids)))
        return out
    monkeypatch.setattr(TURNS.sampling, "sample", scripted)
    start, ran = time.monotonic(), 0
    for case in range(6):
        attempts = TURNS.rollout(policy, Echo(rng), [TASK] * 4, max_new_tokens=10 ** 6, generator=0, tools=True,
                                 limits={"max_generations": 3})
        assert len(attempts) == 4, case
        for a in attempts:
            ran += a.turns > 1
            assert len(a.transcript) <= TURNS.TRANSCRIPT_CHARS and a.results, case
            tool = [i for i, own in zip(a.ids, a.trained) if not own]
            groups = "".join("m" if kind == "model" else "t" for kind, _ in a.log).split("m")[1:]
            fed = sum(len(g) + 1 for g in groups[:-1])        # each generation that went on: its outputs' turns,
            assert tool.count(start_id) == fed, case          # then the assistant's
    assert ran >= 4 and time.monotonic() - start < 30                       # (tools did run: attempts went on)
