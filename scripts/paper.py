"""The paper's findings in miniature: every method over seeds, evaluated with intervals, in one command.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving", arXiv 2605.30861: FD keeps
the policy's entropy and scales better with k than GRPO (its Figures 2-3), FD learns from feedback
alone and the feedback source matters, GRPO started from FD beats both. Here, per seed: FD (reference
proof as feedback), its control (a teacher that sees no feedback), the feedback ablation (the tutor at
its four levels, the paper's prompt steps of Appendix C.3; Lean output, self, constant), GRPO, and FD -> GRPO; the starting model once. Matched cost: GRPO samples as
many attempts as FD (its steps are FD's x prompts / (grpo_prompts x group)); FD -> GRPO costs both.
Every model is then evaluated with n samples per task on three sets: mini:test, hand-written textbook
theorems the generator never produced (data/textbook.jsonl), and balanced probes, each rule beside its
mirror image (data/probes.jsonl: a learnt rule scores both sides, a learnt prior one).

    python -m scripts.paper                     # 3 seeds, 300 mini:test tasks (every method: about 100 minutes on 2 CPU cores)
    python -m scripts.paper --tasks mini:1,2 --methods fd control tutor1 tutor2 tutor3 tutor4 lean self constant
    python -m scripts.paper --quick             # 2 seeds, shorter runs, 150 mini:test tasks (about 15 minutes)
    python -m scripts.paper --turns 3 --methods fd control --model runs/small-prover-turns --out runs/paper_turns
    python -m scripts.paper --out runs/paper    # a killed command resumes: finished runs and evaluations stay

Writes OUT/results.json, OUT/results.md (mean and 95% interval over seeds), OUT/pass_at_k.png and
OUT/curves.png (bands over seeds). Each run is a subprocess of fd.py or grpo.py with one thread, each
model's evaluation one of paper.py itself (`--worker`: the model loads once for the three sets); `jobs`
of them run at once.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass

import torch

import evaluate
import lean_env
from fd_loss import TOPK
from fdlean import cli, intervals, lm, measure, report
from mini import probes, tasks
from small_prover import sft

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


@dataclass
class Config:
    out: str = "runs/paper"       # every run, evaluation and result goes here (a killed command resumes)
    quick: bool = False           # 2 seeds, 30 FD steps, n = 8 (4 per probe), the first 150 mini:test tasks
    seeds: int = 3                # runs per method, seeds 0, 1, ...
    model: str = "small-prover"   # the starting model of every run
    steps: int = 100              # FD steps (every FD variant)
    prompts: int = 32             # FD statements per step, one attempt each
    grpo_prompts: int = 16        # GRPO statements per step, `group` attempts each
    group: int = 5                # GRPO's G
    eval_n: int = 16              # samples per task in the final evaluations (mini:test, textbook)
    probes_n: int = 8             # samples per probe (each side of a rule pools dozens of probes)
    eval_limit: int = 300         # mini:test tasks evaluated, the first N (0: all 600; the split interleaves levels,
                                  # so 300 is 150 / 100 / 50 of levels 1 / 2 / 3; the spread over seeds dominates)
    jobs: int = 2                 # subprocesses at once, one thread each
    turns: int = 1                # candidates per attempt in every run and evaluation (turns.py; 1: one shot)
    methods: tuple = ()           # only these methods (default: all of fd control tutor1 tutor2 tutor3 tutor4 lean
                                  # self constant grpo fd_grpo), e.g. --methods fd control
    topk: int = TOPK              # every FD run's K (fd.py --topk; 25 is the paper's, of a 150k vocabulary)
    tasks: str = "mini:1"         # every run's training statements (fd.py's default). mini:1,2 keeps level 2 in view,
                                  # but there every feedback source fell below the control (docs/results.md)
    worker: str = ""              # internal: NAME=PATH, evaluate that model on every set in this process


QUICK = dict(seeds=2, steps=30, eval_n=8, probes_n=4, eval_limit=150)  # --quick
FEEDBACK = {"fd": "ground-truth", "control": "none", **{f"tutor{n}": f"tutor:{n}" for n in (1, 2, 3, 4)},
            "lean": "lean", "self": "self", "constant": "constant:Be concise."}  # method -> fd.py --feedback
FROZEN = {"constant"}   # run with a frozen teacher (--alpha 1), as the paper runs constant feedback (Section 5.3)
METHODS = list(FEEDBACK) + ["grpo", "fd_grpo"]
TEXTBOOK_PATH = os.path.join(HERE, "data", "textbook.jsonl")
SETS = {"mini": "mini:test", "textbook": f"jsonl:{TEXTBOOK_PATH}", "probes": f"jsonl:{probes.PROBES_PATH}"}
KS = (1, 2, 4, 8, 16)
OWN = ("runs", "eval", "results.json", "results.md", "pass_at_k.png", "curves.png", "minutes.json")   # what paper.py writes in --out


# ----------------------------------------------------------------------------- the runs

def grpo_steps(cfg: Config) -> int:
    """GRPO samples as many attempts as FD: steps x grpo_prompts x group = FD's steps x prompts."""
    return max(1, round(cfg.steps * cfg.prompts / (cfg.grpo_prompts * cfg.group)))


