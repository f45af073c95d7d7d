"""The policy pi_theta: load it, render its prompt, sample attempts (sampling.py), score tokens.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3. The student
pi_theta(. | x) and the teacher pi_mu(. | x, F(y)) are the SAME network; they differ only in the
prompt, and both prompts come from `render_prompt` so they can never drift apart. Each prompt ends
exactly where the proof starts, so the student's sampled ids y are appended unchanged to either
prompt and re-scored token by token (never re-tokenised from text).

    policy = load("runs/fd/final")              # a local HF-format folder or an HF hub id
    ids = encode_prompt(policy.tokenizer, task)  # student; encode_prompt(tok, task, feedback) = teacher
    [s] = sampling.sample(policy, [ids], max_new_tokens=64, temperature=1.0, generator=0)
    logprobs, entropies = token_logprobs(policy.model, [ids], [s.ids])

The `small-prover` preset is a folder that sft.py builds on first use: `load(sft.resolve_model("small-prover"))`.
Run `python model.py FOLDER` to print a student and a teacher prompt and one greedy sample.
"""
import contextlib
import json
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from fdlean import sampling
from fdlean.sampling import Sample

# The chat-template path (real HF models): one user message, the assistant turn is the proof.
CHAT_INSTRUCTION = ("Complete the following Lean 4 theorem. Reply with the proof only: "
                    "the Lean text that follows `:=`, without restating the theorem.")
# ... and when the model may call the paper's tools (turns.py, lean_tools.py): the last written file is the answer
TOOL_INSTRUCTION = ("Prove the following Lean 4 theorem. Write the whole file (the theorem exactly as given, then "
                    "its proof) with lean_write_file, compile it with lean_check_file, read Lean's messages and "
                    "rewrite until it compiles; rg_in_mathlib searches Mathlib's sources. The last file you write "
                    "is your answer.")


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


class PromptError(ValueError):
    """A prompt style this model cannot take (e.g. a chat style for a tokenizer without a chat template)."""


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


def load(name_or_path: str, device=None, dtype=None, prompt: str = "auto", thinking: bool = True) -> Policy:
    """A local HF-format folder or an HF hub id. Raises ModelNotFound for a name it cannot read (see
    check_name) or a hub id the hub did not give. The `small-prover` preset is a folder sft.py builds:
    the scripts pass `sft.resolve_model(name)` here. `prompt` (a STYLES key, or auto: by the model's name)
    and `thinking` (Qwen3's enable_thinking) hold for every prompt rendered with its tokenizer."""
    if name_or_path == "small-prover":
        raise ModelNotFound("model 'small-prover': the preset is built by sft.py; "
                            "load sft.resolve_model('small-prover') (its folder, built on first use)")
    check_name(name_or_path)
    name, path = name_or_path, os.path.expanduser(name_or_path)
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
    set_prompting(tokenizer, prompt, thinking, name)
    return Policy(model.to(device).eval(), tokenizer, device, name)


def save(policy: Policy, path: str) -> None:
    """HF format: config.json + model.safetensors + tokenizer files; `load(path)` reads it back."""
    os.makedirs(path, exist_ok=True)
    policy.model.save_pretrained(path, safe_serialization=True)
    policy.tokenizer.save_pretrained(path)


# ----------------------------------------------------------------------------- prompts

# A prover answers best in the prompt it was trained with, so a family with a documented prompt (its model card)
# gets that prompt; anything else gets ours. The style and Qwen3's thinking switch live on the tokenizer (set by
# `load`) so that student, teacher and the self critic, which share it, can never be prompted differently.
STYLES = {
    "chat": "our instruction in one user message (any chat model)",
    "kimina": "Kimina-Prover: an expert-in-Lean system message, '# Problem:' then '# Formal statement:'",
    "deepseek": "DeepSeek-Prover-V2 / Goedel-Prover-V2: 'Complete the following Lean 4 code' and a proof plan",
    "completion": "DeepSeek-Prover-V1.5: plain text that ends at ':=', the model continues the code block",
    "plain": "the small prover: the statement alone, feedback as a comment before ':='",
}
_PLAN = ("Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof plan "
         "outlining the main proof steps and strategies.\nThe plan should highlight key ideas, intermediate "
         "lemmas, and proof structures that will guide the construction of the final formal proof.")


@dataclass(frozen=True)
class Prompting:
    style: str = "chat"        # one of STYLES
    thinking: bool = True      # Qwen3's enable_thinking, passed to every chat template (others ignore it)


def detect_style(name: str, tokenizer) -> str:
    """The style a model's name and tokenizer call for (`--prompt auto`)."""
    low = name.lower()
    if not getattr(tokenizer, "chat_template", None):
        return "completion" if "prover-v1.5" in low else "plain"
    if "kimina-prover" in low:
        return "kimina"
    if "deepseek-prover-v2" in low or "goedel-prover-v2" in low:
        return "deepseek"
    return "completion" if "prover-v1.5" in low else "chat"


