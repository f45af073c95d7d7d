"""Benchmark of lean_env: proof checks per second, batched (many proofs per Lean process) vs one Lean process
per proof, side by side in one run.          Run: python bench/bench_lean.py [--n 4000] [--n-single 40]
And the cost of one slow or crashing proof among many:     python bench/bench_lean.py --slow [--timeout 5]

"workers" = Lean processes at once. Each process runs with lean_env.LEAN_FLAGS (-j2: a second thread reports each
item as it ends), so wall-clock rates depend on what else shares the cores; checks per CPU-second of the Lean
processes do not. The per-process baseline uses the same code path with batch_size=1. Half the proofs are
correct, a quarter wrong (Lean reports an error), a quarter pass only after Or.elim.
"""
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lean_env  # noqa: E402
from fdlean import cli  # noqa: E402
from lean_env import Task  # noqa: E402


@dataclass
class Config:
    n: int = 4000          # proofs per batched run
    n_single: int = 40     # proofs per one-process-per-proof run (each costs a whole Lean start)
    batch_size: int = 1000  # proofs per Lean process in the batched runs
    slow: bool = False     # instead: one slow (or crashing) proof among 200, against the same proof checked alone
    timeout: float = 5.0   # seconds Lean may spend on one proof (--slow)


TEMPLATES = [  # (binders : type, correct proof, wrong proof)
    ("(p q : Prop) (h : And p q) : And q p", "⟨h.2, h.1⟩", "h"),
    ("(p q r : Prop) (h : And p (Or q r)) : Or (And p q) (And p r)",
     "Or.elim h.2 (fun hq => Or.inl ⟨h.1, hq⟩) (fun hr => Or.inr ⟨h.1, hr⟩)", "Or.inl ⟨h.1, h.2⟩"),
    ("(p q : Prop) (h : Iff p q) (hq : q) : p", "h.mpr hq", "h.mp hq"),
    ("(α : Type) (P Q : α → Prop) (h : Exists (fun x => And (P x) (Q x))) : Exists (fun x => Q x)",
     "Exists.elim h (fun w hw => ⟨w, hw.2⟩)", "Exists.elim h (fun w hw => ⟨w, hw.1⟩)"),
]


def make(n: int, tag: str):
    items = []
    for i in range(n):
        binders, good, bad = TEMPLATES[i % len(TEMPLATES)]
        name = f"bench_{tag}_{i:05d}"
        items.append((Task(name, f"theorem {name} {binders} :="), good if i % 4 < 3 else bad))
    return items


def run(env, items):
    t0, c0 = time.perf_counter(), os.times()
    res = env.check_many(items)
    dt, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    expected = [i % 4 < 3 for i in range(len(items))]
    assert [r.ok for r in res] == expected, "unexpected verdicts"
    return dt, cpu


def slow_item(a):
    """Seconds to check 200 proofs of which one (in the middle) is slow or crashes Lean, against that proof alone."""
    ALL = Task("bench_all", "theorem bench_all (α : Type) (P : α → Prop) (h : ∀ x, P x) (a : α) : P a :=")
    cases = [("slow (timeout)", "id " * 400 + "(h a)", {}),
             ("crash (stack overflow)", "(" * 5000 + "h a" + ")" * 5000, {"lean_args": ("-s", "256")})]
    print(f"\n{'one bad proof':<24} {'status':>8} {'alone s':>8} {'in 200 s':>9} {'timeouts':>9}")
    for what, proof, extra in cases:
        env = lean_env.load("mini", timeout=a.timeout, workers=1, **extra)
        t0 = time.perf_counter()
        alone = env.check(ALL, proof)
        t_alone = time.perf_counter() - t0
        good = make(199, "slow")
        items = good[:100] + [(ALL, proof)] + good[100:]
        t0 = time.perf_counter()
        res = env.check_many(items)
        t_many = time.perf_counter() - t0
        assert res[100].status == alone.status and [r.ok for r in res[:100] + res[101:]] == [i % 4 < 3 for i in range(199)]
        print(f"{what:<24} {alone.status:>8} {t_alone:>8.2f} {t_many:>9.2f} {t_many / a.timeout:>9.2f}")
    print(f"(timeout {a.timeout:g} s, 1 worker; 'timeouts' = seconds for the 200 / the timeout)")


def main():
    a = cli.parse(Config, prog="bench/bench_lean.py", description="Proof checks per second with the mini world's Lean.")
    if a.slow:
        return slow_item(a)
    env0 = lean_env.load("mini")
    print(env0.version)
    print(f"cores available: {len(os.sched_getaffinity(0))}; Lean flags: {' '.join(env0.lean_args)}")
    rows = []
    for mode, workers, bs, n in [("batched", 1, a.batch_size, a.n), ("batched", 2, a.batch_size, a.n),
                                 ("1 process/proof", 1, 1, a.n_single), ("1 process/proof", 2, 1, a.n_single)]:
        env = lean_env.load("mini", workers=workers, batch_size=bs)
        dt, cpu = run(env, make(n, f"{workers}_{bs}"))
        rows.append((mode, workers, bs, n, dt, n / dt, n / dt / workers, n / cpu))
    print(f"\n{'mode':<16} {'workers':>7} {'batch':>6} {'checks':>7} {'seconds':>8} {'checks/s':>9} "
          f"{'per core':>9} {'per Lean CPU-s':>14}")
    for mode, w, bs, n, dt, rate, per, per_cpu in rows:
        print(f"{mode:<16} {w:>7} {bs:>6} {n:>7} {dt:>8.2f} {rate:>9.1f} {per:>9.1f} {per_cpu:>14.1f}")
    print("(per core = checks/s / workers, wall clock; per Lean CPU-s = checks per CPU-second used by the Lean"
          " processes, which stays honest when other jobs share the cores)")
    for w in (1, 2):
        b = next(r for r in rows if r[0] == "batched" and r[1] == w)
        s = next(r for r in rows if r[0] != "batched" and r[1] == w)
        print(f"speed-up with {w} worker(s): {b[5] / s[5]:.0f}x")


if __name__ == "__main__":
    main()
