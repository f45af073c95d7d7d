"""paper.py without training: the runs it plans (matched cost, FD -> GRPO after its FD run, resume),
and the results it draws from a run and evaluation tree (made up here, in the layout the scripts write):
intervals over seeds, seed-by-seed differences, the probes per rule and side, the checked findings,
the markdown table and the plots."""
import json
import os

import pytest

from mini import probes
from scripts import paper


def test_plan_matches_cost_and_orders_fd_before_fd_grpo(tmp_path):
    cfg = paper.Config(out=str(tmp_path), seeds=2, steps=100, prompts=32, grpo_prompts=16, group=5)
    assert paper.grpo_steps(cfg) * cfg.grpo_prompts * cfg.group == cfg.steps * cfg.prompts  # 40 x 80 = 100 x 32
    runs = {r["name"]: r for r in paper.jobs(cfg, "BASE")}
    assert len(runs) == 2 * len(paper.METHODS)
    assert runs["fd_grpo_s1"]["after"] == "fd_s1" and runs["fd_s1"]["after"] is None
    assert runs["control_s0"]["args"][runs["control_s0"]["args"].index("--feedback") + 1] == "none"
    assert "--init-from" in runs["fd_grpo_s0"]["args"] and runs["grpo_s0"]["steps"] == 40
    # constant feedback trains against a frozen teacher, as the paper runs it (Section 5.3); the others move it
    alpha = lambda r: r["args"][r["args"].index("--alpha") + 1] if "--alpha" in r["args"] else None
    assert alpha(runs["constant_s0"]) == alpha(runs["constant_s1"]) == "1"
    assert alpha(runs["fd_s0"]) is alpha(runs["tutor4_s1"]) is None
    # the tutor's four levels are four methods; every run trains on --tasks (fd.py's default, level 1)
    assert [runs[f"tutor{n}_s0"]["args"][runs[f"tutor{n}_s0"]["args"].index("--feedback") + 1] for n in (1, 2, 3, 4)] \
        == ["tutor:1", "tutor:2", "tutor:3", "tutor:4"]
    assert all(r["args"][r["args"].index("--tasks") + 1] == "mini:1" for r in runs.values())
    mixed = paper.jobs(paper.Config(out=str(tmp_path), seeds=2, tasks="mini:1,2", topk=1), "BASE")
    assert all(r["args"][r["args"].index("--tasks") + 1] == "mini:1,2" for r in mixed)
    # --topk is every FD run's K (FD -> GRPO's FD part too); GRPO has no K
    k = lambda r: r["args"][r["args"].index("--topk") + 1] if "--topk" in r["args"] else None
    assert {r["name"]: k(r) for r in mixed if r["script"] == "fd.py"} == {r["name"]: "1" for r in mixed
                                                                            if r["script"] == "fd.py"}
    assert all(k(r) is None for r in mixed if r["script"] == "grpo.py") and k(runs["fd_s0"]) == "25"
    folder = tmp_path / "runs" / "fd_s0"
    assert not paper.finished(str(folder), 100)
    (folder / "final").mkdir(parents=True)
    (folder / "final" / "config.json").write_text("{}")
    (folder / "metrics.jsonl").write_text('{"step": 0}\n{"step": 99}\n')
    assert not paper.finished(str(folder), 100)           # killed before its last step: resumed, not skipped
    (folder / "metrics.jsonl").write_text('{"step": 0}\n{"step": 100}\n')
    assert paper.finished(str(folder), 100)


def test_a_subset_of_methods_over_multi_turn_attempts(tmp_path, monkeypatch):
    cfg = paper.Config(out=str(tmp_path), seeds=2, methods=("control", "fd"), turns=3, eval_n=8)
    runs = paper.jobs(cfg, "BASE")
    assert sorted(r["name"] for r in runs) == ["control_s0", "control_s1", "fd_s0", "fd_s1"]
    assert all(r["args"][r["args"].index("--turns") + 1] == "3" for r in runs)
    assert paper.chosen(paper.Config(methods=("fd_grpo",))) == ["fd", "fd_grpo"]
    sets = {"mini": paper.tasks.load("mini:test", limit=4), "textbook": paper.tasks.load("mini:test", limit=2),
            "probes": [t for t, _ in probes.load()][:8]}
    monkeypatch.setattr(paper.tasks, "load", lambda spec, limit=0: sets[
        {v: k for k, v in paper.SETS.items()}[spec]])
    fake_tree(tmp_path, cfg, sets, lambda m, s: {"fd": 0.5, "control": 0.25}.get(m, 0.125), methods=paper.chosen(cfg))
    res = paper.collect(cfg)
    assert set(res["methods"]) == {"base", "fd", "control"} and list(res["differences"]) == ["fd - control"]
    res["targets"], res["minutes"] = paper.targets(res), 0.1
    assert [text for text, _ in res["targets"]] == [f"FD beats its control by more than two standard errors (over "
                                                    f"seeds) on {w}" for w in ("mini", "textbook")] + [
        "fd keeps level 2 (mini:test pass@1 0.500 vs the start's 0.125)"]
    paper.report.write_paper_markdown(res, str(tmp_path / "results.md"))
    assert "up to 3 candidates" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit):
        paper.main(["--methods", "fd", "sft", "--out", str(tmp_path / "x")])


