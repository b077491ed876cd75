"""Encoder plugins: frozen per-modality backbones that return token sequences and masks.

Built-ins register on first use; third-party packages add encoders through the
``spaner.encoders`` entry-point group (see :mod:`spaner.encoders.registry`).
"""

from __future__ import annotations

from .base import Encoder, EncoderSpec, ItemTokens, TokenBatch
from .decode import DEFAULT_LIMITS, Limits, load_audio, load_image, load_text
from .registry import (
    ENTRY_POINT_GROUP,
    build_encoder,
    get_spec,
    list_encoders,
    plugin_errors,
    register_encoder,
    reload_plugins,
    unregister_encoder,
)

__all__ = [
    "Encoder",
    "EncoderSpec",
    "ItemTokens",
    "TokenBatch",
    "Limits",
    "DEFAULT_LIMITS",
    "load_image",
    "load_audio",
    "load_text",
    "ENTRY_POINT_GROUP",
    "build_encoder",
    "get_spec",
    "list_encoders",
    "plugin_errors",
    "register_encoder",
    "reload_plugins",
    "unregister_encoder",
]
