"""Sampling attempts y ~ pi_theta(. | x): the idea in a plain loop, then the fast version that trains.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3: the student
samples its attempts on-policy. `sample_plain` is the idea: run the whole sequences through the model,
draw one token per row from the last position, append it, until every row has drawn an end token or
the token budget is spent. `sample` draws exactly the same tokens for the same generator (a test holds
the two equal, and holds `sample` equal to Hugging Face's `generate`) and is what every script uses:
a KV cache, each distinct prompt prefilled once in groups of similar length, finished rows dropped.

    [s] = sample(policy, [prompting.encode(policy.tokenizer, task)], max_new_tokens=64, generator=0)
    s.ids, s.text, s.truncated

A row also ends once its text holds `stop` (a chat model's tool call ends with "</tool_call>": the paper stops
the generation there, runs the tool and resumes, Section 4.1), and `max_new_tokens` may be one budget per row
(what is left of an agentic attempt's 8,192 tokens).
"""
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache


@dataclass
class Sample:
    ids: list[int]   # exactly the sampled ids, including the final EOS when one was sampled
    text: str        # decoded ids without EOS / special tokens
    truncated: bool  # True when the token budget ran out before an EOS (or the stop text)
    entropy: list[float] = None  # per sampled id: the entropy (nats) of the policy's own distribution
                                 # there (temperature 1, no top-p), read off the logits it sampled from


def entropy(logits):
    """Entropy (nats) of softmax(logits) per row, in fp32 at least: the policy's uncertainty at a position (the one
    entropy of the project: the sampler's, the trainers' and the evaluation's)."""
    logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def stop_ids(policy) -> list[int]:
    """EOS ends the proof: the tokenizer's EOS plus the model's generation EOS ids (chat models)."""
    ids = {policy.tokenizer.eos_token_id}
    gen_eos = getattr(getattr(policy.model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def next_tokens(logits, temperature, top_p, generator, live, batch_size, pad_id):
    """One sampling step, done like HF generate (float32 logits, temperature, then top-p, then
    multinomial over the WHOLE batch) so that the same RNG gives the same tokens: finished rows get
    a one-hot on the pad id, which consumes the random numbers HF consumes for them. `generator` may
    also be a list, one per batch row: each row then draws from its own, so what a row samples never
    depends on the other rows (the trainers seed one per statement: data parallel runs draw the same
    attempts whatever the number of processes)."""
    if temperature == 0:
        return logits.argmax(-1)
    scores = logits / temperature
    if top_p < 1.0:  # nucleus: drop the least likely tokens whose total mass is <= 1 - top_p
        sorted_scores, order = torch.sort(scores, descending=False)
        drop_sorted = sorted_scores.softmax(-1).cumsum(-1) <= (1 - top_p)
        drop_sorted[:, -1] = False
        scores = scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    if isinstance(generator, (list, tuple)):
        probs = scores.softmax(-1)
        return torch.cat([torch.multinomial(probs[j], 1, generator=generator[row]) for j, row in enumerate(live.tolist())])
    probs = torch.zeros(batch_size, logits.shape[-1], device=logits.device)
    probs[:, pad_id] = 1.0
    probs[live] = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)[live]


def make_sample(policy, ids: list[int], entropies: list[float] = None, stopped: bool = False) -> Sample:
    """`stopped`: the row ended at the stop text (kept in .text), not at an end token."""
    ended = bool(ids) and ids[-1] in stop_ids(policy)
    text = policy.tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=True)
    return Sample(ids, text, truncated=not (ended or stopped), entropy=entropies)


def budgets(max_new_tokens, n: int) -> list[int]:
    """One token budget per row, from one for all or a list of them."""
    if isinstance(max_new_tokens, int):
        return [max_new_tokens] * n
    if len(max_new_tokens) != n or min(max_new_tokens, default=1) < 1:
        raise ValueError("max_new_tokens: one budget of at least 1 per prompt")
    return list(max_new_tokens)


def window(tokenizer, stop: str) -> int:
    """How many of a row's last tokens hold the stop text when they end it (a margin for other splits)."""
    return len(tokenizer(stop, add_special_tokens=False)["input_ids"]) + 2


def says_stop(tokenizer, ids: list[int], stop: str | None, width: int) -> bool:
    """The idea: the row's last `width` tokens, decoded, hold the stop text."""
    return bool(stop) and stop in tokenizer.decode(ids[-width:])


_ENDERS = {}


