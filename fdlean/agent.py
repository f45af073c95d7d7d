"""A chat model's agentic attempt: it writes, compiles and searches with the paper's tools, then answers with its file.

Paper: "Distilling LLM Feedback for Lean Theorem Proving" (arXiv 2605.30861), Section 4.1 and Appendix A.2. The
model drives the loop itself, in ONE attempt of at most `max_new_tokens` sampled tokens (the paper's 8,192): its
prompt declares the three tools of tools.py through its chat template; when it writes a tool call (its own format,
e.g. Qwen's <tool_call> JSON) the generation stops there (sampling's stop text: tools.CALL_END), the call runs, its
output is appended in the template's tool role (as text: prompting.as_text, so a quoted `<|im_end|>` stays text)
and the generation resumes with what is left of the budget. The attempt ends when a generation calls no tool (the
model has answered), when the budget or the model's context is spent, or after MAX_GENERATIONS generations. As in
the paper, the problem is solved when the model has written a Lean file that compiles and proves the statement: the
answer is the last file written (checked by Lean if its last check was not of that file); without a file there is
no answer. turns.rollout hands a chat model's attempts here when --tools is on.

Tool calls go through tools.parse_calls and Workspace.run, which never raise and are capped (tools.py: at most 8
calls run per generation, 2000 characters per output, searches with a deadline). Should our own code still fail
on one attempt's text, that attempt ends there and the others go on.
"""
import os
import secrets

from fdlean import lean, prompting, sampling
from fdlean.attempt import Attempt, rows_of, safe_transcript

MAX_GENERATIONS = 64   # generations (tool calls + 1) per attempt at most: a bound on Lean runs, ours (not the paper's)
NO_FILE = "no file was written: the answer is the last file written with lean_write_file"


def mathlib_sources(env):
    """Where rg_in_mathlib searches: the Mathlib package of the verifier's Lean project, if it has one."""
    project = getattr(env, "project", None)
    path = os.path.join(project, ".lake", "packages", "mathlib") if project else None
    return path if path and os.path.isdir(path) else None


def rollout_tools(policy, env, tasks, prompts, max_new_tokens, temperature, top_p, generator, clock=None,
                  max_generations=MAX_GENERATIONS, **limits):
    """The chat model's agentic attempts (see the docstring), advanced together generation by generation, each
    within what is left of its `max_new_tokens` and of the model's context. `limits`: tools.Workspace's settings
    (max_calls, result_chars, max_matches, rg_timeout, ...; their defaults otherwise). Should our own code fail on
    one attempt's text, that attempt ends there (its transcript says so) and the others go on."""
    from fdlean import tools  # the chat tools load only where an attempt calls them
    tok = policy.tokenizer
    context = getattr(policy.model.config, "max_position_embeddings", None) or 1 << 30
    attempts = [Attempt() for _ in tasks]
    spaces = [tools.Workspace(t, env, mathlib_sources(env), **limits) for t in tasks]
    talks = [prompting.chat_messages(t, tools=tools.TOOLS) for t in tasks]
    said = [prompting.render(tok, t, tools=tools.TOOLS) for t in tasks]  # the text so far, as rendered
    left = lambda i: min(max_new_tokens - attempts[i].n_sampled, context - len(prompts[i]) - len(attempts[i].ids))
    going = [i for i in range(len(tasks)) if left(i) > 0]
    for generation in range(max_generations):
        if not going:
            break
        samples = sampling.sample(policy, [prompts[i] + attempts[i].ids for i in going], [left(i) for i in going],
                                  temperature, top_p, rows_of(generator, going), stop=tools.CALL_END)
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
                # room for the outputs and one more generation: none after the last one or with the budget spent
                more = generation < max_generations - 1 and a.n_sampled < max_new_tokens
                room = context - len(prompts[i]) - len(a.ids) if more else 0
                if not s.truncated and _tool_turn(policy, tools, a, spaces[i], s, talks, said, i, room) and left(i) > 0:
                    still.append(i)
            except Exception as e:   # our code failed on this attempt's text: it ends here, the batch goes on
                a.log.append(("tool", f"error: the attempt ended here: its tool calls could not be handled "
                                      f"({type(e).__name__})"))
        going = still
    # the answer: the last file written, with its verdict (Lean's last word on it, or a check now)
    final = []
    for i, (a, ws) in enumerate(zip(attempts, spaces)):
        if ws.file is None:
            a.candidates.append("")
            a.results.append(lean.Result(False, "error", [NO_FILE]))
        elif not a.candidates or a.candidates[-1] != ws.answer or a.results[-1] is not ws.result:
            final.append((i, ws.answer))
    for (i, answer), r in zip(final, env.check_many([(tasks[i], answer) for i, answer in final])):
        attempts[i].candidates.append(answer)
        attempts[i].results.append(r)
    if clock:
        clock.lap("lean")
    for a in attempts:
        a.transcript = safe_transcript(a)
    return attempts