def chosen(cfg: Config) -> list[str]:
    """The methods run: --methods in METHODS' order (FD -> GRPO needs FD), else all of them."""
    return [m for m in METHODS if m in cfg.methods or (m == "fd" and "fd_grpo" in cfg.methods)] or list(METHODS)


def jobs(cfg: Config, base: str) -> list[dict]:
    """Every training run (name, command, steps, what it needs first) and every evaluation."""
    runs, out, methods = [], os.path.join(cfg.out, "runs"), chosen(cfg)
    common = ["--tasks", cfg.tasks, "--eval-limit", "60", "--eval-n", "1", "--eval-every", "0", "--threads", "1", "--turns", str(cfg.turns)]
    for seed in range(cfg.seeds):
        for method, spec in [(m, FEEDBACK[m]) for m in methods if m in FEEDBACK]:
            runs.append(dict(name=f"{method}_s{seed}", steps=cfg.steps, after=None, script="fd.py", args=[
                "--model", base, "--feedback", spec, "--seed", str(seed), "--steps", str(cfg.steps),
                "--prompts", str(cfg.prompts), "--topk", str(cfg.topk), *common,
                *(["--alpha", "1"] if method in FROZEN else [])]))
        grpo = ["--seed", str(seed), "--steps", str(grpo_steps(cfg)), "--prompts", str(cfg.grpo_prompts),
                "--group", str(cfg.group), *common]
        if "grpo" in methods:
            runs.append(dict(name=f"grpo_s{seed}", steps=grpo_steps(cfg), after=None, script="grpo.py",
                             args=["--model", base, *grpo]))
        if "fd_grpo" in methods:
            runs.append(dict(name=f"fd_grpo_s{seed}", steps=grpo_steps(cfg), after=f"fd_s{seed}", script="grpo.py",
                             args=["--init-from", os.path.join(out, f"fd_s{seed}"), *grpo]))
    for r in runs:
        r["folder"] = os.path.join(out, r["name"])
    return runs


def finished(folder: str, steps: int) -> bool:
    rows = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))] \
        if os.path.isfile(os.path.join(folder, "metrics.jsonl")) else []
    return os.path.isfile(os.path.join(folder, "final", "config.json")) and bool(rows) and rows[-1]["step"] == steps


CHILDREN = set()   # the subprocesses running now: Ctrl-C stops them and starts no other


