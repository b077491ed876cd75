"""Evaluation: retrieval and coherence metrics, and baselines scored side by side in one run."""
