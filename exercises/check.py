"""The classroom exercises' checker: runs an exercise's cases against a student's file, in plain words.

    python exercises/check.py --list                      # the exercises, what each asks, rough time
    python exercises/check.py pass_at_k                   # checks exercises/e1_pass_at_k.py
    python exercises/check.py pass_at_k --file my.py      # checks a copy kept elsewhere
    python exercises/check.py pass_at_k --reference       # the same cases against the project's own code

Every expected value comes from the project's own implementation, imported from the repository root
(evaluate.pass_at_k, fd_loss.reference_loss, fd.ema_update, grpo.group_advantages / grpo_loss,
feedback.frame / lean_feedback, fd_loss.fused_loss, lean_env), so an exercise stays true when the code
changes. `--reference` runs the same cases through a small adapter per exercise that maps the
exercise's function to the project's; tests/test_exercises.py holds every exercise to it.
Exit status: 0 when every case passes, 1 when one fails, 2 for a usage error (unknown id, no file).
"""
import importlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import traceback
import types
import weakref
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the project's modules are the source of every expected value

from fdlean import cli  # noqa: E402


@dataclass
class Config:
    id: str = ""            # the exercise to check (see --list)
    list: bool = False      # list the exercises with a line each and a rough time
    reference: bool = False  # run the cases against the project's implementation instead of a student's file
    file: str = ""          # the student's file (default: exercises/eN_ID.py next to this checker)


class Fail(Exception):
    """One case's failure, in plain words (what was called, what was expected, what came back)."""


# ----------------------------------------------------------------------------------------------
# Comparing, in words
# ----------------------------------------------------------------------------------------------
def short(x):
    """A value in a few words: small tensors in full, large ones by shape and dtype."""
    import torch
    if isinstance(x, torch.Tensor):
        if x.numel() <= 12:
            return f"tensor({[round(v, 6) for v in x.detach().double().flatten().tolist()]}, shape {tuple(x.shape)})"
        return f"a tensor of shape {tuple(x.shape)}, {x.dtype}"
    if isinstance(x, str):
        return repr(x) if len(x) <= 200 else repr(x[:200]) + f"... ({len(x)} characters)"
    if isinstance(x, float):
        return f"{x:.10g}"
    return repr(x)


def same_number(got, expected, what, tol=1e-9):
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise Fail(f"{what}: expected a number ({expected:.10g}), got {type(got).__name__}: {short(got)}")
    if not math.isfinite(got) or abs(got - expected) > tol * max(1.0, abs(expected)):
        raise Fail(f"{what}:\n  expected {expected:.10g}\n  got      {got:.10g}")


