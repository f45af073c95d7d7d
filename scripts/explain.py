"""See the teacher: token by token, what the feedback in its prompt changes, and what FD's loss makes of it.

Paper: Narozniak et al., "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861),
Section 3, the token-level objective. The teacher is the student's own network with the feedback F(y)
in its prompt; at each token y_t of the student's attempt it gives pi_mu(. | x, F(y), y_<t), and the
student pi_theta(. | x, y_<t) is pulled toward its top K:
    L_t = - sum_{a in TopK_t} pi_mu(a | x, F(y), y_<t) log pi_theta(a | x, y_<t)
Here L_t is fd_loss.reference_loss on token t alone (K = fd_loss.TOPK, fd.py's defaults), so the
mean of the column is the loss of an FD step on this attempt; KL_t is the same call's
KL(teacher || student) on the teacher's top K, the part of L_t that is disagreement (L_t - KL_t is the
teacher's own uncertainty, its entropy over those K; on K tokens only, KL_t can dip just below 0). Training starts with the teacher's EMA weights equal to the student's, so here both are
one model and only the prompt differs (the EMA's alpha has not acted yet).

    python -m scripts.explain --model small-prover --out runs/explain           # one sampled attempt, first test task
    python -m scripts.explain --task mini_test_0003 --attempt "Iff.intro ha hb" --out runs/explain
    python -m scripts.explain --model small-prover --n 32 --out runs/explain    # 32 attempts: where the teacher moves

Writes OUT/explain.json (every number, the task, attempt, feedback and Lean's verdict), OUT/explain.png
(the first attempt) and, with --n > 1, OUT/positions.png (loss by relative position and by token).
"""
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch

import feedback
import lean_env
from fd_loss import TOPK, reference_loss
from fdlean import cli, lm, prompting, turns
from mini import tasks
from small_prover import sft


@dataclass
class Config:
    model: str = "small-prover"     # "small-prover" (built by small_prover/sft.py on first use), a local folder or an HF id
    out: str = "runs/explain"       # folder for explain.json, explain.png and positions.png
    tasks: str = "mini:test"        # mini:test | mini:train | jsonl:PATH
    task: str = ""                  # a task's name in --tasks (with --n N: N attempts at it); "": the first
                                    # task, or with --n N the first N tasks
    attempt: str = ""               # the attempt, verbatim, as the proof after `:=` ("": sample one)
    feedback: str = "ground-truth"  # F(y): ground-truth | tutor | lean | constant:TEXT | none | openai:MODEL | ...
    n: int = 1                      # attempts; above 1, also where in an attempt the teacher moves (positions.png)
    topk: int = TOPK                # K of the loss (fd.py's default); 0 = full-vocabulary KL
    temperature: float = 1.0        # student sampling, as in training
    max_new_tokens: int = 64        # token budget of a sampled attempt
    mark: int = 3                   # tokens marked in the table: those with the largest loss
    seed: int = 0                   # seeds the sampling
    threads: int = 1                # torch CPU threads
    verifier: str = "mini"          # mini | repl:PROJECT | lake:PROJECT | kimina:URL


RULES = [("n", lambda v: v >= 1, "at least 1"), ("topk", lambda v: v >= 0, "0 or more (0: the full-vocabulary KL)"),
         ("temperature", lambda v: v >= 0, "0 or more (0: greedy)"), ("max_new_tokens", lambda v: v >= 1, "at least 1"),
         ("mark", lambda v: v >= 0, "0 or more"), ("threads", lambda v: v >= 1, "at least 1")]


def setup(cfg: Config):
    """Everything the user named, checked before the model loads: one line and exit status 2 if wrong."""
    cli.check(cfg, RULES, "explain.py")
    cli.new_folder(cfg.out, "explain.py")
    if cfg.attempt and cfg.n > 1:
        cli.fail(f"explain.py: --attempt with --n {cfg.n}: a given attempt is one attempt (use --n 1)")
    with cli.user_errors(f"explain.py: --model {cfg.model}", lm.ModelNotFound):
        lm.check_name(cfg.model)
    with cli.user_errors(f"explain.py: --tasks {cfg.tasks}", OSError, ValueError):
        pool = tasks.load(cfg.tasks)
    if cfg.task:
        named = [t for t in pool if t.name == cfg.task]
        if not named:
            cli.fail(f"explain.py: --task {cfg.task}: no task of that name in --tasks {cfg.tasks} "
                     f"({len(pool)} tasks, e.g. {', '.join(t.name for t in pool[:3])})")
        batch = named * cfg.n
    else:
        batch = [pool[i % len(pool)] for i in range(cfg.n)]  # several tasks
    with cli.user_errors(f"explain.py: --verifier {cfg.verifier}", ValueError, lean_env.LeanNotFound):
        env = lean_env.load(cfg.verifier)
    with cli.user_errors(f"explain.py: --feedback {cfg.feedback}", ValueError, feedback.FeedbackError):
        source = None if cfg.feedback.startswith("self") else feedback.load(cfg.feedback)
    torch.set_num_threads(cfg.threads)
    with cli.user_errors(f"explain.py: --model {cfg.model}", lm.ModelNotFound):
        policy = lm.load(sft.resolve_model(cfg.model), dtype=torch.float32)
    source = source or feedback.load(cfg.feedback, policy=policy, max_tokens=cfg.max_new_tokens)
    return policy, env, source, batch


