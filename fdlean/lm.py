"""The policy pi_theta: load a model, and score the tokens of its attempts.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3. FD's teacher and
student, and GRPO's policy and reference, are networks of one Policy; each scores an attempt's tokens in its own
prompt (prompts.py) from the hidden states that predict them, so the (tokens x vocabulary) logits are made a chunk
at a time (chunked_logprobs here; the FD loss fuses it into the lm head, fd_loss.py).

    policy = lm.load("runs/fd/final")                      # a local HF-format folder or an HF hub id
    hidden, targets, mask = lm.attempt_hidden(policy.model, prompt_ids, attempt_ids)
    logprobs, entropies = lm.token_logprobs(policy.model, prompt_ids, attempt_ids)

The `small-prover` preset is a folder that small_prover/sft.py builds on first use: the scripts load
`sft.resolve_model("small-prover")`. `python -m fdlean.lm FOLDER` prints a student and a teacher prompt and one
greedy sample.
"""
import contextlib
import json
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from fdlean import prompting, sampling

hf_logging.disable_progress_bar()   # "Loading weights", "Writing model shards": a library's bars between ours


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    name: str


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
    """A model name that is no HF-format folder here and nothing the Hugging Face hub gave."""


def check_name(name: str) -> None:
    """Raise ModelNotFound, without loading anything, for a name `load` cannot read, so that a
    script can refuse it before its long set-up. A name is the preset (which the scripts build
    with sft.resolve_model), a folder, or a hub id 'org/name' whose 'org' is not a local folder.
    Any other name is a folder that does not exist: it never goes to the hub, whose retries take
    50 s without network and end in a traceback."""
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


