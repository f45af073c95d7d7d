"""sft.py: the word-level tokenizer, the training examples, a deterministic build, the cache, JSONL fine-tuning.

    python -m pytest -q tests/test_sft.py
"""
import json
import os
import random
import re

import torch
from safetensors.torch import load_file

import feedback
from fdlean import lm, prompting, sampling
from lean_env import Task
from mini import tasks
from small_prover import sft

torch.set_num_threads(1)
MICRO = dict(steps=6, n_tasks=300, batch_size=8, d_model=32, n_layers=1, n_heads=2, d_ff=64,
             lean_checks=0, lean=0.0, copy_warmup=2, threads=1, warmup=2)


def test_word_tokenizer_one_token_per_name_and_lean_readable_decoding():
    tok = sft.train_tokenizer(["theorem thm (p q : Prop) (h1 : And p q) : And q p := ⟨h1.2, h1.1⟩",
                               "fun h => (h2 h).1 Or.elim h1 h2 hpq.mp", "Do use h1."] * 2)
    ids = tok("⟨h1.2, (h2 h).1⟩ Or.elim hpq.mp", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["⟨", "h1", ".2", ",", "(", "h2", "h", ")", ".1", "⟩",
                                              "Or", ".elim", "hpq", ".mp"]
    assert tok.decode(ids) == "⟨ h1.2 , ( h2 h ).1 ⟩ Or.elim hpq.mp"  # fields glued: Lean reads it
    assert tok("h9 hzz", add_special_tokens=False)["input_ids"] == [tok.unk_token_id] * 2
    # "h1." at the end of a feedback sentence is the name plus a full stop
    assert tok.convert_ids_to_tokens(tok("h1.", add_special_tokens=False)["input_ids"]) == ["h1", "."]


def test_corrupt_changes_one_name_into_a_plausible_mistake():
    rng = random.Random(0)
    for task in tasks.load("mini", split="train", n=50, seed=7):
        wrong = sft.corrupt(task, rng)
        assert wrong != task.solution
        assert abs(len(wrong.split()) - len(task.solution.split())) <= 1


def test_examples_use_feedback_py_framing_and_the_mix():
    s = sft.Config(**{**MICRO, "n_tasks": 400, "plain": 0.2, "solution": 0.2, "prefix": 0.2, "tutor": 0.4})
    examples = sft.mini_examples(s)
    assert len(examples) == 400 and all(proof == t.solution for t, _, proof in examples)
    kinds = [None if fb is None else fb.split(":")[0] for _, fb, _ in examples]
    assert 40 < kinds.count(None) < 120
    for task, fb, _ in examples:
        if fb and fb.startswith("Example"):  # ground truth: exactly feedback.py's frame
            assert fb == feedback.frame("solution", task.solution)
        elif fb:   # the tutor at level 1 (one remark) or 2-4 (numbered orders), or the prefix hint
            assert fb.startswith(("Hint:\n1. Do ", "Hint:\nThe attempt ")), fb
    hints = [fb for _, fb, _ in examples if fb and fb.startswith("Hint:")]
    assert any(h.startswith("Hint:\nThe attempt ") for h in hints)                  # level 1
    assert any(re.search(r"Do get \S+ from And|Do apply .+ to a proof of|Do prove And", h) for h in hints)  # 3-4
    tok = sft.train_tokenizer([prompting.render(sft.SimpleNamespace(chat_template=None, bos_token=""), t, fb)
                               + " " + y for t, fb, y in examples])
    encoded = sft.encode(tok, examples, 320)
    for (task, fb, _), (ids, n_prompt, has_fb) in zip(examples, encoded):
        assert ids[:n_prompt] == prompting.encode(tok, task, fb)  # training prompts are FD's prompts
        assert ids[-1] == tok.eos_token_id and has_fb == (fb is not None)


def test_build_is_deterministic_and_cached(tmp_path, monkeypatch):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    sft.train(sft.Config(out=a, **MICRO))
    sft.train(sft.Config(out=b, **MICRO))
    wa, wb = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    log = json.load(open(os.path.join(a, "sft.json")))["log"]
    assert len(log) == MICRO["steps"]
    # the preset: built once into $FD_LEAN_CACHE/small-prover-<recipe hash>, then reused
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp_path / "cache"))
    s = sft.Config(**MICRO)
    path = sft.build_small_prover(settings=s)
    assert path == str(tmp_path / "cache" / f"small-prover-{sft.recipe_hash(s)}")
    stamp = os.path.getmtime(os.path.join(path, "model.safetensors"))
    assert sft.build_small_prover(settings=s) == path
    assert os.path.getmtime(os.path.join(path, "model.safetensors")) == stamp
    assert sft.recipe_hash(sft.Config(**{**MICRO, "seed": 1})) != sft.recipe_hash(s)
    assert sft.recipe_hash(sft.Config(**{**MICRO, "threads": 2, "rebuild": True})) == sft.recipe_hash(s)