def prompting(tokenizer) -> Prompting:
    found = getattr(tokenizer, "fd_prompting", None)
    if found is None:  # a tokenizer not loaded by `load` (tests, tools): what its name calls for
        found = Prompting(detect_style(getattr(tokenizer, "name_or_path", "") or "", tokenizer))
    return found


def set_prompting(tokenizer, style: str = "auto", thinking: bool = True, name: str = "") -> Prompting:
    if style == "auto":
        style = detect_style(name or getattr(tokenizer, "name_or_path", "") or "", tokenizer)
    if style not in STYLES:
        raise PromptError(f"prompt style {style!r}: must be auto or one of {', '.join(STYLES)}")
    if style in ("chat", "kimina", "deepseek") and not getattr(tokenizer, "chat_template", None):
        raise PromptError(f"prompt style {style!r} needs a chat template, and this tokenizer has none "
                         "(use 'plain' or 'completion')")
    tokenizer.fd_prompting = Prompting(style, thinking)
    return tokenizer.fd_prompting


def chat_template(tokenizer, messages, tools=None, add_generation_prompt=True) -> str:
    """The tokenizer's chat template with the run's thinking switch: the one way every script renders a chat."""
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         enable_thinking=prompting(tokenizer).thinking)


def _code(task, tail: str = "") -> str:
    return (task.header.strip() + "\n\n" if task.header else "") + task.statement + tail


def chat_messages(task, feedback: str | None = None, tools=None, style: str = "chat") -> list[dict]:
    """The chat path's conversation so far: the instruction of the style (our own, or the tools' one when the
    model may call tools), the header and the statement, then the feedback."""
    informal = getattr(task, "informal", "").strip()
    system = []
    if style == "kimina" and not tools:
        user = ("Think about and solve the following problem step by step in Lean 4.\n# Problem:" + informal
                + "\n# Formal statement:\n```lean4\n" + _code(task, " by\n") + "```\n")
        system = [{"role": "system", "content": "You are an expert in mathematics and Lean 4."}]
    elif style == "deepseek" and not tools:
        user = "Complete the following Lean 4 code:\n\n```lean4\n" + _code(task, " by\n  sorry") + "\n```\n\n" + _PLAN
    else:
        user = (TOOL_INSTRUCTION if tools else CHAT_INSTRUCTION) + "\n\n```lean\n" + _code(task) + "\n```"
    if feedback:
        user += "\n\n" + feedback
    return system + [{"role": "user", "content": user}]


def render_prompt(tokenizer, task, feedback: str | None = None, tools=None) -> str:
    """THE prompt of the student (feedback=None) and of the teacher (feedback = framed text F(y)).

    Chat styles (real HF models): the instruction, the header and the statement, then the feedback, through the
    chat template; the generation prompt opens the assistant turn, which holds the proof (with `tools`, the JSON
    specs of lean_tools.TOOLS, the template declares them and the turn may call them: turns.py). Completion
    style: the code block opened, the feedback as a comment before the statement, the text ending at `:=`.
    Plain (the small prover): the statement with the theorem's name normalised to `thm` (the name carries no
    information), the feedback as a Lean comment right before the final `:=` (where a small prover measurably
    uses it best), then `:=`; the proof follows."""
    style = prompting(tokenizer).style
    if style in ("chat", "kimina", "deepseek"):
        return chat_template(tokenizer, chat_messages(task, feedback, tools, style), tools)
    statement = task.statement.rstrip()
    assert statement.endswith(":="), f"a statement ends with ':=': {statement[-40:]!r}"
    header = task.header.strip() + "\n\n" if task.header else ""
    if style == "completion":
        informal = getattr(task, "informal", "").strip()
        note = "".join(f"/- {x} -/\n" for x in (informal, feedback) if x)
        return (tokenizer.bos_token or "") + "Complete the following Lean 4 code:\n\n```lean4\n" + header + note + statement
    head = re.sub(r"^(\s*(?:theorem|lemma)\s+)\S+", r"\1thm", statement[:-2].rstrip())
    hint = f" /- {feedback} -/" if feedback else ""
    return (tokenizer.bos_token or "") + header + head + hint + " :="


