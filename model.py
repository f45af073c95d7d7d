"""The policy pi_theta: load it, render its prompt, sample attempts, score tokens, save checkpoints.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3. The student
pi_theta(. | x) and the teacher pi_mu(. | x, F(y)) are the SAME network; they differ only in the
prompt, and both prompts come from `render_prompt` so they can never drift apart. Each prompt ends
exactly where the proof starts, so the student's sampled ids y are appended unchanged to either
prompt and re-scored token by token (never re-tokenised from text).

    policy = load("small-prover")               # or an HF id / a local folder (built by sft.py on first use)
    ids = encode_prompt(policy.tokenizer, task)  # student; encode_prompt(tok, task, feedback) = teacher
    [s] = sample(policy, [ids], max_new_tokens=64, temperature=1.0, generator=0)
    logprobs, entropies = token_logprobs(policy.model, ids, s.ids)

Run `python model.py small-prover` to print a student and a teacher prompt and one sample.
"""
import contextlib
import inspect
import json
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedTokenizerFast

# The chat-template path (real HF models): one user message, the assistant turn is the proof.
CHAT_INSTRUCTION = ("Complete the following Lean 4 theorem. Reply with the proof only: "
                    "the Lean text that follows `:=`, without restating the theorem.")


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    name: str


@dataclass
class Sample:
    ids: list[int]   # exactly the sampled ids, including the final EOS when one was sampled
    text: str        # decoded ids without EOS / special tokens
    truncated: bool  # True when the token budget ran out before an EOS


# ----------------------------------------------------------------------------- loading and saving

def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device):
    """Training precision: bf16 matmuls on a GPU over fp32 master weights (load with dtype=float32).
    Small steps (lr 1e-5 for FD, 1e-7 for GRPO) vanish in bf16 weights, whose spacing near 0.02 is
    about 1e-4; the EMA teacher's small moves would vanish too. Plain fp32 on CPU."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_dtype(device) -> torch.dtype:
    # bf16 on GPU (the paper's setting); fp32 on CPU where bf16 matmuls are emulated for inference
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def load_tokenizer(path: str):
    """A tokenizer saved as a plain PreTrainedTokenizerFast (ours) is loaded as exactly that class:
    AutoTokenizer would swap in the class of the model's config (e.g. Qwen2Tokenizer) and rebuild it."""
    cfg_file = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(cfg_file):
        with open(cfg_file) as f:
            if json.load(f).get("tokenizer_class") in ("PreTrainedTokenizerFast", "TokenizersBackend"):
                return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


class ModelNotFound(FileNotFoundError):
    """A model name that is no preset, no HF-format folder here, and nothing the Hugging Face hub gave."""


def check_name(name: str) -> None:
    """Raise ModelNotFound, without loading anything, for a name `load` cannot read, so that a
    script can refuse it before its long set-up. A name is the preset, a folder, or a hub id
    'org/name' whose 'org' is not a local folder. Any other name is a folder that does not exist:
    it never goes to the hub, whose retries take 50 s without network and end in a traceback."""
    path = os.path.expanduser(name)
    if name == "small-prover":
        return
    if os.path.isdir(path):
        config, text = os.path.join(path, "config.json"), ""
        if os.path.isfile(config):
            with open(config) as f:
                text = f.read()
        if "model_type" not in text:  # a run folder has a config.json too: the run's settings
            final = os.path.join(path, "final")
            hint = f"; a run folder's model is {final}" if os.path.isdir(final) else ""
            raise ModelNotFound(f"model {name!r}: that folder holds no HF-format model "
                                f"(a config.json with a model_type){hint}")
        return
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name) or os.path.exists(name.split("/")[0]):
        raise ModelNotFound(f"model {name!r}: no such folder; give an HF-format checkpoint folder (e.g. "
                            "runs/fd/final), the preset 'small-prover', or a Hugging Face hub id 'org/name' "
                            "(which needs network access to huggingface.co)")