def same_tensor(got, expected, what, atol=1e-5, rtol=1e-4):
    import torch
    if not isinstance(got, torch.Tensor):
        raise Fail(f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}: {short(got)}")
    if tuple(got.shape) != tuple(expected.shape):
        raise Fail(f"{what}: expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    got, expected = got.detach().double(), expected.detach().double()
    if not torch.isfinite(got).all() and torch.isfinite(expected).all():
        bad = (~torch.isfinite(got)).nonzero()[0].tolist()
        raise Fail(f"{what}: got a non-finite value ({got[tuple(bad)].item()}) at index {tuple(bad)}; "
                   f"expected {expected[tuple(bad)].item():.6g}")
    if not torch.allclose(got, expected, atol=atol, rtol=rtol):
        diff = (got - expected).abs()
        at = tuple(divmod_index(diff.argmax().item(), diff.shape))
        both = f"\n  expected {short(expected)}\n  got      {short(got)}" if got.numel() <= 12 else ""
        raise Fail(f"{what}: largest difference {diff.max().item():.3g} at index {at}: expected "
                   f"{expected[at].item():.8g}, got {got[at].item():.8g}{both}")


def divmod_index(flat, shape):
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return reversed(index)


def same_text(got, expected, what):
    if not isinstance(got, str):
        raise Fail(f"{what}: expected a str, got {type(got).__name__}: {short(got)}")
    if got != expected:
        i = next((j for j, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise Fail(f"{what}: the texts differ from character {i} on "
                   f"(expected {expected[i:i + 20]!r}, got {got[i:i + 20]!r})\n  expected {short(expected)}\n"
                   f"  got      {short(got)}")


# ----------------------------------------------------------------------------------------------
# 1. pass@k (evaluate.py)
# ----------------------------------------------------------------------------------------------
def pass_at_k_cases(impl):
    import evaluate
    for n, c, k, note in [(1, 0, 1, "one wrong sample"), (1, 1, 1, "one right sample"), (10, 3, 1, "k = 1: c / n"),
                          (10, 3, 2, ""), (16, 4, 8, ""), (5, 0, 1, "c = 0: no correct sample"),
                          (5, 0, 5, "c = 0, k = n"), (5, 5, 5, "c = n"), (5, 1, 5, "k = n: every sample is picked"),
                          (16, 15, 2, "n - c < k: every pick holds a correct one"), (200, 7, 100, ""),
                          (3000, 2, 1000, "large n: binomials far beyond a float")]:
        def case(n=n, c=c, k=k):
            got, expected = impl.pass_at_k(n, c, k), evaluate.pass_at_k(n, c, k)
            try:
                same_number(got, expected, f"pass_at_k(n={n}, c={c}, k={k})")
            except Fail as e:
                if isinstance(got, float) and abs(got - (1 - (1 - c / n) ** k)) < 1e-12 and expected != got:
                    raise Fail(f"{e}\n  (that is 1 - (1 - c/n)^k, the biased estimate: it samples WITH replacement)") from None
                raise
        yield f"n={n}, c={c}, k={k}" + (f"  ({note})" if note else ""), case


# ----------------------------------------------------------------------------------------------
# 2. The FD loss on full logits (fd_loss.reference_loss)
# ----------------------------------------------------------------------------------------------
def fd_loss_cases(impl):
    import torch

    import fd_loss
    specs = [  # (what, B, T, V, k, mask kind, logit scale)
        ("B=2, T=5, V=11, K=3, int mask", 2, 5, 11, 3, "int", 1.0),
        ("B=2, T=5, V=11, K=3, bool mask", 2, 5, 11, 3, "bool", 1.0),
        ("K=1: the teacher's single most likely token", 3, 4, 9, 1, "int", 1.0),
        ("K=V: the whole vocabulary (plain cross-entropy against the teacher)", 2, 3, 7, 7, "int", 1.0),
        ("large logits (x 60): is the log-softmax stable?", 2, 4, 13, 4, "int", 60.0),
        ("B=1, T=1", 1, 1, 5, 2, "int", 1.0),
        ("mask all 0: the loss must be 0, not NaN", 2, 3, 6, 2, "zero", 1.0),
    ]
    for seed, (what, b, t, v, k, kind, scale) in enumerate(specs):
        def case(seed=seed, b=b, t=t, v=v, k=k, kind=kind, scale=scale):
            g = torch.Generator().manual_seed(seed)
            s = torch.randn(b, t, v, generator=g) * scale
            te = torch.randn(b, t, v, generator=g) * scale
            m = torch.rand(b, t, generator=g) < 0.7
            m.view(-1)[0] = True
            if kind == "zero":
                m[:] = False
            mask = m if kind == "bool" else m.long()
            s_got, t_got = s.clone().requires_grad_(), te.clone().requires_grad_()
            got = impl.fd_loss(s_got, t_got, mask.clone(), k)
            s_exp = s.clone().requires_grad_()
            expected = fd_loss.reference_loss(s_exp, te, mask, topk=k)
            if not isinstance(got, torch.Tensor) or got.dim() != 0:
                raise Fail(f"expected a 0-dim tensor (a scalar), got {short(got)}")
            same_tensor(got, expected, "the loss")
            if kind == "zero":
                return
            if not got.requires_grad:
                raise Fail("the loss has no gradient (requires_grad is False): was something detached or "
                           "computed under torch.no_grad()?")
            got.backward()
            expected.backward()
            same_tensor(s_got.grad, s_exp.grad, "the gradient w.r.t. student_logits")
            if t_got.grad is not None and t_got.grad.abs().max() > 0:
                raise Fail("the teacher received a gradient: it is a target only (detach its logits)")
        yield what, case


# ----------------------------------------------------------------------------------------------
# 3. The EMA teacher (fd.ema_update)
# ----------------------------------------------------------------------------------------------
def _tied_net(seed):
    """A tiny LM-shaped network whose input embedding and output head share one weight tensor."""
    import torch
    torch.manual_seed(seed)
    net = torch.nn.Sequential()
    net.emb = torch.nn.Embedding(7, 4)
    net.mid = torch.nn.Linear(4, 4)
    net.norm = torch.nn.LayerNorm(4)
    net.head = torch.nn.Linear(4, 7, bias=False)
    net.head.weight = net.emb.weight
    return net


def ema_cases(impl):
    import copy

    import torch

    import fd
    for seed, (alpha, times) in enumerate([(0.9, 1), (0.0, 1), (1.0, 1), (0.25, 1), (0.5, 3)]):
        def case(seed=seed, alpha=alpha, times=times):
            student = _tied_net(seed)
            teacher = copy.deepcopy(student)
            with torch.no_grad():
                for p in teacher.parameters():
                    p.add_(torch.randn_like(p))
            teacher.requires_grad_(False)
            expected, student_before = copy.deepcopy(teacher), copy.deepcopy(student)
            for _ in range(times):
                fd.ema_update(expected, student_before, alpha)
            objects = [id(p) for p in teacher.parameters()]
            for _ in range(times):
                impl.ema_update(teacher, student, alpha)
            if teacher.head.weight is not teacher.emb.weight:
                raise Fail("the teacher's tied weights came apart: head.weight is no longer emb.weight "
                           "(a parameter was replaced by a new tensor instead of updated in place)")
            if [id(p) for p in teacher.parameters()] != objects:
                raise Fail("the teacher's parameters were replaced by new tensors: update them in place")
            for (name, p), q in zip(teacher.named_parameters(), expected.parameters()):
                if p.requires_grad or p.grad_fn is not None:
                    raise Fail(f"teacher parameter {name} now takes part in autograd (requires_grad="
                               f"{p.requires_grad}): do the update under torch.no_grad()")
                try:
                    same_tensor(p, q, f"teacher parameter {name}", atol=1e-6, rtol=1e-5)
                except Fail as e:
                    tied = " (emb.weight IS head.weight, one tensor: was it averaged twice?)" if name == "emb.weight" else ""
                    raise Fail(f"{e}{tied}") from None
            for (name, p), q in zip(student.named_parameters(), student_before.parameters()):
                if not torch.equal(p, q):
                    raise Fail(f"the student's parameter {name} changed: only the teacher moves")
        yield f"alpha={alpha}" + (f", {times} updates in a row" if times > 1 else "") + \
            {0.0: " (the teacher becomes the student)", 1.0: " (the teacher stays as it is)"}.get(alpha, ""), case


# ----------------------------------------------------------------------------------------------
# 4. GRPO: group advantages and the k3 KL (grpo.py)
# ----------------------------------------------------------------------------------------------
def project_k3(logp, ref_logp):
    """The project's per-token k3, read out of grpo.grpo_loss (zero advantage, kl_coef 1): one token at a time."""
    import torch

    import grpo
    out = torch.empty_like(logp)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            mask = torch.zeros(logp.shape, dtype=torch.bool)
            mask[i, t] = True
            loss, _ = grpo.grpo_loss(logp, logp, ref_logp, torch.zeros(logp.shape[0]), mask, kl_coef=1.0)
            out[i, t] = loss.item()
    return out


def grpo_cases(impl):
    import torch

    import grpo
    binary = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0], [1, 1, 0, 1, 1],
                           [0, 0, 1, 1, 0]], dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    adv_specs = [
        ("advantages: 6 groups of G=5 binary rewards (two groups all equal), std_scale=True", binary, True),
        ("advantages: the same rewards, std_scale=False (Dr. GRPO)", binary, False),
        ("advantages: G=2", torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), True),
        ("advantages: real-valued rewards in float64", torch.rand(4, 6, generator=g, dtype=torch.float64), True),
        ("advantages: a group of equal non-binary rewards [0.7, 0.7, 0.7] must give exactly 0",
         torch.tensor([[0.7, 0.7, 0.7], [0.7, 0.2, 0.7]], dtype=torch.float64), True),
    ]
    for what, rewards, std_scale in adv_specs:
        def case(rewards=rewards, std_scale=std_scale):
            got = impl.group_advantages(rewards.clone(), std_scale=std_scale)
            expected = grpo.group_advantages(rewards.clone(), std_scale=std_scale)
            try:
                same_tensor(got, expected, f"group_advantages({short(rewards)}, std_scale={std_scale})")
            except Fail as e:
                r = rewards.double()
                biased = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + grpo.ADV_EPS)
                if isinstance(got, torch.Tensor) and got.shape == biased.shape and torch.allclose(got.double(), biased, atol=1e-5):
                    raise Fail(f"{e}\n  (that is the std dividing by G; the unbiased std divides by G - 1)") from None
                raise
            flat = (rewards == rewards[:, :1]).all(dim=1)
            for row in flat.nonzero().flatten().tolist():
                if (got[row] != 0).any():
                    raise Fail(f"group {row} has equal rewards {rewards[row].tolist()}: its advantages must be "
                               f"exactly 0.0, got {got[row].tolist()} (float rounding in r - mean)")
        yield what, case
    k3_specs = [
        ("k3: B=3, T=6 random log-probs", torch.rand(3, 6, generator=g, dtype=torch.float64).log(),
         torch.rand(3, 6, generator=g, dtype=torch.float64).log()),
        ("k3: logp == ref_logp gives exactly 0", torch.full((2, 3), -1.5, dtype=torch.float64),
         torch.full((2, 3), -1.5, dtype=torch.float64)),
        ("k3: large differences (d = ref - logp = +5 and -5)", torch.tensor([[-6.0, -1.0]], dtype=torch.float64),
         torch.tensor([[-1.0, -6.0]], dtype=torch.float64)),
    ]
    for what, logp, ref in k3_specs:
        def case(logp=logp, ref=ref):
            got = impl.k3_kl(logp.clone(), ref.clone())
            same_tensor(got, project_k3(logp, ref), "k3_kl(logp, ref_logp)", atol=1e-9, rtol=1e-9)
            if (got < 0).any():
                raise Fail("k3 is never negative (exp(d) >= 1 + d), got a negative value")
        yield what, case


