"""Thin configurations of TRL trainers: sft.py (and, as they land, reward, rl, dpo)."""