def load(name_or_path: str, device=None, dtype=None, rebuild: bool = False) -> Policy:
    """`small-prover` (built by sft.py and cached on first use), a local folder, or an HF hub id.
    Raises ModelNotFound for a name it cannot read (see check_name) or a hub id the hub did not give."""
    check_name(name_or_path)
    name, path = name_or_path, os.path.expanduser(name_or_path)
    if name == "small-prover":
        import sft  # local import: sft.py imports this module
        path = sft.build_small_prover(rebuild=rebuild)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as e:
        if os.path.isdir(path):  # a broken local folder: its own error, with the traceback
            raise
        why = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise ModelNotFound(f"model {name!r}: no such folder here, and the Hugging Face hub did not give it "
                            f"({why}); give a local HF-format folder (e.g. runs/fd/final)") from e
    if tokenizer.pad_token_id is None:  # left padding for batched sampling needs some pad id
        tokenizer.pad_token = tokenizer.eos_token
    return Policy(model.to(device).eval(), tokenizer, device, name)


def save(policy: Policy, path: str) -> None:
    """HF format: config.json + model.safetensors + tokenizer files; `load(path)` reads it back."""
    os.makedirs(path, exist_ok=True)
    policy.model.save_pretrained(path, safe_serialization=True)
    policy.tokenizer.save_pretrained(path)


# ----------------------------------------------------------------------------- prompts

def render_prompt(tokenizer, task, feedback: str | None = None) -> str:
    """THE prompt of the student (feedback=None) and of the teacher (feedback = framed text F(y)).

    Chat template (real HF models): a user message with the instruction, the header and the
    statement, then the feedback; the generation prompt opens the assistant turn, which is the proof.
    Plain template (the small prover): the statement with the theorem's name normalised to `thm`
    (the name carries no information), the feedback as a Lean comment right before the final `:=`
    (where a small prover measurably uses it best), then `:=`; the proof follows."""
    if getattr(tokenizer, "chat_template", None):
        user = CHAT_INSTRUCTION + "\n\n```lean\n" + (task.header.strip() + "\n\n" if task.header else "")
        user += task.statement + "\n```"
        if feedback:
            user += "\n\n" + feedback
        return tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                             tokenize=False, add_generation_prompt=True)
    statement = task.statement.rstrip()
    assert statement.endswith(":="), f"a statement ends with ':=': {statement[-40:]!r}"
    head = re.sub(r"^(\s*(?:theorem|lemma)\s+)\S+", r"\1thm", statement[:-2].rstrip())
    hint = f" /- {feedback} -/" if feedback else ""
    header = task.header.strip() + "\n\n" if task.header else ""
    return (tokenizer.bos_token or "") + header + head + hint + " :="


def encode_prompt(tokenizer, task, feedback: str | None = None) -> list[int]:
    # add_special_tokens=False: BOS / chat tokens are already part of the rendered text
    return tokenizer(render_prompt(tokenizer, task, feedback), add_special_tokens=False)["input_ids"]


def proof_text(sample_or_text) -> str:
    """The text to give Lean after `:=`: drops a code fence and a restated `theorem ... :=`."""
    text = sample_or_text.text if isinstance(sample_or_text, Sample) else sample_or_text
    fence = re.search(r"```(?:lean4?|)\s*\n?(.*?)(?:```|$)", text, flags=re.S)
    if fence:
        text = fence.group(1)
    text = text.strip()
    if re.match(r"(theorem|lemma|example)\b", text) and ":=" in text:
        text = text.split(":=", 1)[1]
    return text.strip()


# ----------------------------------------------------------------------------- sampling