# ----------------------------------------------------------------------------------------------
# 5. Lean's output as feedback, framed (feedback.py)
# ----------------------------------------------------------------------------------------------
def project_lean_feedback(proof, ok, status, messages, limit=300):
    import feedback
    import lean_env
    task = lean_env.Task("mini_ex", "theorem mini_ex (p q : Prop) (h1 : And p q) : And q p :=")  # a mini-world task
    return feedback.lean_feedback(task, proof, lean_env.Result(ok, status, list(messages)),
                                  feedback.Config(lean_chars=limit))


def feedback_cases(impl):
    import feedback
    for kind, text in [("solution", "⟨h1.2, h1.1⟩"), ("lean", "1:0: error: unknown identifier 'h3'\n"),
                       ("hint", "  1. Do build the pair ⟨_, _⟩.\n2. Don't use h2.1.  \n")]:
        def case(kind=kind, text=text):
            same_text(impl.frame(kind, text), feedback.frame(kind, text), f"frame({kind!r}, {text!r})")
        yield f"frame: kind {kind!r}", case
    err = "1:4: error: Type mismatch\n  h1\nhas type\n  And p q\nbut is expected to have type\n  And q p"
    noise = "1:0: error: internal exception #3"
    long = "1:0: error: " + "unsolved goals p q : Prop ⊢ And q p " * 12
    specs = [
        ("accepted: the proof, framed as a solution", ("  ⟨h1.2, h1.1⟩ \n", True, "ok", []), 300),
        ("rejected: one message", ("h1", False, "error", [err]), 300),
        ("rejected: the noise and blank messages are left out", ("h1", False, "error", [err, noise, "  ", "\n"]), 300),
        ("rejected: two real messages, joined by a newline", ("x", False, "error", [" " + err + " ", long]), 2000),
        ("rejected, only noise left: (no messages; status: ...)", ("h1", False, "error", [noise]), 300),
        ("timeout, no messages at all", ("h1", False, "timeout", []), 300),
        ("a long message is cut at the limit, with ' ...'", ("h1", False, "error", [long]), 300),
        ("cut where the limit falls on a space: trailing whitespace removed", ("h1", False, "error", [long]), 48),
        ("exactly `limit` characters: not cut", ("h1", False, "error", [err]), len(err)),
    ]
    for what, (proof, ok, status, messages), limit in specs:
        def case(proof=proof, ok=ok, status=status, messages=messages, limit=limit):
            got = impl.lean_feedback(proof, ok, status, list(messages), limit)
            expected = project_lean_feedback(proof, ok, status, messages, limit)
            same_text(got, expected, f"lean_feedback(proof={proof!r}, ok={ok}, status={status!r}, "
                                     f"{len(messages)} messages, limit={limit})")
        yield what, case