def run(script: str, args: list[str], log: str) -> None:
    """One subprocess with one thread; its output goes to `log`. A failure stops paper.py with the log's path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f:
        child = subprocess.Popen([sys.executable, "-m", script.removesuffix(".py").replace("/", "."), *args],
                                 stdout=f, stderr=subprocess.STDOUT, env=env, cwd=HERE)
        CHILDREN.add(child)
        try:
            code = child.wait()
        finally:
            CHILDREN.discard(child)
    if code:
        raise RuntimeError(f"{script} {' '.join(args)} failed (exit {code}): see {log}")


def stop_children():
    """Ctrl-C: the running subprocesses are stopped (they resume from their last save next time)."""
    for child in list(CHILDREN):
        child.terminate()
    for child in list(CHILDREN):
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def train(r: dict) -> str:
    """A run, resumed from its last save when a killed command left one."""
    if finished(r["folder"], r["steps"]):
        return "done before"
    if os.path.isfile(os.path.join(r["folder"], "state.pt")):
        args = ["--resume", r["folder"], "--steps", str(r["steps"])]
    else:
        shutil.rmtree(r["folder"], ignore_errors=True)  # started, never saved: start again
        args = [*r["args"], "--out", r["folder"]]
    run(r["script"], args, r["folder"] + ".log")
    return "trained"


def evaluate_model(cfg: Config, name: str, path: str) -> str:
    """One model on every set, in one subprocess (paper.py --worker), so it is loaded once."""
    if all(os.path.isfile(os.path.join(cfg.out, "eval", name, which, "results.json")) for which in SETS):
        return "done before"
    run("scripts/paper.py", [*cli.command(cfg, "paper.py", worker=f"{name}={path}", jobs=1).split()[2:]],
        os.path.join(cfg.out, "eval", name + ".log"))
    return "evaluated"


def evaluate_sets(cfg: Config, name: str, path: str) -> None:
    """The worker: sample and check n attempts per task of each set (measure.sample_and_check), and write
    what evaluate.py writes for one model: results.json (evaluate.summarize) and attempts_1.jsonl."""
    torch.set_num_threads(1)
    policy, env = lm.load(path), lean_env.load("mini")
    for which, spec in SETS.items():
        folder = os.path.join(cfg.out, "eval", name, which)
        if os.path.isfile(os.path.join(folder, "results.json")):
            continue
        task_list = tasks.load(spec, limit=cfg.eval_limit if which == "mini" else 0)
        n = cfg.probes_n if which == "probes" else cfg.eval_n
        records = measure.sample_and_check(policy, env, task_list, n=n, turns=cfg.turns)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "attempts_1.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        summary = evaluate.summarize(records, task_list, [k for k in KS if k <= n], cfg.turns)
        with open(os.path.join(folder, "results.json"), "w") as f:  # written last: its presence means done
            json.dump({"tasks": spec, "n": n, "models": [{"model": path, **summary}]}, f)


def spent(out: str, minutes: float | None = None) -> float:
    """The wall time spent on this folder so far, over every call (a resumed command counts its earlier calls);
    with `minutes`, written first (after each job: a killed call keeps what it spent)."""
    path = os.path.join(out, "minutes.json")
    if minutes is not None:
        with open(path, "w") as f:
            json.dump({"minutes": minutes}, f)
    try:
        with open(path) as f:
            return float(json.load(f)["minutes"])
    except (OSError, ValueError, KeyError, TypeError):   # a first call, or a damaged file: nothing earlier counted
        return 0.0


def run_all(cfg: Config, base: str, before: float = 0.0) -> None:
    """Training runs as their dependencies allow, then the evaluations; a progress line per finished job.
    before: minutes spent on cfg.out by earlier calls."""
    runs = jobs(cfg, base)
    models = [("base", base)] + [(r["name"], os.path.join(r["folder"], "final")) for r in runs]
    total, done, start = len(runs) + len(models), 0, time.time()

    def progress(what, outcome, t0):
        nonlocal done
        done += 1
        print(f"[{done}/{total}] {what}: {outcome} in {time.time() - t0:.0f} s "
              f"(paper.py has run {(time.time() - start) / 60:.1f} min)", flush=True)
        spent(cfg.out, before + (time.time() - start) / 60)

    def timed(fn, *args):
        t0 = time.time()
        return fn(*args), t0

    pool = ThreadPoolExecutor(cfg.jobs)
    try:
        pending = {r["name"]: r for r in runs}
        running = {}
        while pending or running:
            for name, r in list(pending.items()):
                if r["after"] is None or (r["after"] not in pending and r["after"] not in running.values()):
                    running[pool.submit(timed, train, r)] = name
                    del pending[name]
            future = next(as_completed(running))
            name = running.pop(future)
            outcome, t0 = future.result()
            progress(f"run {name}", outcome, t0)
        futures = {pool.submit(timed, evaluate_model, cfg, name, path): name for name, path in models}
        for future in as_completed(futures):
            outcome, t0 = future.result()
            progress(f"evaluate {futures[future]}", outcome, t0)
    except BaseException:   # Ctrl-C or a failed job: no queued job starts, the running ones stop
        pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        raise
    pool.shutdown()


# ----------------------------------------------------------------------------- the results

def collect(cfg: Config) -> dict:
    """Mean and 95% interval over seeds of every figure, per method and set; FD against its control and
    the others paired over seeds; the probes per rule and side; the training curves."""
    sets = {which: tasks.load(spec, limit=cfg.eval_limit if which == "mini" else 0) for which, spec in SETS.items()}
    probe_list = probes.load()  # (task, its rule, pair and side)
    names = {"base": ["base"], **{m: [f"{m}_s{s}" for s in range(cfg.seeds)] for m in chosen(cfg)}}
    out = {"settings": asdict(cfg), "grpo_steps": grpo_steps(cfg), "methods": {}, "differences": {}, "probes": {},
           "curves": {}}
    pass1 = {}  # (method, set) -> list over seeds of per-task pass@1
    for method, runs in names.items():
        out["methods"][method] = {}
        for which, task_list in sets.items():
            summaries, per_task = [], []
            for name in runs:
                folder = os.path.join(cfg.out, "eval", name, which)
                with open(os.path.join(folder, "results.json")) as f:
                    summaries.append(json.load(f)["models"][0])
                per_task.append(measure.pass1_per_task(os.path.join(folder, "attempts_1.jsonl"), len(task_list)))
            pass1[method, which] = per_task
            figure = lambda get, summaries=summaries: intervals.interval95(
                [get(s) for s in summaries if get(s) is not None] or [float("nan")])
            out["methods"][method][which] = {
                "seeds": len(summaries),
                "pass_at_k": {k: figure(lambda s, k=k: s["pass_at_k"][k]) for k in summaries[0]["pass_at_k"]},
                "per_level": {lv: figure(lambda s, lv=lv: s["per_level"][lv]["1"]) for lv in summaries[0]["per_level"]},
                "entropy": figure(lambda s: s["entropy"]),
                "attempt_tokens": figure(lambda s: s["mean_attempt_tokens"]),
                "distinct_identifiers": figure(lambda s: s["n_distinct_identifiers"]),
            }
            if which == "probes":  # per rule: each side's pass@1, and how far apart the sides are
                scored = [probes.by_rule(probe_list, dict(zip([t.name for t in task_list], p))) for p in per_task]
                out["probes"][method] = {rule: {**{side: intervals.interval95([r[rule]["sides"][side] for r in scored])
                                                   for side in scored[0][rule]["sides"]},
                                                "balance": intervals.interval95([r[rule]["balance"] for r in scored])}
                                         for rule in scored[0]}
    for method in chosen(cfg):  # each method against what it adds to, seed by seed
        if method == "control":
            continue
        against = "grpo" if method == "fd_grpo" else "control" if method in FEEDBACK else "base"
        against = against if against in names else "base"
        out["differences"][f"{method} - {against}"] = {}
        for which in sets:
            theirs = pass1[against, which] * (cfg.seeds if against == "base" else 1)
            diffs = [sum(a) / len(a) - sum(b) / len(b) for a, b in zip(pass1[method, which], theirs)]
            mean, se = intervals.mean_se(diffs)
            out["differences"][f"{method} - {against}"][which] = dict(mean=mean, se=se, ci95=intervals.interval95(diffs)[1])
    for method in [m for m in ("fd", "control", "tutor1", "tutor2", "tutor3", "tutor4", "grpo", "fd_grpo") if m in names]:
        out["curves"][method] = {}
        for key in ("train_acc", "entropy"):
            series = []
            for name in names[method]:
                rows = [json.loads(line) for line in open(os.path.join(cfg.out, "runs", name, "metrics.jsonl"))]
                values = [r[key] for r in rows if key in r and r[key] is not None]
                series.append([sum(values[max(0, i - 9):i + 1]) / len(values[max(0, i - 9):i + 1])
                               for i in range(len(values))])  # a moving mean over 10 steps
            length = min(map(len, series))
            out["curves"][method][key] = [intervals.interval95([s[i] for s in series]) for i in range(length)]
    return out


def targets(res: dict) -> list[tuple[str, bool]]:
    """The paper's findings as this command checks them (those whose methods were run)."""
    m, checks = res["methods"], []
    if "fd - control" in res["differences"]:
        d = res["differences"]["fd - control"]
        checks += [(f"FD beats its control by more than two standard errors (over seeds) on {which}",
                    d[which]["mean"] > 2 * d[which]["se"]) for which in ("mini", "textbook")]
    if "fd" in m and "grpo" in m:
        checks.append(("FD's entropy stays above GRPO's (mini:test)",
                       m["fd"]["mini"]["entropy"][0] > m["grpo"]["mini"]["entropy"][0]))
        top = str(max(KS[:len(m["fd"]["mini"]["pass_at_k"])]))
        checks.append((f"FD's pass@{top} >= GRPO's (mini:test)",
                       m["fd"]["mini"]["pass_at_k"][top][0] >= m["grpo"]["mini"]["pass_at_k"][top][0]))
    d = res["differences"]
    for tutor in [t for t in ("tutor3", "tutor4") if f"{t} - control" in d]:
        checks += [(f"critique as rules ({tutor}) beats the control by more than two standard errors on {which}",
                    d[f"{tutor} - control"][which]["mean"] > 2 * d[f"{tutor} - control"][which]["se"])
                   for which in SETS]
        if "fd - control" in d:
            checks += [(f"{tutor} carries over at least as well as ground truth ({which})",
                        d[f"{tutor} - control"][which]["mean"] >= d["fd - control"][which]["mean"]) for which in
                       ("textbook", "probes")]
    for method in [x for x in ("fd", "tutor3", "tutor4") if x in m]:
        base, got = m["base"]["mini"]["per_level"].get("2"), m[method]["mini"]["per_level"].get("2")
        if base and got:
            checks.append((f"{method} keeps level 2 (mini:test pass@1 {got[0]:.3f} vs the start's {base[0]:.3f})",
                           got[0] >= base[0]))
    if "fd_grpo" in m:
        best = max(m, key=lambda k: m[k]["mini"]["pass_at_k"]["1"][0])
        checks.append((f"FD -> GRPO has the best pass@1 (mini:test; best: {best})", best == "fd_grpo"))
    return checks


