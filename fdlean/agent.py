"""A chat model's agentic attempt: it writes, compiles and searches with the paper's tools, then answers with its file.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4.1 and Appendix A.2. The
model drives the loop itself: its prompt declares the three tools of tools.py through its chat template; each
turn is one generation whose tool calls (its own format, e.g. Qwen's <tool_call> JSON) are run, their outputs
appended in the template's tool role (as text: prompting.as_text, so a quoted `<|im_end|>` stays text); it stops
when a generation calls no tool or after N generations. Its answer is the last file it wrote (checked by Lean if
its last check was not of that file; without any file, the proof in its last generation). turns.rollout hands a
chat model's attempts here.

Tool calls go through tools.parse_calls and Workspace.run, which never raise and are capped (tools.py: at most 8
calls run per generation, 2000 characters per output, searches with a deadline). Should our own code still fail
on one attempt's text, that attempt ends there and the others go on.
"""
import os

from fdlean import prompting, sampling
from fdlean.attempt import Attempt, go_on, rows_of, safe_transcript


def mathlib_sources(env):
    """Where rg_in_mathlib searches: the Mathlib package of the verifier's Lean project, if it has one."""
    project = getattr(env, "project", None)
    path = os.path.join(project, ".lake", "packages", "mathlib") if project else None
    return path if path and os.path.isdir(path) else None


def rollout_tools(policy, env, tasks, prompts, turns, max_new_tokens, temperature, top_p, generator, clock=None,
                  **limits):
    """The chat model's agentic attempts (see the docstring), advanced together generation by generation.
    `limits`: tools.Workspace's settings (max_calls, result_chars, max_matches, rg_timeout, ...; their defaults
    otherwise). Should our own code fail on one attempt's text, that attempt ends there (its transcript says so)
    and the others go on."""
    from fdlean import tools  # the chat tools load only where an attempt calls them
    tok = policy.tokenizer
    attempts = [Attempt() for _ in tasks]
    spaces = [tools.Workspace(t, env, mathlib_sources(env), **limits) for t in tasks]
    talks = [prompting.chat_messages(t, tools=tools.TOOLS) for t in tasks]
    said = [prompting.render(tok, t, tools=tools.TOOLS) for t in tasks]  # the text so far, as rendered
    going = list(range(len(tasks)))
    for turn in range(turns):
        samples = sampling.sample(policy, [prompts[i] + attempts[i].ids for i in going], max_new_tokens,
                                  temperature, top_p, rows_of(generator, going))
        if clock:
            clock.lap("sample")
        still = []
        for i, s in zip(going, samples):
            a = attempts[i]
            a.turns += 1
            a.add(s.ids, True, s.entropy)
            a.truncated = s.truncated
            a.log.append(("model", s.text))
            try:
                if _tool_turn(policy, tools, a, spaces[i], s, talks, said, i, prompts[i], turn == turns - 1,
                              max_new_tokens):
                    still.append(i)
            except Exception as e:   # our code failed on this attempt's text: it ends here, the batch goes on
                a.log.append(("tool", f"error: the attempt ended here: its tool calls could not be handled "
                                      f"({type(e).__name__})"))
        going = still
        if not going:
            break
    # the answer: the last file written (or, without one, the proof in the last generation), with its verdict
    final = []
    for i, (a, ws) in enumerate(zip(attempts, spaces)):
        try:
            answer = ws.answer if ws.file is not None else _last_text(tok, a, tasks[i])
        except Exception:   # its text defeats our answer extraction: nothing, which Lean refuses
            answer = ""
        if not a.candidates or a.candidates[-1] != answer:  # its last check was not of the answer
            final.append((i, answer))
    for (i, answer), r in zip(final, env.check_many([(tasks[i], answer) for i, answer in final])):
        attempts[i].candidates.append(answer)
        attempts[i].results.append(r)
    if clock:
        clock.lap("lean")
    for a in attempts:
        a.transcript = safe_transcript(a)
    return attempts


def _tool_turn(policy, tools, a, ws, s, talks, said, i, prompt, last, max_new_tokens) -> bool:
    """Run one generation's tool calls (at most ws.max_calls) and, unless it called none or was the last, append
    what the template puts after it and the outputs (as text: prompting.as_text); True when the attempt goes on."""
    tok = policy.tokenizer
    calls, outputs = tools.parse_calls(s.text, ws.max_calls), []
    for c in calls:
        before = ws.result
        outputs.append(ws.run(c))
        if ws.result is not before:  # a check ran: the file it compiled is a candidate, with Lean's verdict
            a.candidates.append(ws.answer)
            a.results.append(ws.result)
    a.log += [("tool", out) for out in outputs]
    if not calls or last:
        return False
    shown = [prompting.as_text(tok, out) for out in outputs]   # Lean may quote `<|im_end|>` from the proof
    # what the template puts after this generation (its turn's end) and the tools' outputs
    talks[i] = talks[i] + [{"role": "assistant", "content": s.text}]
    closed = prompting.chat_template(tok, talks[i], tools.TOOLS, add_generation_prompt=False)
    ended = said[i] + tok.decode(s.ids)
    gap = closed[len(ended):] if closed.startswith(ended) else "\n"
    gap += tool_messages(tok, talks[i], shown, tools.TOOLS)
    talks[i] += [{"role": "tool", "content": out} for out in shown]
    tool = tok(gap, add_special_tokens=False)["input_ids"]
    said[i] = ended + gap
    return go_on(policy, prompt, a, tool, max_new_tokens)



# ---- the chat side: the text that feeds the tools' outputs back to the model
def tool_messages(tokenizer, conversation: list[dict], outputs: list[str], tools) -> str:
    """The text that follows the rendered `conversation` (its last message: the assistant's generated text, with
    its tool calls) so that the next assistant turn starts: the tools' outputs in the template's tool role, then
    the generation prompt. The next prompt is render(conversation) + this, where render is the chat template
    without generation prompt: earlier tokens never change, so one attempt stays one sequence.

    It is the template's own rendering, as a difference: conversation + tool messages with the generation prompt,
    minus the conversation alone. A template that rewrites earlier turns has no such difference (Qwen3 gives the
    last assistant turn a <think> block, empty if need be, that the turn loses once a tool message follows it);
    then the plain rendering: each output in <tool_response> tags (Qwen3's own wrapping) on lines of their own,
    then the template's generation prompt (the conversation rendered with it, minus without it).

    The outputs go through prompting.as_text first: a special token's string in them (`<|im_end|>` quoted back
    by Lean from a proof) stays text. (Pass the same as_text'd outputs as the tool messages of a conversation
    rendered later, as rollout_tools does, so that the text matches.)"""
    outputs = [prompting.as_text(tokenizer, out) for out in outputs]

    def render(messages, prompt):
        return prompting.chat_template(tokenizer, messages, tools, add_generation_prompt=prompt)
    before = render(conversation, False)
    after = render(conversation + [{"role": "tool", "content": out} for out in outputs], True)
    if after.startswith(before):
        return after[len(before):]
    opened = render(conversation, True)
    start = opened[len(before):] if opened.startswith(before) else ""
    return "".join(f"<tool_response>\n{out}\n</tool_response>\n" for out in outputs) + start


def _last_text(tok, a: Attempt, task) -> str:
    """The proof in the attempt's last generation: its ids after the last tool output."""
    start = len(a.trained) - next((k for k, own in enumerate(reversed(a.trained)) if not own), len(a.trained))
    return prompting.proof_text(tok.decode(a.ids[start:], skip_special_tokens=True), task)