def fake_tree(out, cfg, sets, quality, methods=paper.METHODS):
    """quality(method, seed) -> the chance a sample is right; every task gets that share of n samples."""
    n = cfg.eval_n
    names = [("base", "base", 0)] + [(f"{m}_s{s}", m, s) for m in methods for s in range(cfg.seeds)]
    for name, method, seed in names:
        for which, task_list in sets.items():
            folder = out / "eval" / name / which
            folder.mkdir(parents=True)
            right = round(quality(method, seed) * n)
            with open(folder / "attempts_1.jsonl", "w") as f:
                for i in range(len(task_list)):
                    for j in range(n):
                        f.write(json.dumps({"task": i, "ok": j < right}) + "\n")
            p = right / n
            summary = {"pass_at_k": {"1": p, "2": p}, "per_level": {lv: {"1": p, "2": p} for lv in ("1", "2")},
                       "entropy": 1 - quality(method, seed), "mean_attempt_tokens": 5.0, "n_distinct_identifiers": 3}
            (folder / "results.json").write_text(json.dumps({"models": [summary]}))
        if method in ("fd", "control", "tutor1", "tutor2", "tutor3", "tutor4", "grpo", "fd_grpo"):
            run = out / "runs" / name
            run.mkdir(parents=True)
            (run / "metrics.jsonl").write_text("".join(
                json.dumps({"step": s, "train_acc": 0.1 * s, "entropy": 1.0}) + "\n" for s in range(1, 13)))


def test_results_from_a_tree(tmp_path, monkeypatch):
    cfg = paper.Config(out=str(tmp_path), seeds=3, eval_n=8, eval_limit=4)
    sets = {"mini": paper.tasks.load("mini:test", limit=4), "textbook": paper.tasks.load("mini:test", limit=2),
            "probes": [t for t, _ in probes.load()][:8]}
    monkeypatch.setattr(paper.tasks, "load", lambda spec, limit=0: sets[
        {v: k for k, v in paper.SETS.items()}[spec]])
    quality = {"fd": [0.5, 0.625, 0.5], "control": [0.25, 0.25, 0.375], "fd_grpo": [0.75] * 3}
    fake_tree(tmp_path, cfg, sets, lambda m, s: quality.get(m, [0.25, 0.25, 0.25])[s])
    res = paper.collect(cfg)
    fd = res["methods"]["fd"]["mini"]
    assert fd["pass_at_k"]["1"][0] == pytest.approx(1.625 / 3)
    assert fd["pass_at_k"]["1"][1] == pytest.approx(4.30 * 0.125 / 3)  # t(2 df) x SE: std 0.125 / sqrt(3), / sqrt(3)
    d = res["differences"]["fd - control"]["textbook"]
    assert d["mean"] == pytest.approx((0.25 + 0.375 + 0.125) / 3) and d["se"] > 0
    assert res["differences"]["fd_grpo - grpo"]["mini"]["mean"] == pytest.approx(0.5)
    rule = next(iter(res["probes"]["fd"]))
    assert set(res["probes"]["fd"][rule]) >= {"balance"} and len(res["curves"]["fd"]["train_acc"]) == 12
    res["targets"], res["minutes"] = paper.targets(res), 0.1
    checks = dict(res["targets"])
    assert checks["FD beats its control by more than two standard errors (over seeds) on mini"]
    assert checks["FD -> GRPO has the best pass@1 (mini:test; best: fd_grpo)"]
    assert not checks["FD's entropy stays above GRPO's (mini:test)"]   # made up: entropy falls with quality
    assert not checks["critique as rules (tutor3) beats the control by more than two standard errors on probes"]
    assert not checks["tutor4 carries over at least as well as ground truth (textbook)"]    # 0 vs fd's +0.25
    assert checks["fd keeps level 2 (mini:test pass@1 0.542 vs the start's 0.250)"]
    assert len(res["curves"]["tutor2"]["train_acc"]) == 12
    paper.report.write_paper_markdown(res, str(tmp_path / "results.md"))
    text = (tmp_path / "results.md").read_text()
    assert "**does not hold**: FD's entropy stays above GRPO's" in text and "| fd - control |" in text
    paper.report.plot_paper(res, str(tmp_path))
    assert os.path.getsize(tmp_path / "pass_at_k.png") > 1000 and os.path.getsize(tmp_path / "curves.png") > 1000


def test_wall_time_counts_every_call_of_a_resumed_command(tmp_path):
    out = str(tmp_path)
    assert paper.spent(out) == 0.0                        # a first call
    assert paper.spent(out, 12.5) == 12.5                 # written after each job of the first call
    assert paper.spent(out) == 12.5                       # a resumed call starts from it
    paper.cli.new_folder(out, "paper.py", own=paper.OWN)  # and the folder still resumes
    (tmp_path / "minutes.json").write_text("{broken")
    assert paper.spent(out) == 0.0