def main(argv=None):
    cfg = cli.parse(Config, argv, prog="paper.py", description=__doc__.split("\n")[0])
    if cfg.quick:
        cfg = Config(**{**asdict(cfg), **QUICK})
    cli.check(cfg, [(f, lambda v: v >= 1, "at least 1") for f in ("steps", "prompts", "grpo_prompts",
                                                                   "eval_n", "probes_n", "jobs", "turns")]
              + [("seeds", lambda v: v >= 2, "at least 2 (one seed gives no interval over seeds: it cannot say)"),
                 ("group", lambda v: v >= 2, "at least 2"), ("eval_limit", lambda v: v >= 0, "0 or more"),
                 ("topk", lambda v: v >= 0, "0 or more (0: the full-vocabulary KL)")], "paper.py")
    if cfg.worker:
        name, _, path = cfg.worker.partition("=")
        return evaluate_sets(cfg, name, path)
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:   # before the model, which may have to be built first
        cli.fail(f"paper.py: --methods {' '.join(cfg.methods)}: unknown {', '.join(unknown)} (known: {' '.join(METHODS)})")
    with cli.user_errors(f"paper.py: --model {cfg.model}", lm.ModelNotFound):
        lm.check_name(cfg.model)   # before any job: a wrong name is one line, not a failure per queued run
    cli.new_folder(cfg.out, "paper.py", own=OWN)   # its own folder resumes; anything else is refused
    os.makedirs(cfg.out, exist_ok=True)
    t0, before = time.time(), spent(cfg.out)
    with cli.user_errors(f"paper.py: --model {cfg.model}", FileNotFoundError):
        base = sft.resolve_model(cfg.model)  # built once here, before the subprocesses want it
    grpo = any(m in ("grpo", "fd_grpo") for m in chosen(cfg))
    print(f"paper.py: {cfg.seeds} seeds x {len(chosen(cfg))} methods ({' '.join(chosen(cfg))}), "
          f"{'one-shot attempts' if cfg.turns == 1 else f'attempts of up to {cfg.turns} turns'}, FD {cfg.steps} steps x "
          f"{cfg.prompts} attempts" + (f", GRPO {grpo_steps(cfg)} steps x {cfg.grpo_prompts} x {cfg.group} attempts"
                                      if grpo else "")
          + f"; evaluation n = {cfg.eval_n} on {', '.join(SETS)}; {cfg.jobs} job{'s' * (cfg.jobs > 1)}; into {cfg.out}",
          flush=True)
    run_all(cfg, base, before)
    res = collect(cfg)
    res["targets"] = targets(res)
    res["minutes"] = round(spent(cfg.out, before + (time.time() - t0) / 60), 1)   # every call's, not this one's
    res["command"] = " ".join(["python -m scripts.paper"] + list(sys.argv[1:] if argv is None else argv))
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    report.write_paper_markdown(res, os.path.join(cfg.out, "results.md"))
    report.plot_paper(res, cfg.out)
    for text, holds in res["targets"]:
        print(f"{'holds' if holds else 'does not hold'}: {text}")
    print(f"wrote {cfg.out}/results.json, results.md, pass_at_k.png, curves.png ({res['minutes']} min)")
    return res


if __name__ == "__main__":
    cli.main(main, "paper.py", lambda: f"`{' '.join(['python -m scripts.paper'] + sys.argv[1:])}` resumes: finished "
             "runs and evaluations stay, the runs it was training continue from their last save")