def _tool_turn(policy, tools, a, ws, s, talks, said, i, room) -> bool:
    """Run the generation's tool calls (at most ws.max_calls; the stop text leaves one) and, unless it called none,
    append what the template puts after it and the outputs (as text: prompting.as_text), when they fit the `room`
    left in the model's context with a token more; True when the attempt goes on. The appended ids are context:
    never sampled, never trained on (Attempt.add(..., False))."""
    tok = policy.tokenizer
    calls, outputs = tools.parse_calls(s.text, ws.max_calls), []
    for c in calls:
        before = ws.result
        outputs.append(ws.run(c))
        if ws.result is not before:  # a check ran: the file it compiled is a candidate, with Lean's verdict
            a.candidates.append(ws.answer)
            a.results.append(ws.result)
    a.log += [("tool", out) for out in outputs]
    if not calls:
        return False
    shown = [prompting.as_text(tok, out) for out in outputs]   # Lean may quote `<|im_end|>` from the proof
    # what the template puts after this generation (its turn's end) and the tools' outputs
    talks[i] = talks[i] + [{"role": "assistant", "content": s.text}]
    closed = prompting.chat_template(tok, talks[i], tools.TOOLS, add_generation_prompt=False)
    ended = said[i] + tok.decode(s.ids)
    gap = closed[len(ended):] if closed.startswith(ended) else turn_end(tok, talks[i], tools.TOOLS)
    gap += tool_messages(tok, talks[i], shown, tools.TOOLS)
    talks[i] += [{"role": "tool", "content": out} for out in shown]
    tool = tok(gap, add_special_tokens=False)["input_ids"]
    if len(tool) + 1 > room:
        return False
    a.add(tool, False)
    said[i] = ended + gap
    return True



# ---- the chat side: the text that feeds the tools' outputs back to the model
def tool_messages(tokenizer, conversation: list[dict], outputs: list[str], tools) -> str:
    """The text that follows the rendered `conversation` (its last message: the assistant's generated text, with
    its tool calls) so that the next assistant turn starts: the tools' outputs in the template's tool role, then
    the generation prompt. The next prompt is render(conversation) + this, where render is the chat template
    without generation prompt: earlier tokens never change, so one attempt stays one sequence.

    It is the template's own rendering, as a difference: conversation + tool messages with the generation prompt,
    minus the conversation alone. A template that rewrites earlier turns has no such difference (Qwen3 gives the
    last assistant turn a <think> block, empty if need be, that the turn loses once a tool message follows it);
    then the same difference around a stand-in for the last message (`_around_stand_in`): what the template puts
    after an assistant turn followed by the tool messages, minus what it puts after that turn alone (its end).

    The outputs go through prompting.as_text first: a special token's string in them (`<|im_end|>` quoted back
    by Lean from a proof) stays text. (Pass the same as_text'd outputs as the tool messages of a conversation
    rendered later, as rollout_tools does, so that the text matches.)"""
    outputs = [prompting.as_text(tokenizer, out) for out in outputs]

    def render(messages, prompt):
        return prompting.chat_template(tokenizer, messages, tools, add_generation_prompt=prompt)
    said = [{"role": "tool", "content": out} for out in outputs]
    before, after = render(conversation, False), render(conversation + said, True)
    if after.startswith(before):
        return after[len(before):]
    end, rest = _around_stand_in(tokenizer, conversation, tools, said)
    return rest[len(end):] if rest.startswith(end) else rest


def turn_end(tokenizer, conversation: list[dict], tools) -> str:
    """What the chat template puts right after the last message of `conversation` (the assistant's generation, cut
    at a tool call's end so the model never wrote it): its turn's end (Qwen3: `<|im_end|>` and a newline). Read
    around a stand-in, for templates whose rendering of the last turn differs from what the model generated."""
    return _around_stand_in(tokenizer, conversation, tools, [])[0]


def _around_stand_in(tokenizer, conversation, tools, then):
    """The conversation with its last (assistant) message replaced by a random stand-in, rendered (a) alone and (b)
    followed by the messages `then` and the generation prompt: the text after the stand-in in each. Every text
    after a message depends on the message's place, not on its content, in the templates we know (ChatML, Qwen3)."""
    stand = f"STANDIN{secrets.token_hex(8)}"
    talk = conversation[:-1] + [{"role": "assistant", "content": stand}]
    alone = prompting.chat_template(tokenizer, talk, tools, add_generation_prompt=False)
    more = prompting.chat_template(tokenizer, talk + then, tools, add_generation_prompt=True)
    return alone[alone.index(stand) + len(stand):], more[more.index(stand) + len(stand):]
