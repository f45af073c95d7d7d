"""The small prover: its build, trained on first use as the `small-prover` preset (sft), and the warm-up
that teaches it multi-turn attempts (sft_turns)."""