def stop_ids(policy: Policy) -> list[int]:
    """EOS ends the proof: the tokenizer's EOS plus the model's generation EOS ids (chat models)."""
    ids = {policy.tokenizer.eos_token_id}
    gen_eos = getattr(getattr(policy.model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def _next_tokens(logits, temperature, top_p, generator, live, batch_size, pad_id):
    """One sampling step, done like HF generate (float32 logits, temperature, then top-p, then
    multinomial over the WHOLE batch) so that the same RNG gives the same tokens: finished rows get
    a one-hot on the pad id, which consumes the random numbers HF consumes for them."""
    if temperature == 0:
        return logits.argmax(-1)
    scores = logits / temperature
    if top_p < 1.0:  # nucleus: drop the least likely tokens whose total mass is <= 1 - top_p
        sorted_scores, order = torch.sort(scores, descending=False)
        drop_sorted = sorted_scores.softmax(-1).cumsum(-1) <= (1 - top_p)
        drop_sorted[:, -1] = False
        scores = scores.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    probs = torch.zeros(batch_size, logits.shape[-1], device=logits.device)
    probs[:, pad_id] = 1.0
    probs[live] = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)[live]


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
def _sample_batch(policy, prompts, max_new_tokens, temperature, top_p, generator):
    model, device = policy.model, policy.device
    pad_id, eos = policy.tokenizer.pad_token_id, torch.tensor(stop_ids(policy), device=device)
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
    n_new = torch.zeros(B, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        tok = _next_tokens(logits, temperature, top_p, generator, live, B, pad_id)
        out[live, t] = tok
        n_new[live] += 1
        going = ~torch.isin(tok, eos)
        if t == max_new_tokens - 1 or not going.any():
            break
        if not going.all():  # drop finished rows from the batch and the cache: no wasted compute
            live, tok, mask, pos = live[going], tok[going], mask[going], pos[going]
            cache.batch_select_indices(going.nonzero().squeeze(1))
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        pos = pos + 1
        logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos, **kv,
                       use_cache=True).logits[:, -1].float()
    samples, eos_set = [], set(eos.tolist())
    for b in range(B):
        seq = out[b, : n_new[b]].tolist()
        ended = bool(seq) and seq[-1] in eos_set
        text = policy.tokenizer.decode(seq[:-1] if ended else seq, skip_special_tokens=True)
        samples.append(Sample(seq, text, truncated=not ended))
    return samples


def sample(policy: Policy, prompts: list[list[int]], max_new_tokens: int = 64, temperature: float = 1.0,
           top_p: float = 1.0, generator=None, batch_size: int = 256) -> list[Sample]:
    """Batched sampling with a KV cache; temperature 0 = greedy. `generator`: None (torch's global
    RNG, as HF generate), an int seed, or a torch.Generator on the policy's device. Within one
    batch the rows keep their order, so a batch draws exactly what HF generate draws on it."""
    if isinstance(generator, int):
        generator = torch.Generator(policy.device).manual_seed(generator)
    order = list(range(len(prompts)))
    if len(prompts) > batch_size:  # batches of similar lengths: less left padding to compute
        order.sort(key=lambda i: len(prompts[i]))
    samples = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = sorted(order[start:start + batch_size])
        batch = _sample_batch(policy, [prompts[i] for i in rows], max_new_tokens, temperature, top_p, generator)
        for i, s in zip(rows, batch):
            samples[i] = s
    return samples


# ----------------------------------------------------------------------------- scoring

def forward_hidden(model, input_ids, attention_mask=None, position_ids=None):
    """(B, T, H) last-layer states after the final norm: logits = hidden @ lm_head_weight.T."""
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state


def lm_head_weight(model):
    """(V, H); assumes logits = hidden @ W.T with no bias or soft-capping (Llama, Qwen, Mistral)."""
    return model.get_output_embeddings().weight


def _batched(prompt_ids, attempt_ids):
    single = len(prompt_ids) > 0 and isinstance(prompt_ids[0], int)
    return ([prompt_ids], [attempt_ids], True) if single else (prompt_ids, attempt_ids, False)


def attempt_hidden(model, prompt_ids, attempt_ids, pad_id: int = 0):
    """Hidden states that predict each attempt token: (hidden (B, L, H), targets (B, L), mask (B, L)).
    Rows are prompt + attempt, right-padded: causal attention never looks at the padding, so no
    attention mask is needed. Teacher and student prompts differ in length, but both results are
    aligned on the attempt's tokens, which is what the FD loss compares."""
    prompt_ids, attempt_ids, _ = _batched(prompt_ids, attempt_ids)
    device = next(model.parameters()).device
    B = len(prompt_ids)
    T = max(len(p) + len(a) for p, a in zip(prompt_ids, attempt_ids))
    L = max(1, max(len(a) for a in attempt_ids))
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    where = torch.zeros((B, L), dtype=torch.long)  # position whose output predicts attempt token j
    targets = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.bool)
    for b, (p, a) in enumerate(zip(prompt_ids, attempt_ids)):
        ids[b, : len(p) + len(a)] = torch.tensor(list(p) + list(a), dtype=torch.long)
        where[b, : len(a)] = torch.arange(len(p) - 1, len(p) + len(a) - 1)
        targets[b, : len(a)] = torch.tensor(list(a), dtype=torch.long)
        mask[b, : len(a)] = True
    hidden = forward_hidden(model, ids.to(device))
    where = where.to(device)[..., None].expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, where), targets.to(device), mask.to(device)


