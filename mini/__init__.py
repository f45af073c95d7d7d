"""The built-in mini world: a theorem generator (world), its Lean prelude (prelude.lean), the task sets every
script reads (tasks: the mini world's, and task files such as miniF2F), the offline tutor (tutor) and the
balanced probes (probes)."""
