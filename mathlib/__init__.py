"""Checkers for real Lean + Mathlib tasks, behind lean_env.load: a pool of Lean REPLs and `lake env lean`
(repl), and a Kimina Lean Server's client (kimina)."""