def attempts_of(cfg: Config, policy, env, batch) -> list:
    """turns.Attempt per task: sampled as FD samples (one shot), or the given text with the end token FD's
    samples end with; each with Lean's verdict."""
    if not cfg.attempt:
        return turns.rollout(policy, env, batch, turns=1, max_new_tokens=cfg.max_new_tokens,
                             temperature=cfg.temperature, generator=cfg.seed)
    tok, a = policy.tokenizer, turns.Attempt()
    a.add(tok(cfg.attempt, add_special_tokens=False)["input_ids"] + [tok.eos_token_id], True)
    a.candidates, a.turns = [prompting.proof_text(cfg.attempt)], 1
    a.results = env.check_many([(batch[0], a.answer)])
    a.transcript = a.answer
    return [a]


def shown(tok, i: int) -> str:
    """A token as text a reader can see: spaces as ·, line breaks and other control bytes escaped (\\n)."""
    text = tok.decode([i]).replace(" ", "·")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text) or f"<{i}>"


@torch.no_grad()
def explain(policy, task, a, text: str, topk: int) -> dict:
    """Per attempt token: the student's and the teacher's probability of it, the teacher's top 3, and
    L_t, KL_t from fd_loss.reference_loss on that token alone (the project's loss, not a re-derivation)."""
    tok, net = policy.tokenizer, policy.model
    prompts = [prompting.encode(tok, task), prompting.encode(tok, task, text)]  # student, teacher
    hidden, targets, _ = lm.attempt_hidden(net, prompts, [a.ids, a.ids], tok.pad_token_id)
    student, teacher = (hidden @ lm.head_weight(net).T).float()  # (L, V) each, aligned on the attempt
    p_s, p_t = student.softmax(-1), teacher.softmax(-1)
    log_s, log_t = student.log_softmax(-1), teacher.log_softmax(-1)
    h_s, h_t = (-(p * lp).sum(-1) for p, lp in ((p_s, log_s), (p_t, log_t)))   # entropies, nats
    rows = []
    for t, y in enumerate(a.ids):
        loss, kl = reference_loss(student[None, t:t + 1], teacher[None, t:t + 1], None, topk, return_kl=True)
        top = p_t[t].topk(3)
        rows.append(dict(position=t, id=y, token=shown(tok, y), p_student=p_s[t, y].item(),
                         p_teacher=p_t[t, y].item(), loss=loss.item(), kl=kl.item(),
                         log_ratio=(log_t[t, y] - log_s[t, y]).item(),   # above 0: FD raises this token
                         entropy_student=h_s[t].item(), entropy_teacher=h_t[t].item(),
                         teacher_top3=[[shown(tok, i), p] for i, p in zip(top.indices.tolist(), top.values.tolist())]))
    whole = reference_loss(student[None], teacher[None], None, topk).item()  # the attempt's loss, one call
    r = a.result
    return dict(task=task.name, statement=task.statement, attempt=tok.decode(a.ids), proof=a.answer, feedback=text,
                lean=dict(ok=r.ok, status=r.status, messages=list(r.messages)), loss=whole, tokens=rows)


