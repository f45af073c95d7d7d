"""A user's mistake on the command line of fd.py, grpo.py, evaluate.py, sft.py and calibrate.py: one clear line
on stderr naming the option or file, exit status 2, no traceback, and no model loaded.

Every case runs the script's own `if __name__ == "__main__":` (runpy, in this process: a real
subprocess spends 2-3 s importing torch and transformers before it can fail); one case per script
also runs as a real subprocess, for the exit status and stderr the user sees.
"""
import json
import os
import runpy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (script, arguments, what the line must say); {tmp} is a fresh folder, {run} a finished run's folder
CASES = [
    ("fd.py", "--alpha 1.5", "fd.py: --alpha 1.5: must be between 0 and 1"),
    ("small_prover/sft_turns.py", "--fresh", "sft_turns.py: --fresh needs other tries to learn from: give --tries 2 or more (not 1)"),
    ("small_prover/sft_turns.py", "--unlikely -1", "sft_turns.py: --unlikely -1.0: must be 0 or more"),
    ("fd.py", "--prompts 0", "fd.py: --prompts 0: must be at least 1"),
    ("fd.py", "--top-p 0", "fd.py: --top-p 0.0: must be above 0 and at most 1"),
    ("fd.py", "--ema-every 0", "fd.py: --ema-every 0: must be at least 1"),
    ("fd.py", "--topk -1", "fd.py: --topk -1: must be 0 or more"),
    ("fd.py", "--alpha x", "fd.py: argument --alpha: invalid float value: 'x'"),
    ("fd.py", "--out {run}", "fd.py: --out {run} already holds a run (config.json, metrics.jsonl, state.pt): "
                             "continue it with `--resume {run}`"),
    ("fd.py", "--out {tmp}/unsaved", "holds a run that never saved its state"),
    ("fd.py", "--resume {tmp}/unsaved", "fd.py: --resume {tmp}/unsaved: no state.pt there"),
    ("fd.py", "--model nonexistent_dir", "fd.py: --model nonexistent_dir: model 'nonexistent_dir': no such folder"),
    ("fd.py", "--model {run}", "that folder holds no HF-format model"),
    ("fd.py", "--tasks jsonl:{tmp}/missing.jsonl", "fd.py: --tasks jsonl:{tmp}/missing.jsonl: No such file"),
    ("fd.py", "--tasks jsonl:{tmp}/bad.jsonl", "fd.py: --tasks jsonl:{tmp}/bad.jsonl: {tmp}/bad.jsonl, line 2: bad JSON"),
    ("fd.py", "--eval-tasks jsonl:{tmp}/bad.jsonl", "fd.py: --eval-tasks jsonl:{tmp}/bad.jsonl:"),
    ("fd.py", "--tasks mini:7", "fd.py: --tasks mini:7:"),
    ("fd.py", "--tasks jsonl:{tmp}/empty.jsonl", "fd.py: --tasks jsonl:{tmp}/empty.jsonl: no tasks in that file"),
    ("fd.py", "--feedback openai:gpt-x", "fd.py: --feedback openai:gpt-x: openai: no API key: set OPENAI_API_KEY"),
    ("fd.py", "--feedback anthropic:claude-x", "no API key: set ANTHROPIC_API_KEY"),
    ("fd.py", "--feedback bogus", "fd.py: --feedback bogus: unknown feedback spec 'bogus': use tutor"),
    ("fd.py", "--feedback tutor:5", "fd.py: --feedback tutor:5: feedback tutor:5: the tutor's level is 1, 2, 3 or 4"),
    ("fd.py", "--verifier bogus", "fd.py: --verifier bogus: unknown verifier"),
    ("fd.py", "--lean {tmp}/no-lean", "fd.py: --verifier mini --lean {tmp}/no-lean: no Lean executable"),
    ("grpo.py", "--group 1", "grpo.py: --group 1: must be at least 2"),
    ("grpo.py", "--inner-steps 2", "grpo.py: unrecognized arguments: --inner-steps 2 (see --help)"),
    ("grpo.py", "--kl-coef -1", "grpo.py: --kl-coef -1.0: must be 0 or more"),
    ("grpo.py", "--micro-batch 0", "grpo.py: --micro-batch 0: must be at least 1"),
    ("grpo.py", "--agg mean", "grpo.py: --agg mean: must be token, seq or constant"),
    ("grpo.py", "--out {run}", "--resume {run}"),
    ("grpo.py", "--init-from {tmp}/no-such-run", "grpo.py: --init-from {tmp}/no-such-run: model"),
    ("grpo.py", "--tasks jsonl:{tmp}/missing.jsonl", "grpo.py: --tasks jsonl:{tmp}/missing.jsonl: No such file"),
    ("evaluate.py", "--model nonexistent_dir", "evaluate.py: --model nonexistent_dir: model 'nonexistent_dir'"),
    ("evaluate.py", "--model small-prover --n 0", "evaluate.py: --n 0: must be at least 1"),
    ("evaluate.py", "--model small-prover --n 4 --k 1,8", "evaluate.py: --k 1,8: k=8 is larger than --n 4"),
    ("evaluate.py", "--model small-prover --tasks jsonl:{tmp}/bad.jsonl", "evaluate.py: --tasks jsonl:{tmp}/bad.jsonl:"),
    ("evaluate.py", "--model small-prover --verifier bogus", "evaluate.py: --verifier bogus: unknown verifier"),
    ("scripts/calibrate.py", "--model nonexistent_dir", "calibrate.py: --model nonexistent_dir: model 'nonexistent_dir'"),
    ("fd.py", "--no-such-flag 3", "fd.py: unrecognized arguments: --no-such-flag 3 (see --help)"),
    ("small_prover/sft.py", "--jsonl {tmp}/missing.jsonl --out {tmp}/sft", "sft.py: --jsonl {tmp}/missing.jsonl: No such file"),
    ("small_prover/sft.py", "--jsonl {tmp}/bad.jsonl --out {tmp}/sft", "sft.py: --jsonl {tmp}/bad.jsonl: {tmp}/bad.jsonl, line 1:"),
    ("small_prover/sft.py", "--warmup 0", "sft.py: --warmup 0: must be at least 1"),
    ("small_prover/sft.py", "--tutor-levels 1,2", "sft.py: --tutor-levels 1,2: must be four weights 0 or more"),
    ("small_prover/sft.py", "--tutor-levels 0,0,0,0", "sft.py: --tutor-levels 0,0,0,0: must be four weights"),
    ("small_prover/sft.py", "--n-heads 3", "sft.py: --n-heads 3: must divide --d-model 256"),
    ("small_prover/sft.py", "--level-mix 1,2", "sft.py: --level-mix 1,2: must be three weights"),
    ("small_prover/sft.py", "--model nonexistent_dir --jsonl {tmp}/ok.jsonl", "sft.py: --model nonexistent_dir: model"),
    # issue 30: every script that writes a folder follows one rule (cli.new_folder), before any slow work
    ("fd.py", "--out {tmp}/ok.jsonl", "fd.py: --out {tmp}/ok.jsonl is a file"),
    ("grpo.py", "--out {tmp}/ok.jsonl", "grpo.py: --out {tmp}/ok.jsonl is a file"),
    ("evaluate.py", "--model small-prover --out {tmp}/ok.jsonl", "evaluate.py: --out {tmp}/ok.jsonl is a file"),
    ("evaluate.py", "--model small-prover --out {run}", "evaluate.py: --out {run} already holds files"),
    ("scripts/explain.py", "--out {tmp}/ok.jsonl", "explain.py: --out {tmp}/ok.jsonl is a file"),
    ("scripts/paper.py", "--out {tmp}/ok.jsonl", "paper.py: --out {tmp}/ok.jsonl is a file"),
    ("scripts/paper.py", "--out {run}", "paper.py: --out {run} already holds files"),
    ("scripts/paper.py", "--seeds 1", "paper.py: --seeds 1: must be at least 2"),
    ("scripts/paper.py", "--model {run}", "paper.py: --model {run}: model"),
    ("small_prover/sft.py", "--out {run}", "sft.py: --out {run} already holds files"),
    ("small_prover/sft_turns.py", "--out {run}", "sft_turns.py: --out {run} already holds files"),
    ("small_prover/sft_turns.py", "--out {tmp}/ok.jsonl", "sft_turns.py: --out {tmp}/ok.jsonl is a file"),
    ("small_prover/sft_turns.py", "--level-mix 1,2", "sft_turns.py: --level-mix 1,2: must be three weights"),
    ("fd.py", "--lr inf", "fd.py: --lr inf: must be a finite number"),
    ("fd.py", "--device tpu", "fd.py: --device tpu: must be empty (the GPU when there is one), cpu, or cuda"),
    ("fd.py", "--model {tmp}/broken", "fd.py: --model {tmp}/broken --prompt auto: model '{tmp}/broken': that folder's "
                                      "model cannot be read"),
    ("grpo.py", "--verifier kimina:notaurl", "grpo.py: --verifier kimina:notaurl: kimina:notaurl: the part after "
                                             "kimina: is the server's URL"),
]
# one per script, also as a real subprocess (2-3 s each)
SUBPROCESS = [c for c in CASES if c[:2] in {("fd.py", "--model nonexistent_dir"), ("grpo.py", "--group 1"),
                                             ("evaluate.py", "--model nonexistent_dir"),
                                             ("small_prover/sft.py", "--jsonl {tmp}/missing.jsonl --out {tmp}/sft")}]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "bad.jsonl").write_text(json.dumps({"name": "a", "statement": "theorem a : True :="}) + "\n{oops\n")
    (tmp / "cache-is-a-file").write_text("")
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "ok.jsonl").write_text(json.dumps({"statement": "theorem a (p : Prop) (h : p) : p :=", "proof": "h"}))
    run = tmp / "run"  # what a finished run leaves
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    (run / "state.pt").write_bytes(b"")
    (tmp / "broken").mkdir()  # a model folder with a config and no weights
    (tmp / "broken" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp / "unsaved").mkdir()  # a run killed before its first save
    (tmp / "unsaved" / "config.json").write_text("{}")
    return tmp, run


