"""One optimizer step's mechanics, for fd.py and grpo.py: what their step does besides its algorithm.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4: a step is 128
statements on 8 GPUs. A step's loss is a mean over the attempt tokens of EVERY process (or GRPO's other
aggregations of them); it is computed on micro-batches of this process's attempts, each weighted by its share,
so the gradients add up to the whole step's on any number of processes and micro-batches (tests/test_parallel.py,
tests/test_fd.py). Under --fsdp every forward is a collective, so every process runs as many micro-batches (the
extra ones weigh 0: shard.in_step). The optimizer steps once, on the summed gradients, never on a NaN or inf.

    step = Step(policy, net)                       # net: the one trained (policy.model unless sharded)
    for part in step.micro_batches(attempts, size):
        ...                                        # the algorithm's forward passes on attempts[i] for i in part
        step.backward(loss, mask, dict(kl=kl))     # loss: the part's mean over its tokens (mask)
    row = step.update(optimizer, grad_clip)        # {"loss", "kl", ..., "grad_norm"}, over every process
    row |= step.attempts_row(tasks, attempts, tokenizer)   # train_acc, attempt_len, ... of the step's attempts
"""
import math
import time

import torch

from fdlean import measure, parallel
from training import shard


class Stopwatch:
    """Seconds per stage of a step for the metrics line: lap("sample") when the sampling is done. A stage
    lapped again (every turn of a multi-turn attempt samples) adds up."""

    def __init__(self):
        self.times, self.clock = {}, time.perf_counter()

    def lap(self, name: str):
        now = time.perf_counter()
        key = f"time_{name}"
        self.times[key] = round(self.times.get(key, 0.0) + now - self.clock, 4)
        self.clock = now


class Step:
    def __init__(self, policy, net=None):
        self.policy = policy
        self.net = net if net is not None else policy.model
        self.clock = Stopwatch()
        self.loss, self.sums, self.done = 0.0, {}, 0

    def micro_batches(self, attempts, size: int) -> list[list[int]]:
        """This process's attempts in parts of `size` (0: all at once); under --fsdp the last part repeated until
        every process has as many (a repeat weighs 0). Also counts the step's tokens and attempts over every
        process: the divisors of its means."""
        self.tokens, self.attempts = parallel.all_sum([sum(a.n_sampled for a in attempts), len(attempts)])
        size = size or len(attempts)
        parts = [list(range(lo, min(lo + size, len(attempts)))) for lo in range(0, len(attempts), size)]
        self.own = len(parts)
        return shard.in_step(parts, self.net)

    def backward(self, loss, mask, values: dict, normalized: bool = False, free=None):
        """Backward of one part's share of the step's loss, in the order micro_batches gave the parts. `loss`: the
        part's mean over its tokens (`mask`), weighted here by its share of the step's tokens; normalized=True:
        already its share (GRPO's aggregations). `values`: the part's token means of what the metrics line shows
        (kl, entropy, ...), kept as the step's token means. `free`: a net that only ran a forward here (FD's
        teacher): its gathered weights are released (--fsdp)."""
        repeat = self.done >= self.own   # only keeps the collectives in step
        self.done += 1
        n = 0 if repeat else mask.sum().item()
        part = loss if normalized else loss * (n / self.tokens)
        if repeat:
            part = part * 0
        part.backward()
        if free is not None:
            shard.release(free)
        self.loss += part.item()
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * n
        self.clock.lap("student")

    def total(self, value: float) -> float:
        """A count of this process's (e.g. feedback failures) summed over every process."""
        return parallel.all_sum([value])[0]

    def release(self, net):
        """A net that ran forwards without a backward (GRPO's reference): its gathered weights are released."""
        if net is not None:
            shard.release(net)

    def update(self, optimizer, grad_clip: float) -> dict:
        """The gradients summed over processes, then one optimizer step: {"loss", each value, "grad_norm", and the
        seconds of each stage, time_sample ... time_update}."""
        shard.sum_grads(self.net)
        totals = parallel.all_sum([self.loss, *self.sums.values()])
        row = {"loss": totals[0], **{key: total / self.tokens for key, total in zip(self.sums, totals[1:])}}
        row["grad_norm"] = optimizer_step(optimizer, self.net, grad_clip, row["loss"])
        if self.net is not self.policy.model:
            shard.refresh(self.policy.model, self.net)   # the sampling copy takes the new weights
        self.clock.lap("update")
        return {**row, **self.clock.times}

    def attempts_row(self, tasks, attempts, tokenizer, **more) -> dict:
        """What the step's attempts did, each a mean over every process's attempts (`more`: other per-attempt
        lists, e.g. FD's feedback lengths), and `lemmas`: the global names in its correct proofs (Figures 3-4)."""
        return dict(
            **parallel.means(
                train_acc=[a.result.ok for a in attempts],
                attempt_len=[a.n_sampled for a in attempts],   # the policy's tokens, every turn
                truncated=[a.truncated for a in attempts],
                turns=[a.turns for a in attempts],
                first_turn_acc=[a.results[0].ok for a in attempts],
                **more,
                epistemic_words=[measure.epistemic_words(tokenizer.decode(a.sampled_ids)) for a in attempts]),
            lemmas=set().union(*parallel.gather([measure.identifiers(t, a.answer)
                                                 for t, a in zip(tasks, attempts) if a.result.ok])))


def optimizer_step(optimizer, net, grad_clip: float, loss: float) -> float:
    """After backward: clip the gradient and step. Returns the gradient norm. Never steps on a NaN or inf (loss or
    gradient): the weights stay as they were and the norm is reported as NaN."""
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)   # sharded: a DTensor
    if math.isfinite(loss) and math.isfinite(grad_norm):
        optimizer.step()
    else:
        grad_norm = float("nan")
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