def enders(tokenizer, stop: str) -> list[int]:
    """The ids whose token holds the stop text's last character: only a row that just drew one of them can
    have ended its stop text, so the fast loop decodes only those rows (the plain one decodes every row)."""
    key = (id(tokenizer), stop)
    if key not in _ENDERS:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        _ENDERS[key] = [i for i, p in enumerate(pieces) if p and stop[-1] in p]
    return _ENDERS[key]


# ----------------------------------------------------------------------------- the idea

@torch.no_grad()
def sample_plain(policy, prompts: list[list[int]], max_new_tokens=64, temperature: float = 1.0,
                 top_p: float = 1.0, generator=None, stop: str | None = None) -> list[Sample]:
    """The reference: no cache, every step runs the whole (left-padded) sequences again."""
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    net, device, pad = policy.model, policy.device, policy.tokenizer.pad_token_id
    B, T = len(prompts), max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (T - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=device)
    eos = torch.tensor(stop_ids(policy), device=device)
    budget, width = budgets(max_new_tokens, B), stop and window(policy.tokenizer, stop)
    out, ent, live = [[] for _ in prompts], [[] for _ in prompts], torch.arange(B, device=device)
    stopped = [False] * B
    for _ in range(max(budget)):  # `live`: the rows still sampling
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # positions count real tokens only
        logits = net(input_ids=ids, attention_mask=mask, position_ids=positions).logits[live, -1].float()
        tok = next_tokens(logits, temperature, top_p, generator, live, B, pad)
        for row, t, h in zip(live.tolist(), tok.tolist(), entropy(logits).tolist()):
            out[row].append(t)
            ent[row].append(h)
        column = torch.full((B, 1), pad, device=device)
        column[live, 0] = tok
        ids, mask = torch.cat([ids, column], 1), torch.cat([mask, torch.ones_like(column)], 1)
        for row in live.tolist():
            stopped[row] = says_stop(policy.tokenizer, out[row], stop, width)
        going = [not e and not stopped[r] and len(out[r]) < budget[r]
                 for r, e in zip(live.tolist(), torch.isin(tok, eos).tolist())]
        live = live[torch.tensor(going, dtype=torch.bool, device=device)]
        if len(live) == 0:
            break
    return [make_sample(policy, seq, h, st) for seq, h, st in zip(out, ent, stopped)]


# ----------------------------------------------------------------------------- the fast version

def _cache_kwarg(model) -> str:
    # transformers renamed `past_key_values` to `cache` during 5.x: pass whichever forward takes
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


PREFILL_ROWS = 64  # prompts per prefill forward: rows of similar length, so little padding


@torch.no_grad()
def _prefill(model, ids, mask, pos, lengths):
    """The prompts' KV cache and last logits. On distinct prompts of varied lengths the prefill is
    most of the sampling time, and a left-padded batch spends it on padding: the rows are prefilled
    in groups of similar length, and each group's cache is padded on the left (masked, so never
    attended to) to the batch's width. Row results are the same as one big forward up to float
    rounding (a different GEMM shape); models whose cache is not plain per-layer keys and values
    (sliding windows, recurrent layers) take the single forward."""
    U, T = ids.shape
    kv_name = _cache_kwarg(model)
    order = sorted(range(U), key=lambda u: lengths[u])
    groups = [order[i:i + PREFILL_ROWS] for i in range(0, U, PREFILL_ROWS)]
    if len(groups) > 1 and max(lengths) - min(lengths) > 8:
        parts = []
        for rows in groups:
            width = max(lengths[u] for u in rows)  # left padding: the group's columns are the last `width`
            cache = DynamicCache()
            out = model(input_ids=ids[rows, T - width:], attention_mask=mask[rows, T - width:],
                        position_ids=pos[rows, T - width:], **{kv_name: cache}, use_cache=True, logits_to_keep=1)
            if not all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers):
                break
            parts.append((rows, width, cache, out.logits[:, -1].float()))
        else:
            back = torch.argsort(torch.tensor([u for rows, *_ in parts for u in rows], device=ids.device))
            layers = []
            for i in range(len(parts[0][2].layers)):
                k, v = (torch.cat([F.pad(getattr(c.layers[i], name), (0, 0, T - w, 0)) for _, w, c, _ in parts])[back]
                        for name in ("keys", "values"))
                layers.append((k, v))
            return DynamicCache(layers), torch.cat([lg for *_, lg in parts])[back]
    cache = DynamicCache()
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **{kv_name: cache}, use_cache=True,
                   logits_to_keep=1).logits[:, -1].float()
    return cache, logits


