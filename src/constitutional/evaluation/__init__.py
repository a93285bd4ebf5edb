"""Evaluation: metrics, the preference model and labeler checks, and (as they land) harm,
refusals, comparisons and the report."""
