"""constitutional: Constitutional AI (Bai et al. 2022) end to end, on any causal LM."""

__version__ = "0.1.0"