@torch.no_grad()
def _sample_batch(policy, prompts, max_new_tokens, temperature, top_p, generator, stop=None):
    model, device, tokenizer = policy.model, policy.device, policy.tokenizer
    pad_id, eos = tokenizer.pad_token_id, torch.tensor(stop_ids(policy), device=device)
    budget = torch.tensor(budgets(max_new_tokens, len(prompts)), device=device)
    max_new_tokens = int(budget.max())
    if stop:   # a row that draws a token holding the stop text's last character is decoded, and ends if it holds it
        width, ending = window(tokenizer, stop), torch.tensor(enders(tokenizer, stop), dtype=torch.long, device=device)
    # A prompt repeated in the batch (n samples per task, a GRPO group) is prefilled once; its
    # cache rows are then copied, so on short proofs the prefill no longer dominates the time.
    unique = {}
    copy_of = torch.tensor([unique.setdefault(tuple(p), len(unique)) for p in prompts], device=device)
    B, U, T = len(prompts), len(unique), max(len(p) for p in prompts)
    ids = torch.full((U, T), pad_id, dtype=torch.long)
    mask = torch.zeros((U, T), dtype=torch.long)
    for u, p in enumerate(unique):  # left padding: every row's next token goes at column T
        ids[u, T - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[u, T - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # positions count real tokens only
    cache, logits = _prefill(model, ids, mask, pos, [len(p) for p in unique])
    kv = {_cache_kwarg(model): cache}
    if U < B:
        cache.batch_select_indices(copy_of)
        logits, mask, pos = logits[copy_of], mask[copy_of], pos[copy_of]
    pos = pos[:, -1:]
    live = torch.arange(B, device=device)  # batch rows still sampling, in cache order
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    ent = torch.zeros(B, max_new_tokens, device=device)
    n_new = torch.zeros(B, dtype=torch.long, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        tok = next_tokens(logits, temperature, top_p, generator, live, B, pad_id)
        out[live, t] = tok
        ent[live, t] = entropy(logits)
        n_new[live] += 1
        going = ~torch.isin(tok, eos) & (budget[live] > t + 1)
        if stop:
            for j in torch.isin(tok, ending).nonzero().flatten().tolist():
                row = int(live[j])
                if says_stop(tokenizer, out[row, max(0, t + 1 - width):t + 1].tolist(), stop, width):
                    going[j], stopped[row] = False, True
        if t == max_new_tokens - 1 or not going.any():
            break
        if not going.all():  # drop finished rows from the batch and the cache: no wasted compute
            live, tok, mask, pos = live[going], tok[going], mask[going], pos[going]
            cache.batch_select_indices(going.nonzero().squeeze(1))
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        pos = pos + 1
        logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos, **kv,
                       use_cache=True).logits[:, -1].float()
    return [make_sample(policy, out[b, :n_new[b]].tolist(), ent[b, :n_new[b]].tolist(), bool(stopped[b]))
            for b in range(B)]


def sample(policy, prompts: list[list[int]], max_new_tokens=64, temperature: float = 1.0,
           top_p: float = 1.0, generator=None, batch_size: int = 256, stop: str | None = None) -> list[Sample]:
    """Batched sampling with a KV cache; temperature 0 = greedy. `generator`: None (torch's global
    RNG, as HF generate), an int seed, a torch.Generator on the policy's device, or a list of them, one
    per prompt (see next_tokens). Within one batch the rows keep their order, so a batch draws exactly
    what HF generate draws on it. `max_new_tokens`: one budget, or one per prompt; `stop`: a text that ends
    a row once it has written it (kept in the sample; not truncated)."""
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    training = policy.model.training
    policy.model.eval()  # sampling is inference: no dropout, whatever the caller's mode
    order = list(range(len(prompts)))
    if len(prompts) > batch_size:  # batches of similar lengths: less left padding to compute
        order.sort(key=lambda i: len(prompts[i]))
    samples, budget = [None] * len(prompts), budgets(max_new_tokens, len(prompts))
    for start in range(0, len(order), batch_size):
        rows = sorted(order[start:start + batch_size])
        rng = [generator[i] for i in rows] if isinstance(generator, (list, tuple)) else generator
        batch = _sample_batch(policy, [prompts[i] for i in rows], [budget[i] for i in rows], temperature, top_p, rng,
                              stop)
        for i, s in zip(rows, batch):
            samples[i] = s
    policy.model.train(training)
    return samples