# ----------------------------------------------------------------------------------------------
# 6. The fused, chunked loss (fd_loss.fused_loss), held to the plain one and to its memory promise
# ----------------------------------------------------------------------------------------------
class WatchLogits:
    """While active: every tensor an op makes (forward and backward) whose last dimension is the vocabulary
    and that holds more than chunk_size x V numbers is recorded (views of existing tensors do not count)."""

    def __init__(self, vocab, limit):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        watch = self
        self.seen = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                          if isinstance(a, torch.Tensor)}
                for o in out if isinstance(out, (tuple, list)) else [out]:
                    if (isinstance(o, torch.Tensor) and o.dim() and o.shape[-1] == vocab and o.numel() > limit
                            and o.untyped_storage().data_ptr() not in inputs):  # a view or an in-place op: no new memory
                        watch.seen.append((str(func), tuple(o.shape)))
                return out
        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def fused_loss_cases(impl):
    import torch

    import fd_loss
    b, t, h, v, k = 2, 12, 4, 50, 5  # hidden size <= every chunk size below: only logits can be (rows, V) and big
    specs = [("B=2, T=12, V=50, K=5, chunk 4, mask with gaps", 4, "int"),
             ("chunk 5 (does not divide the 24 positions), bool mask", 5, "bool"),
             ("chunk 1", 1, "int"),
             ("chunk 100 (one chunk holds every position)", 100, "int"),
             ("mask all 0: loss 0 and zero gradients", 4, "zero")]
    for seed, (what, chunk, kind) in enumerate(specs):
        def case(seed=seed, chunk=chunk, kind=kind):
            g = torch.Generator().manual_seed(100 + seed)
            hidden, weight = torch.randn(b, t, h, generator=g), torch.randn(v, h, generator=g)
            t_hidden, t_weight = torch.randn(b, t, h, generator=g), torch.randn(v, h, generator=g)
            m = torch.rand(b, t, generator=g) < 0.6
            m.view(-1)[0] = True
            if kind == "zero":
                m[:] = False
            mask = m if kind == "bool" else m.long()
            ids, logprobs = fd_loss.teacher_topk(t_hidden, t_weight, k, chunk_size=chunk)
            h_got, w_got = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
            saved = []

            def pack(x):
                if x.dim() and x.shape[-1] == v and x.untyped_storage().data_ptr() != w_got.untyped_storage().data_ptr():
                    saved.append(weakref.ref(x))
                return x
            with WatchLogits(v, chunk * v) as watch, torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
                got = impl.fused_fd_loss(h_got, w_got, ids, logprobs, mask.clone(), chunk)
            alive = {}
            for r in saved:
                x = r()
                if x is not None:
                    alive[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes() // x.element_size()
            h_exp, w_exp = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
            expected = fd_loss.reference_loss(h_exp @ w_exp.T, t_hidden @ t_weight.T, mask, topk=k)
            if not isinstance(got, torch.Tensor) or got.dim() != 0:
                raise Fail(f"expected a 0-dim tensor (a scalar), got {short(got)}")
            same_tensor(got, expected, "the loss")
            if expected.requires_grad and not got.requires_grad:
                raise Fail("the loss has no gradient (requires_grad is False)")
            if got.requires_grad:
                with WatchLogits(v, chunk * v) as watch_back:
                    got.backward()
                watch.seen += watch_back.seen
            expected.backward()
            for name, x in [("hidden", h_got), ("weight", w_got)]:
                grad = x.grad if x.grad is not None else torch.zeros_like(x)
                same_tensor(grad, (h_exp if name == "hidden" else w_exp).grad, f"the gradient w.r.t. {name}")
            if watch.seen:
                op, shape = watch.seen[0]
                raise Fail(f"right numbers, but a logits-sized tensor of shape {shape} was made (by {op}): more "
                           f"than chunk_size x V = {chunk} x {v} numbers at once. Compute the logits a chunk at a time.")
            if sum(alive.values()) > 2 * chunk * v:
                raise Fail(f"right numbers, but after the forward autograd keeps {sum(alive.values())} logits-sized "
                           f"numbers alive for the backward ({len(alive)} tensors; at most about 2 x chunk_size x V = "
                           f"{2 * chunk * v} allowed): every chunk's softmax is kept. Compute each chunk's gradient "
                           "in the forward (a torch.autograd.Function) or recompute it in the backward.")
        yield what, case


# ----------------------------------------------------------------------------------------------
# 7. Fool a weak checker; the real one refuses (lean_env.py, fdlean/screen.py)
# ----------------------------------------------------------------------------------------------
FOOL = "theorem fool (p : Prop) : p :="


def weak_check(proof):
    """The deliberately WEAK checker: no word `sorry` in the text, and no error from Lean. Returns
    (accepted, why, Lean's messages). Lean runs through lean_env.py's own command line (--mini --json)."""
    from fdlean import screen as lean_screen
    if re.search(r"\bsorry\b", proof):
        return False, "the proof text contains the word `sorry`", []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fool.lean")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{FOOL}\n{proof}\n#print axioms fool\n")
        p = subprocess.run([sys.executable, os.path.join(ROOT, "lean_env.py"), "--mini", "--json", path],
                           capture_output=True, text=True, timeout=60)
    messages = [m for line in p.stdout.splitlines() for m in lean_screen.parse_messages(line)]
    if p.returncode not in (0, 1) or (p.returncode == 1 and not messages):
        raise RuntimeError(f"Lean did not run (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    said = [f"{m['severity']}: {m['data']}" for m in messages]
    errors = [s for s in said if s.startswith("error")]
    return (not errors), (f"Lean reported an error: {errors[0]}" if errors else ""), said


def fool_cases(impl):
    import lean_env

    def case():
        proof = impl.fooling_proof()
        if not isinstance(proof, str) or not proof.strip():
            raise Fail(f"fooling_proof() should return the proof text (a non-empty str), got {short(proof)}")
        try:
            accepted, why, said = weak_check(proof)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            raise Fail(f"Lean could not run here, so nothing was checked: {e}") from None
        if not accepted:
            shown = "\n    ".join(s.replace("\n", "\n    ") for s in said if not s.startswith("information"))
            raise Fail(f"the weak checker refused {proof!r}: {why}" + (f"\n  Lean said:\n    {shown}" if shown else ""))
        real = lean_env.load("mini").check(lean_env.Task("fool", FOOL), proof)
        if real.ok:
            raise Fail(f"the REAL checker accepted {proof!r} as a proof that every proposition is true: a bug in "
                       "lean_env.py, please report it")
        axioms = [s for s in said if "axioms" in s] or ["(no #print axioms line: the proof changed the file)"]
        return (f"the weak checker accepted {proof!r}; Lean said only:\n    " +
                "\n    ".join(s.split("\n")[0] for s in said) +
                f"\n  the real checker (lean_env.py) refused it: {real.status}: {'; '.join(real.messages)[:300]}\n"
                f"  why: Lean's own `#print axioms fool` answers {axioms[0].split(': ', 1)[-1]!r}. An axiom is\n"
                "  assumed, not proved: mini/prelude.lean's `axiom sorryAx (α : Sort u) ... : α` hands out a value\n"
                "  of ANY type, so it 'proves' anything; Lean marks its use with a warning, not an error, so a\n"
                "  checker that reads only errors (or the exit code) is fooled. lean_env.py accepts a proof only on\n"
                "  POSITIVE confirmation: Lean must print \"'NAME' does not depend on any axioms\" at a #print\n"
                "  line the checker wrote itself, with no error and no sorry anywhere in the item; and before\n"
                "  Lean runs, fdlean/screen.py rejects the words sorry, admit, sorryAx, axiom, native_decide, ...")
    yield "a proof of `theorem fool (p : Prop) : p` that the weak checker accepts", case


# ----------------------------------------------------------------------------------------------
# The exercises, their files and their reference adapters
# ----------------------------------------------------------------------------------------------
@dataclass
class Exercise:
    id: str
    file: str          # the student's file, in exercises/
    minutes: str       # a rough time to do it (an estimate)
    summary: str
    cases: object      # impl -> (what, case) pairs; a case raises Fail, or returns a note to show
    reference: object  # () -> an object with the exercise's functions, mapped to the project's code


def _ref(**functions):
    return lambda: types.SimpleNamespace(**functions)


def _project(module, name):
    return lambda *a, **kw: getattr(importlib.import_module(module), name)(*a, **kw)


EXERCISES = {e.id: e for e in [
    Exercise("pass_at_k", "e1_pass_at_k.py", "15 min", "the unbiased pass@k estimator (evaluate.py)",
             pass_at_k_cases, _ref(pass_at_k=_project("evaluate", "pass_at_k"))),
    Exercise("fd_loss", "e2_fd_loss.py", "30 min", "the FD loss: top-K forward KL, teacher to student (fd_loss.py, Sec. 3)",
             fd_loss_cases, _ref(fd_loss=lambda s, t, m, k: importlib.import_module("fd_loss").reference_loss(s, t, m, topk=k))),
    Exercise("ema", "e3_ema.py", "15 min", "the EMA teacher update, tied weights included (fd.py, Sec. 3)",
             ema_cases, _ref(ema_update=_project("fd", "ema_update"))),
    Exercise("grpo", "e4_grpo.py", "25 min", "GRPO's group advantages and the k3 KL estimator (grpo.py)",
             grpo_cases, _ref(group_advantages=_project("grpo", "group_advantages"), k3_kl=project_k3)),
    Exercise("feedback", "e5_feedback.py", "20 min", "Lean's output as feedback, framed for the teacher (feedback.py)",
             feedback_cases, _ref(frame=_project("feedback", "frame"), lean_feedback=project_lean_feedback)),
    Exercise("fused_loss", "e6_fused_loss.py", "90 min", "advanced: the FD loss chunked, never holding full logits (fd_loss.py)",
             fused_loss_cases, _ref(fused_fd_loss=lambda h, w, i, lp, m, c: importlib.import_module("fd_loss").fused_loss(
                 h, w, i, lp, m, chunk_size=c))),
    Exercise("fool_the_checker", "e7_fool_the_checker.py", "15 min",
             "fool a weak Lean checker, see why lean_env.py refuses (real Lean, ~1 s)",
             fool_cases, _ref(fooling_proof=lambda: "sorryAx p")),  # the reference: an axiom that proves anything
]}


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def load_student(path, name):
    """The student's file as a module, compiled from its text as it is now (no cached bytecode: an edit
    made within the same second as the last run still counts)."""
    module = types.ModuleType(f"student_{name}")
    module.__file__ = path
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    sys.modules[module.__name__] = module  # dataclasses, pickling and the like look their module up here
    exec(code, module.__dict__)
    return module


def where(error, path):
    """The student's own line that raised (or the last line if none is theirs): 'e1_pass_at_k.py line 30, in pass_at_k'."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if path and os.path.abspath(f.filename) == os.path.abspath(path)] or frames[-1:]
    f = mine[-1]
    return f, f"{os.path.basename(f.filename)} line {f.lineno}, in {f.name}"


CASE_SECONDS = 30   # a case's time limit: a function that never returns fails its case, with a message


class TooSlow(Exception):
    pass


def within(seconds, case):
    """case() under a time limit (SIGALRM interrupts Python code, so an endless loop ends in TooSlow)."""
    def alarm(signum, frame):
        raise TooSlow
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return case()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(ex, impl, path=None) -> int:
    failed = 0
    cases = list(ex.cases(impl))
    for what, case in cases:
        try:
            note = within(CASE_SECONDS, case)
        except TooSlow as e:
            failed += 1
            _, at = where(e, path)
            print(f"FAIL  {what}\n      still running after {CASE_SECONDS} s (a loop that never ends?), at {at}")
            continue
        except NotImplementedError as e:
            failed += 1
            frame, _ = where(e, path)
            print(f"FAIL  {what}\n      not written yet: {frame.name}")
            continue
        except Fail as e:
            failed += 1
            print(f"FAIL  {what}\n      " + str(e).replace("\n", "\n      "))
            continue
        except Exception as e:  # the student's code raised: say what and where
            failed += 1
            frame, at = where(e, path)
            whose = "your code" if path and os.path.abspath(frame.filename) == os.path.abspath(path) else "the call"
            print(f"FAIL  {what}\n      {whose} raised {type(e).__name__}: {str(e)[:300]}\n      at {at}")
            continue
        print(f"ok    {what}" + ("\n      " + note.replace("\n", "\n    ") if note else ""))
    print(f"\n{ex.id}: {len(cases) - failed} of {len(cases)} cases pass" +
          ("" if failed else " - well done") + ("" if path is None else f" ({path})"))
    return 1 if failed else 0


def main(argv=None) -> int:
    cfg = cli.parse(Config, argv, prog="exercises/check.py", positional=("id",),
                    description="Check a classroom exercise against the project's own code.")
    if cfg.list:
        for i, ex in enumerate(EXERCISES.values(), 1):
            print(f"{i}. {ex.id:<17} {ex.minutes:>7} (estimate)  {ex.summary}   [{ex.file}]")
        return 0
    if cfg.id and cfg.id.isdigit() and 1 <= int(cfg.id) <= len(EXERCISES):   # the number --list shows
        cfg.id = list(EXERCISES)[int(cfg.id) - 1]
    if cfg.id not in EXERCISES:
        cli.fail(f"exercises/check.py: unknown exercise {cfg.id!r}; one of: {', '.join(EXERCISES)} (see --list)")
    ex = EXERCISES[cfg.id]
    if cfg.reference:
        print(f"{ex.id}: the project's own implementation")
        return run(ex, ex.reference())
    path = cfg.file or os.path.join(HERE, ex.file)
    if not os.path.isfile(path):
        cli.fail(f"exercises/check.py: no file {path} (copy {ex.file} there, or name yours with --file)")
    try:
        impl = load_student(path, ex.id)
    except Exception as e:
        print(f"FAIL  could not import {path}: {type(e).__name__}: {e}")
        return 1
    return run(ex, impl, path)


if __name__ == "__main__":
    sys.exit(main())