def encode_prompt(tokenizer, task, feedback: str | None = None, tools=None) -> list[int]:
    # add_special_tokens=False: BOS / chat tokens are already part of the rendered text
    return tokenizer(render_prompt(tokenizer, task, feedback, tools), add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- the answer in an output
_FENCE = re.compile(r"```[ \t]*(lean4?|)[ \t]*\n(.*?)```", flags=re.S)
_NOISE = re.compile(r"^[ \t]*(?:(?:import|set_option|open)\b|--)[^\n]*\n?", flags=re.M)


def answer_text(text: str) -> str:
    """What a model's output offers as Lean code: after its reasoning (the last `</think>`; nothing if it is
    still thinking), inside its last lean code block, else before a lone closing fence (completion style: the
    prompt opened the block), else the text itself; without imports, options, `open`s and comments."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return ""
    found = _FENCE.findall(text)
    fences = [body for lang, body in found if lang] or [body for _, body in found]  # lean blocks first
    if fences:
        text = fences[-1]
    elif re.search(r"```[ \t]*lean4?[ \t]*\n", text):  # opened and cut off
        text = re.split(r"```[ \t]*lean4?[ \t]*\n", text)[-1]
    elif "```" in text:
        text = text.split("```", 1)[0]
    text = re.sub(r"/-.*?-/", "", text, flags=re.S)  # comments (docstrings too) hold no proof
    return _NOISE.sub("", text).strip()


def _restated(task) -> re.Pattern:
    """The task's statement as the start of a restated theorem: any name (or `example`), any spacing."""
    words = task.statement.split()
    if words[0] in ("theorem", "lemma"):
        words = words[2:]
    body = r"\s*".join(re.escape(w) for w in words)
    return re.compile(r"(?:(?:theorem|lemma)\s+\S+|example)\s*" + body + r"\s*", flags=re.S)


def proof_text(sample_or_text, task=None) -> str:
    """The text to give Lean after `:=` (answer_text). A restated theorem gives the proof after its `:=` when
    the statement is the task's; a different statement stays as written, so that the verifier refuses it ("the
    answer restates the theorem with another statement"). Without `task`, any restatement is cut at its `:=`."""
    text = answer_text(sample_or_text.text if isinstance(sample_or_text, Sample) else sample_or_text)
    if re.match(r"(theorem|lemma|example)\b", text) and ":=" in text:
        if task is None:
            return text.split(":=", 1)[1].strip()
        m = _restated(task).match(text)
        if m:
            return text[m.end():].strip()
    return text


# ----------------------------------------------------------------------------- scoring

def forward_hidden(model, input_ids, attention_mask=None, position_ids=None):
    """(B, T, H) last-layer states after the final norm: logits = hidden @ lm_head_weight.T. A sharded model
    (shard.py) reads them through its registered forward, which gathers its parameters."""
    if hasattr(model, "fd_hidden"):
        return model.fd_hidden(input_ids, attention_mask, position_ids)
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state


def lm_head_weight(model):
    """(V, H); assumes logits = hidden @ W.T with no bias or soft-capping (Llama, Qwen, Mistral)."""
    return model.get_output_embeddings().weight


def attempt_hidden(model, prompt_ids, attempt_ids, pad_id: int = 0):
    """Hidden states that predict each attempt token: (hidden (B, L, H), targets (B, L), mask (B, L)).
    Rows are prompt + attempt, right-padded: causal attention never looks at the padding, so no
    attention mask is needed. Teacher and student prompts differ in length, but both results are
    aligned on the attempt's tokens, which is what the FD loss compares."""
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


def mean_entropy(hidden, weight, targets, mask, chunk_size=1024) -> float:
    """The policy's mean entropy (nats) over the attempt tokens: what the paper tracks during training."""
    _, entropies = chunked_logprobs(hidden.detach(), weight.detach(), targets, mask, chunk_size, entropy=True)
    return float(entropies[mask].mean()) if mask.any() else float("nan")


def token_logprobs(model, prompt_ids, attempt_ids, chunk_size: int = 1024):
    """Per attempt token: log pi(y_t | prompt, y_<t) and the entropy of pi(. | prompt, y_<t), as (B, L)
    tensors, zero past each attempt's end, through chunked_logprobs: a large vocabulary never sits
    in memory whole. Log-probs carry gradients unless under torch.no_grad(); entropies are detached."""
    hidden, targets, mask = attempt_hidden(model, prompt_ids, attempt_ids)
    return chunked_logprobs(hidden, lm_head_weight(model), targets, mask, chunk_size, entropy=True)


if __name__ == "__main__":
    import sys
    from types import SimpleNamespace
    torch.set_num_threads(1)
    if len(sys.argv) != 2:
        sys.exit("usage: python model.py FOLDER_OR_HF_ID   (the preset: python sft.py prints its folder)")
    policy = load(sys.argv[1])
    task = SimpleNamespace(name="mini_demo", header="", level=1, solution="⟨h1.2, h1.1⟩",
                           statement="theorem mini_demo (p q : Prop) (h1 : And p q) : And q p :=")
    print("student:", render_prompt(policy.tokenizer, task))
    print("teacher:", render_prompt(policy.tokenizer, task, "Example of a correct solution: ⟨h1.2, h1.1⟩"))
    s = sampling.sample(policy, [encode_prompt(policy.tokenizer, task)], temperature=0)[0]
    print("greedy:", s, "->", proof_text(s))