def argv(case, tmp, run):
    script, args, _ = case
    out = args.format(tmp=tmp, run=run).split()
    if script in ("fd.py", "grpo.py", "scripts/paper.py", "small_prover/sft_turns.py") and "--out" not in out \
            and "--resume" not in out:
        out += ["--out", str(tmp / "out")]  # never the repository's runs/
    if script == "evaluate.py":
        return out + ([] if "--out" in out else ["--out", str(tmp / "eval")])
    return out + ([] if script == "scripts/paper.py" else ["--threads", "1"])


def clean_env(monkeypatch, tmp):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # the preset must never be built here: a cache "folder" that is a file makes a build fail at once
    monkeypatch.setenv("FD_LEAN_CACHE", str(tmp / "cache-is-a-file"))


def check_line(code, stderr, case, tmp, run):
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and case[2].format(tmp=tmp, run=run) in lines[0], stderr
    assert not os.path.exists(tmp / "out") and not os.path.exists(tmp / "eval")  # refused before making them


@pytest.mark.parametrize("case", CASES, ids=[f"{s} {a}" for s, a, _ in CASES])
def test_one_clear_line_and_exit_2(files, case, monkeypatch, capsys):
    tmp, run = files
    clean_env(monkeypatch, tmp)
    monkeypatch.setattr(sys, "argv", [case[0], *argv(case, tmp, run)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(os.path.join(ROOT, case[0]), run_name="__main__")
    check_line(exit.value.code, capsys.readouterr().err, case, tmp, run)


def test_as_subprocesses(files, monkeypatch):
    tmp, run = files
    clean_env(monkeypatch, tmp)

    def go(case):
        command = [sys.executable, "-m", case[0][:-3].replace("/", ".")] if "/" in case[0] else [sys.executable, case[0]]
        return subprocess.run([*command, *argv(case, tmp, run)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        for case, p in zip(SUBPROCESS, pool.map(go, SUBPROCESS)):
            check_line(p.returncode, p.stderr, case, tmp, run)