def table(e: dict, mark: int) -> str:
    """The attempt as aligned columns, the `mark` tokens with the largest loss flagged, and those with the
    largest KL: a large loss with a small KL is the teacher's own uncertainty, not a disagreement."""
    rows, width = e["tokens"], max([5] + [len(r["token"]) for r in e["tokens"]])
    largest = {k: set(sorted(range(len(rows)), key=lambda t: -rows[t][k])[:mark]) for k in ("loss", "kl")}
    lines = [f"{'#':>3}  {'token':<{width}}  student  teacher    loss      KL   teacher's top 3"]
    for t, r in enumerate(rows):
        top = "  ".join(f"{w} {p:.2f}" for w, p in r["teacher_top3"])
        flag = ", ".join(w for k, w in (("loss", "loss"), ("kl", "KL")) if t in largest[k])
        flag = f"  <= largest {flag}" if flag else ""
        lines.append(f"{t:>3}  {r['token']:<{width}}  {r['p_student']:7.3f}  {r['p_teacher']:7.3f}  {r['loss']:6.3f}"
                     f"  {r['kl']:6.3f}   {top:<34}{flag}".rstrip())
    why = next((m for m in e["lean"]["messages"] if m.strip() and "internal exception" not in m), e["lean"]["status"])
    verdict = "accepted" if e["lean"]["ok"] else f"rejected: {' '.join(why.split())[:160]}"
    return (f"task {e['task']}: {e['statement']}\nattempt: {e['proof']}   Lean: {verdict}\n"
            f"feedback in the teacher's prompt: {e['feedback'] or '(none)'}\n" + "\n".join(lines) +
            f"\nloss (mean of the column) {sum(r['loss'] for r in rows) / len(rows):.4f}; fd_loss.reference_loss on "
            f"the whole attempt {e['loss']:.4f}; mean KL {sum(r['kl'] for r in rows) / len(rows):.4f}")