def test_a_change_of_the_tutors_wording_is_another_preset(monkeypatch):
    from mini import rules
    s = sft.Config(**MICRO)
    before = sft.recipe_hash(s)
    assert sft.recipe_hash(s) == before
    monkeypatch.setitem(rules.ORDERS, "and", ("Do take {t0} out of And {a0} {a1} with .1, {t1} with .2.",
                                              rules.ORDERS["and"][1]))
    assert sft.recipe_hash(s) != before  # nobody had to bump RECIPE_VERSION


def test_jsonl_fine_tuning_of_an_existing_model(tiny_prover, tmp_path):
    rows = [{"statement": f"theorem t{i} (p q : Prop) (h1 : p) (h2 : q) : And q p :=", "proof": "⟨h2, h1⟩"}
            for i in range(16)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = str(tmp_path / "tuned")
    sft.train(sft.parse_args(["--jsonl", str(data), "--model", tiny_prover, "--out", out, "--steps", "25",
                              "--batch-size", "8", "--lr", "3e-3", "--warmup", "1", "--threads", "1"]))
    log = json.load(open(os.path.join(out, "sft.json")))["log"]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    policy = lm.load(out, device="cpu")
    task = Task("t", rows[0]["statement"])
    [s] = sampling.sample(policy, [prompting.encode(policy.tokenizer, task)], max_new_tokens=10, temperature=0)
    assert s.text.replace(" ", "") == "⟨h2,h1⟩" and not s.truncated


def test_stale_leftovers_of_killed_builds_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(dead.stdout)  # a process that has exited: its build folder is a leftover
    for name in (f"small-prover-abc.tmp{dead}", f"small-prover-abc.old{dead}", f"small-prover-abc.tmp{os.getpid()}"):
        os.makedirs(tmp_path / name / "sub")
    published = tmp_path / f"small-prover-{sft.recipe_hash(sft.Config(**MICRO))}"
    published.mkdir()
    (published / "config.json").write_text("{}")
    assert sft.build_small_prover(settings=sft.Config(**MICRO), build=None) == str(published)  # no build
    assert sorted(os.listdir(tmp_path)) == sorted([published.name, f"small-prover-abc.tmp{os.getpid()}"])


def test_two_builders_at_once_build_once_and_share_the_model(tmp_path, monkeypatch, capsys):
    import threading
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp_path))
    s, started, builds, paths = sft.Config(**MICRO), threading.Event(), [], []

    def build(settings):  # the real recipe, at MICRO size; counts its runs
        builds.append(settings.out)
        started.set()
        return sft.train(settings)

    def ask():
        paths.append(sft.build_small_prover(settings=s, build=build))

    first = threading.Thread(target=ask)
    first.start()
    started.wait(60)
    second = threading.Thread(target=ask)  # arrives while the first is building
    second.start()
    first.join(120)
    second.join(120)
    assert len(builds) == 1 and len(paths) == 2 and paths[0] == paths[1]
    assert "waiting for another process" in capsys.readouterr().out
    name = os.path.basename(paths[0])
    assert sorted(os.listdir(tmp_path)) == [name, name + ".lock"]  # one published model, no build folders
    assert os.path.isfile(os.path.join(paths[0], "model.safetensors"))


def test_a_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path, monkeypatch):
    import pytest
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp_path))
    s = sft.Config(**MICRO)

    def broken(settings):
        os.makedirs(settings.out)
        raise KeyboardInterrupt  # Ctrl-C in the middle of a build

    with pytest.raises(KeyboardInterrupt):
        sft.build_small_prover(settings=s, build=broken)
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []
    path = sft.build_small_prover(settings=s)
    assert os.path.isfile(os.path.join(path, "config.json"))


def test_the_preset_resolves_to_the_cached_build(tiny_prover, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp_path))
    published = tmp_path / f"small-prover-{sft.recipe_hash(sft.Config())}"
    shutil.copytree(tiny_prover, published)  # as if the full recipe had been built: no 6-minute build here
    assert sft.resolve_model("small-prover") == str(published)
    assert sft.resolve_model("runs/fd/final") == "runs/fd/final"  # any other name as it is
    policy = lm.load(sft.resolve_model("small-prover"), device="cpu")
    assert policy.model.name_or_path == str(published)


def test_sft_imports_neither_evaluation_nor_trainers():
    import ast
    tree = ast.parse(open(sft.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"evaluate", "calibrate", "fd", "grpo", "report"}