HUB = os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within `timeout` s (or a model may be in the local hub
    cache, HF_HUB_OFFLINE=1): without it, transformers retries for about 50 s before failing."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    host = urllib.parse.urlparse(HUB)
    try:
        socket.create_connection((host.hostname, host.port or (443 if host.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def in_hub_cache(name: str) -> bool:
    """Whether a hub model was downloaded before (its config.json is in the local Hugging Face cache)."""
    from huggingface_hub import try_to_load_from_cache
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:   # a name the hub library refuses: not cached
        return False


def load(name_or_path: str, device=None, dtype=None, prompt: str = "auto", thinking: bool = True) -> Policy:
    """A local HF-format folder or an HF hub id. Raises ModelNotFound for a name it cannot read (see
    check_name) or a hub id the hub did not give. The `small-prover` preset is a folder small_prover/sft.py builds:
    the scripts pass `sft.resolve_model(name)` here. `prompt` (a STYLES key, or auto: by the model's name)
    and `thinking` (Qwen3's enable_thinking) hold for every prompt rendered with its tokenizer."""
    if name_or_path == "small-prover":
        raise ModelNotFound("model 'small-prover': the preset is built by small_prover/sft.py; "
                            "load sft.resolve_model('small-prover') (its folder, built on first use)")
    check_name(name_or_path)
    name, path = name_or_path, os.path.expanduser(name_or_path)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    if not os.path.isdir(path) and not in_hub_cache(name) and not hub_reachable():
        raise ModelNotFound(f"model {name!r}: not a folder here, and the Hugging Face hub ({HUB}) cannot be reached "
                            "from this machine; give a local HF-format folder (e.g. runs/fd/final)")
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:   # a folder without weights, a cut safetensors, a hub id the hub did not give
        why = (str(e).strip() or type(e).__name__).splitlines()[0][:300]
        if os.path.isdir(path):
            raise ModelNotFound(f"model {name!r}: that folder's model cannot be read ({type(e).__name__}: {why})") from e
        raise ModelNotFound(f"model {name!r}: no such folder here, and the Hugging Face hub did not give it "
                            f"({why}); give a local HF-format folder (e.g. runs/fd/final)") from e
    if tokenizer.pad_token_id is None:  # left padding for batched sampling needs some pad id
        tokenizer.pad_token = tokenizer.eos_token
    prompting.set_prompting(tokenizer, prompt, thinking, name)
    return Policy(model.to(device).eval(), tokenizer, device, name)


def save(policy: Policy, path: str) -> None:
    """HF format: config.json + model.safetensors + tokenizer files; `load(path)` reads it back."""
    os.makedirs(path, exist_ok=True)
    policy.model.save_pretrained(path, safe_serialization=True)
    policy.tokenizer.save_pretrained(path)


# ----------------------------------------------------------------------------- scoring

def forward_hidden(model, input_ids, attention_mask=None, position_ids=None):
    """(B, T, H) last-layer states after the final norm: logits = hidden @ head_weight.T. Read through the model's
    own forward with no logits kept (an empty index), so that a sharded model (FSDP2, training/shard.py) gathers
    its weights as in any forward; the states are caught on their way out of the base model."""
    caught = []
    hook = model.base_model.register_forward_hook(lambda module, args, out: caught.append(out.last_hidden_state))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
              logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
    finally:
        hook.remove()
    return caught[-1]


def head_weight(model):
    """(V, H); assumes logits = hidden @ W.T with no bias or soft-capping (Llama, Qwen, Mistral)."""
    return model.get_output_embeddings().weight


def attempt_hidden(model, prompt_ids, attempt_ids, pad_id: int = 0, trained=None):
    """Hidden states that predict each attempt token: (hidden (B, L, H), targets (B, L), mask (B, L)).
    Rows are prompt + attempt, right-padded: causal attention never looks at the padding, so no
    attention mask is needed. Teacher and student prompts differ in length, but both results are
    aligned on the attempt's tokens, which is what the FD loss compares. The mask is True on the attempt's
    tokens; with `trained` (per attempt, a flag per id: Attempt.trained) only on those the policy sampled: a
    tool result (Lean's message, a tool's output) is context, never in a loss, a KL or an entropy."""
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
        mask[b, : len(a)] = torch.tensor(list(trained[b]), dtype=torch.bool) if trained is not None else True
    hidden = forward_hidden(model, ids.to(device))
    where = where.to(device)[..., None].expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, where), targets.to(device), mask.to(device)


def _float(x):  # softmax math in fp32 at least (bf16 logits would lose the small probabilities)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _chunk_logprobs(h, weight, y):
    logp = F.log_softmax(_float(h @ weight.to(h.dtype).T), dim=-1)
    return logp.gather(1, y[:, None]).squeeze(1)


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
            with torch.no_grad():
                ent[r] = sampling.entropy(h[r].detach() @ weight.detach().to(h.dtype).T)
    if parts:  # index_put keeps the graph: gradients flow back to each chunk
        logp = logp.index_put((rows,), torch.cat(parts))
    logp, ent = logp.view(mask.shape), ent.view(mask.shape)
    return (logp, ent) if entropy else logp


def mean_entropy(hidden, weight, targets, mask, chunk_size=1024) -> float:
    """The policy's mean entropy (nats) over the attempt tokens: what the paper tracks during training."""
    _, entropies = chunked_logprobs(hidden.detach(), weight.detach(), targets, mask, chunk_size, entropy=True)
    return float(entropies[mask].mean()) if mask.any() else float("nan")


def token_logprobs(model, prompt_ids, attempt_ids, chunk_size: int = 1024):
    """Per attempt token: log pi(y_t | prompt, y_<t) and the entropy of pi(. | prompt, y_<t), as (B, L)
    tensors, zero past each attempt's end, through chunked_logprobs: a large vocabulary never sits
    in memory whole. Log-probs carry gradients unless under torch.no_grad(); entropies are detached."""
    hidden, targets, mask = attempt_hidden(model, prompt_ids, attempt_ids)
    return chunked_logprobs(hidden, head_weight(model), targets, mask, chunk_size, entropy=True)


if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: python -m fdlean.lm FOLDER_OR_HF_ID   (prints a student and a teacher prompt, one greedy sample)",
              file=sys.stderr)
        raise SystemExit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    torch.set_num_threads(1)
    policy = load(sys.argv[1])
    task = SimpleNamespace(name="mini_demo", header="", level=1, solution="⟨h1.2, h1.1⟩",
                           statement="theorem mini_demo (p q : Prop) (h1 : And p q) : And q p :=")
    print("student:", prompting.render(policy.tokenizer, task))
    print("teacher:", prompting.render(policy.tokenizer, task, "Example of a correct solution: ⟨h1.2, h1.1⟩"))
    s = sampling.sample(policy, [prompting.encode(policy.tokenizer, task)], temperature=0)[0]
    print("greedy:", s, "->", prompting.proof_text(s))