def _float(x):  # softmax math in fp32 at least (bf16 logits would lose the small probabilities)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _chunk_logprobs(h, weight, y):
    logp = F.log_softmax(_float(h @ weight.to(h.dtype).T), dim=-1)
    return logp.gather(1, y[:, None]).squeeze(1)


@torch.no_grad()
def _chunk_entropy(h, weight):
    logp = F.log_softmax(_float(h @ weight.to(h.dtype).T), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def chunked_logprobs(hidden, weight, targets, mask, chunk_size=1024, entropy=False):
    """log pi(targets) per position from hidden (B, T, H) and the lm head weight (V, H), only on
    mask == 1 rows, chunk_size rows of logits at a time. Each chunk runs under activation
    checkpointing, so backward recomputes its logits instead of keeping them: peak memory is one
    chunk of (rows, V) logits, not (B, T, V). Returns logprobs (B, T) in fp32 at least, 0 off the mask, and
    with entropy=True also the (detached) entropy of pi at each position."""
    h = hidden.reshape(-1, hidden.shape[-1])
    y = targets.reshape(-1)
    rows = mask.reshape(-1).nonzero().squeeze(1)
    logp = torch.zeros(h.shape[0], dtype=_float(h).dtype, device=h.device)
    ent = torch.zeros_like(logp)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    parts = []
    for start in range(0, rows.numel(), chunk_size):
        r = rows[start:start + chunk_size]
        if grad:
            parts.append(torch.utils.checkpoint.checkpoint(_chunk_logprobs, h[r], weight, y[r],
                                                           use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(h[r], weight, y[r]))
        if entropy:
            ent[r] = _chunk_entropy(h[r].detach(), weight.detach())
    if parts:  # index_put keeps the graph: gradients flow back to each chunk
        logp = logp.index_put((rows,), torch.cat(parts))
    logp, ent = logp.view(mask.shape), ent.view(mask.shape)
    return (logp, ent) if entropy else logp


def token_logprobs(model, prompt_ids, attempt_ids, chunk_size: int = 1024):
    """Per attempt token: log pi(y_t | prompt, y_<t) and the entropy of pi(. | prompt, y_<t).
    Batched ((B, L) tensors, zero past each attempt's end) or single lists (1-D tensors), through
    chunked_logprobs: a large vocabulary never sits in memory whole. Log-probs carry gradients
    unless under torch.no_grad(); entropies are detached."""
    prompt_ids, attempt_ids, single = _batched(prompt_ids, attempt_ids)
    hidden, targets, mask = attempt_hidden(model, prompt_ids, attempt_ids)
    logprobs, entropies = chunked_logprobs(hidden, lm_head_weight(model), targets, mask, chunk_size, entropy=True)
    if single:
        n = len(attempt_ids[0])
        return logprobs[0, :n], entropies[0, :n]
    return logprobs, entropies


if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    torch.set_num_threads(1)
    policy = load(sys.argv[1] if len(sys.argv) > 1 else "small-prover")
    task = SimpleNamespace(name="mini_demo", header="", level=1, solution="⟨h1.2, h1.1⟩",
                           statement="theorem mini_demo (p q : Prop) (h1 : And p q) : And q p :=")
    print("student:", render_prompt(policy.tokenizer, task))
    print("teacher:", render_prompt(policy.tokenizer, task, "Example of a correct solution: ⟨h1.2, h1.1⟩"))
    s = sample(policy, [encode_prompt(policy.tokenizer, task)], temperature=0)[0]
    print("greedy:", s, "->", proof_text(s))
