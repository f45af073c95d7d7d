"""The machinery every script shares, below the five scripts a reader reads next to the paper.

cli (settings and the command line), lean (the checker's contract: Task in, Result out; running Lean),
screen (what model-written text may reach Lean), lm (load a model, score its tokens), prompting (the one
prompt of student and teacher, and the answer in an output), sampling (attempts, plain then fast),
turns (the attempt loop), attempt (what an attempt holds, its transcript), agent and tools (a chat model's
attempt with the paper's three tools), measure (a model's attempts at a task set and what they hold), intervals, report (tables and plots), parallel (data parallel
under torchrun), critics (LLM critics over HTTP). Nothing here imports a script or another folder.
"""