def plot(e: dict, path: str):
    """A strip of per-token loss and KL over the attempt, the student's and teacher's probabilities under it."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on the training machines
    import matplotlib.pyplot as plt
    rows = e["tokens"]
    x = range(len(rows))
    fig, (strip, probs) = plt.subplots(2, 1, figsize=(max(6, 0.45 * len(rows) + 2), 4.6), sharex=True,
                                       gridspec_kw=dict(height_ratios=[1.3, 3]))
    cells = [[r["loss"] for r in rows], [r["kl"] for r in rows]]
    top = max(max(cells[0]), 1e-9)
    strip.imshow(cells, aspect="auto", cmap="Reds", vmin=0, vmax=top)
    for k, line in enumerate(cells):  # the numbers themselves: no colour bar to read off
        for t, v in enumerate(line):
            strip.text(t, k, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 * top else "black")
    strip.set_yticks([0, 1], ["loss $L_t$", "KL$_t$"])
    probs.plot(x, [r["p_student"] for r in rows], "o-", label="student  p(y_t | x, y_<t)")
    probs.plot(x, [r["p_teacher"] for r in rows], "s-", label="teacher  p(y_t | x, F(y), y_<t)")
    probs.set(ylim=(-0.03, 1.03), ylabel="probability of the attempt's token")
    probs.set_xticks(list(x), [r["token"] for r in rows], rotation=60, ha="right", fontsize=9,
                     family="monospace")  # where ⟨ and ( differ at a small size
    probs.legend(fontsize=8, loc="lower left")
    verdict = "Lean accepts" if e["lean"]["ok"] else "Lean rejects"
    strip.set_title(f"{e['task']}: {e['proof'][:60]!r} ({verdict})\nteacher sees: {e['feedback'][:90]!r}", fontsize=9)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def positions(explained: list, path: str) -> dict:
    """Over many attempts: mean L_t and KL_t by relative position (deciles) and by token, printed and plotted.
    Tokens are ranked by KL: where the teacher disagrees, not where it is merely unsure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_decile, by_token = defaultdict(list), defaultdict(list)
    for e in explained:
        for r in e["tokens"]:
            by_decile[int(10 * (r["position"] + 0.5) / len(e["tokens"]))].append(r)  # the token's middle
            by_token[r["token"]].append(r)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    se = lambda rs, k: (sum((r[k] - mean(rs, k)) ** 2 for r in rs) / max(1, len(rs) - 1) / len(rs)) ** 0.5  # noqa: E731
    deciles = [dict(decile=d, tokens=len(rs), loss=mean(rs, "loss"), kl=mean(rs, "kl"), kl_se=se(rs, "kl"))
               for d, rs in sorted(by_decile.items())]
    tokens = sorted((dict(token=w, count=len(rs), loss=mean(rs, "loss"), kl=mean(rs, "kl"))
                     for w, rs in by_token.items() if len(rs) >= 3), key=lambda d: -d["kl"])[:15]
    ends = {  # the attempt's first and last token (its end token when it finished), and Lean's verdict
        "first token": [e["tokens"][0] for e in explained], "last token": [e["tokens"][-1] for e in explained],
        "tokens between": [r for e in explained for r in e["tokens"][1:-1]],
        "accepted attempts": [r for e in explained if e["lean"]["ok"] for r in e["tokens"]],
        "rejected attempts": [r for e in explained if not e["lean"]["ok"] for r in e["tokens"]]}
    # does the teacher raise the attempt's tokens, and is it surer or less sure than the student?
    ends = {k: dict(tokens=len(rs), kl=mean(rs, "kl"), kl_se=se(rs, "kl"), log_ratio=mean(rs, "log_ratio"),
                    log_ratio_se=se(rs, "log_ratio"),
                    entropy_gap=mean(rs, "entropy_teacher") - mean(rs, "entropy_student"))
            for k, rs in ends.items() if rs}
    print(f"\nover {len(explained)} attempts: mean loss and KL by position in the attempt (tenths of its length)")
    print("\n".join(f"  {d['decile'] * 10:>3}-{d['decile'] * 10 + 10:<3}%  {d['tokens']:>4} tokens  loss {d['loss']:.3f}"
                    f"  KL {d['kl']:.3f} (SE {d['kl_se']:.3f})" for d in deciles))
    print("mean KL: " + "; ".join(f"{k} {d['kl']:.3f} (SE {d['kl_se']:.3f}, {d['tokens']} tokens)" for k, d in ends.items()))
    print("the teacher on the attempt's own tokens, log p_teacher - log p_student (above 0: FD raises them) and its "
          "entropy minus the student's (above 0: FD spreads the student out):")
    print("\n".join(f"  {k:<18} {d['log_ratio']:+.3f} (SE {d['log_ratio_se']:.3f})  entropy {d['entropy_gap']:+.3f} nats"
                    for k, d in ends.items() if k.endswith("attempts")))
    print("tokens where the teacher disagrees most: largest mean KL (seen 3 times or more):")
    print("\n".join(f"  {d['token']:<12} x{d['count']:<4} loss {d['loss']:.3f}  KL {d['kl']:.3f}" for d in tokens))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    centres = [d["decile"] * 10 + 5 for d in deciles]
    left.plot(centres, [d["loss"] for d in deciles], "o-", label="loss $L_t$")
    left.errorbar(centres, [d["kl"] for d in deciles], [d["kl_se"] for d in deciles], fmt="s-", capsize=3,
                  label="top-K KL(teacher || student), ± 1 SE")
    left.set(xlabel="position in the attempt (% of its tokens)", ylabel="mean over tokens", xlim=(0, 100))
    left.legend(fontsize=8)
    left.set_title(f"where the teacher disagrees ({len(explained)} attempts)", fontsize=9)
    ys = range(len(tokens))[::-1]
    right.barh(ys, [d["loss"] for d in tokens], label="loss")
    right.barh(ys, [d["kl"] for d in tokens], label="KL")
    right.set_yticks(list(ys), [f"{d['token']} (x{d['count']})" for d in tokens], fontsize=9, family="monospace")
    right.set(xlabel="mean over its occurrences")
    right.legend(fontsize=8)
    right.set_title("tokens with the largest mean KL (seen 3+ times)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return dict(deciles=deciles, tokens=tokens, where=ends)


def main(argv=None) -> dict:
    cfg = cli.parse(Config, argv, prog="explain.py", description=__doc__.split("\n")[0])
    policy, env, source, batch = setup(cfg)
    attempts = attempts_of(cfg, policy, env, batch)
    texts = source.batch([(t, a, a.result) for t, a in zip(batch, attempts)])  # framed, as fd.py frames them
    explained = [explain(policy, t, a, f, cfg.topk) for t, a, f in zip(batch, attempts, texts)]
    print(table(explained[0], cfg.mark))
    os.makedirs(cfg.out, exist_ok=True)
    plot(explained[0], os.path.join(cfg.out, "explain.png"))
    out = dict(settings=asdict(cfg), model_source=getattr(policy.model, "name_or_path", cfg.model), attempts=explained)
    if cfg.n > 1:
        out["positions"] = positions(explained, os.path.join(cfg.out, "positions.png"))
    with open(os.path.join(cfg.out, "explain.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False, allow_nan=False)
    print(f"wrote {cfg.out}/explain.json, explain.png" + (", positions.png" if cfg.n > 1 else ""))
    return out


if __name__ == "__main__":
    cli.main(main, "explain.py", lambda: "Its --out folder may hold part of the output: explain into a new --out.")
