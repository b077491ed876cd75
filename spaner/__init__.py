"""SPANER: one embedding space for text, images and audio, aligned few-shot by a shared prompt.

Frozen modality encoders (:mod:`spaner.encoders`) produce token sequences; a learnable
shared prompt and per-modality cross-attention aligners (:mod:`spaner.model`) map them to
unit vectors in one space, searched by :mod:`spaner.index` and served by :mod:`spaner.app`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
