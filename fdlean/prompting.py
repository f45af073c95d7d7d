"""THE prompt of student and teacher, and the answer in a model's output.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 3. The student
pi_theta(. | x) and the teacher pi_mu(. | x, F(y)) are the SAME network; they differ only in the prompt, and both
prompts come from `render` so they can never drift apart. Each prompt ends exactly where the proof starts, so the
student's sampled ids y are appended unchanged to either prompt and re-scored token by token (never re-tokenised).

    ids = prompting.encode(tokenizer, task)                 # the student's prompt: x
    ids = prompting.encode(tokenizer, task, feedback)       # the teacher's: x, F(y) (feedback framed by feedback.py)
    ids = prompting.encode(tokenizer, task, tools=True)     # a chat model that will call the paper's tools: declared
    prompting.proof_text(sample, task)                      # the proof a model's output offers Lean
"""
import re
from dataclasses import dataclass

from fdlean.sampling import Sample

CHAT_INSTRUCTION = ("Complete the following Lean 4 theorem. Reply with the proof only: "
                    "the Lean text that follows `:=`, without restating the theorem.")
# ... and when the model may call the paper's tools (turns.py, tools.py): the last written file is the answer
TOOL_INSTRUCTION = ("Prove the following Lean 4 theorem. Write the whole file (the theorem exactly as given, then "
                    "its proof) with lean_write_file, compile it with lean_check_file, read Lean's messages and "
                    "rewrite until it compiles; rg_in_mathlib searches Mathlib's sources. The last file you write "
                    "is your answer.")



class PromptError(ValueError):
    """A prompt style this model cannot take (e.g. a chat style for a tokenizer without a chat template)."""



# ----------------------------------------------------------------------------- prompt styles

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


def style_of(tokenizer) -> Prompting:
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
                                         enable_thinking=style_of(tokenizer).thinking)


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


def as_text(tokenizer, text: str) -> str:
    """Untrusted text (feedback, Lean's messages, tool outputs: all can quote what a model wrote) made to tokenize
    as text: every special or added token's string in it (`<|im_end|>`, `<tool_call>`, `<eos>`) gets a zero-width
    space after its first character, so it can never become that token and close a turn or open a call."""
    marks = getattr(tokenizer, "fd_control_strings", None)
    if marks is None:
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        marks = sorted({t for t in list(getattr(tokenizer, "all_special_tokens", []))
                        + [str(getattr(a, "content", a)) for a in added.values()] if len(t) > 1}, key=len, reverse=True)
        try:
            tokenizer.fd_control_strings = marks
        except AttributeError:   # a tokenizer that takes no attributes: computed every time
            pass
    for mark in marks:
        if mark in text:
            text = text.replace(mark, mark[0] + "\u200b" + mark[1:])
    return text


def render(tokenizer, task, feedback: str | None = None, tools=None) -> str:
    """THE prompt of the student (feedback=None) and of the teacher (feedback = framed text F(y)).

    Chat styles (real HF models): the instruction, the header and the statement, then the feedback, through the
    chat template; the generation prompt opens the assistant turn, which holds the proof (with `tools`, the JSON
    specs of tools.TOOLS, the template declares them and the turn may call them: turns.py). Completion
    style: the code block opened, the feedback as a comment before the statement, the text ending at `:=`.
    Plain (the small prover): the statement with the theorem's name normalised to `thm` (the name carries no
    information), the feedback as a Lean comment right before the final `:=` (where a small prover measurably
    uses it best), then `:=`; the proof follows."""
    style = style_of(tokenizer).style
    feedback = as_text(tokenizer, feedback) if feedback else feedback   # text, never control tokens
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


def attempt_problem(tokenizer, tools: bool, turns: int) -> str | None:
    """What is wrong with this way of attempting for this model, or None. The paper's agentic attempt (--tools)
    needs a chat model, whose template declares the tools; its length is its token budget, not a count of turns.
    --turns N is the small prover's miniature of it: Lean's message between candidates."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    if tools and not chat:
        return ("--tools: this model has no chat template to declare the tools in (the paper's agentic attempt is a "
                "chat model's); the small prover's miniature of it is --turns N")
    if tools and turns > 1:
        return ("--turns: with --tools an attempt goes on, tool call after tool call, until the model answers or "
                "--max-new-tokens are spent; --turns N is the small prover's loop")
    if chat and turns > 1:
        return ("--turns: a chat model's multi-step attempt is the paper's agentic one: give --tools instead "
                "(--turns N is the small prover's loop)")
    return None


def encode(tokenizer, task, feedback: str | None = None, tools: bool = False) -> list[int]:
    """The prompt's ids: `render`, with the paper's tools declared when the attempt will call them (agent.py)."""
    if tools:
        from fdlean.tools import TOOLS  # the chat tools load only where an attempt uses them
        tools = TOOLS
    else:
        tools = None
    # add_special_tokens=False: BOS / chat tokens are already part of the rendered text
    return tokenizer(render(tokenizer, task, feedback, tools), add_special_tokens=False)["input_ids"]


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

