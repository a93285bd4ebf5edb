"""Evaluation: harm and refusals per category, comparisons (Elo), the preference model's and the
feedback model's checks, over-training, capability, languages, robustness and self-preference."""
