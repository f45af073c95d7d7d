"""Experiments, run as `python -m scripts.NAME`: the paper in miniature (paper), the teacher token by token
(explain), student against teacher (calibrate), two evaluations paired (compare)."""
