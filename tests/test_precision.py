"""Encoder precision: bf16 autocast agrees with fp32, the option and SPANER_PRECISION are respected,
and the feature-cache key tells precisions apart."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from spaner.encoders import build_encoder
from spaner.encoders.base import resolve_precision

TEXTS = ["seven", "a handwritten seven", "someone saying three", "the number 9"]


def _native(enc) -> torch.Tensor:
    return enc.encode(TEXTS).native


def test_fp32_and_bf16_agree_on_a_tiny_encoder():
    fp32 = build_encoder("tiny-clip-text", precision="fp32")
    bf16 = build_encoder("tiny-clip-text", precision="bf16")
    assert fp32.compute_precision == "fp32" and bf16.compute_precision == "bf16"
    a, b = _native(fp32), _native(bf16)
    assert a.dtype == b.dtype == torch.float32  # features leave the encoder as float32 either way
    assert not torch.equal(a, b)  # bf16 really ran
    assert float(F.cosine_similarity(a, b, dim=-1).min()) >= 0.99


def test_precision_option_env_and_cache_key(monkeypatch):
    monkeypatch.setenv("SPANER_PRECISION", "fp32")
    auto = build_encoder("tiny-clip-image")
    assert auto.precision == "auto" and auto.compute_precision == "fp32"
    assert (
        build_encoder("tiny-clip-image", precision="bf16").compute_precision == "bf16"
    )  # explicit beats env
    monkeypatch.setenv("SPANER_PRECISION", "bf16")
    assert auto.compute_precision == "bf16"
    fp32_key = build_encoder("tiny-clip-image", precision="fp32").fingerprint()
    assert auto.fingerprint() != fp32_key
    # fixed transforms never autocast
    assert build_encoder("logmel-audio", precision="bf16").compute_precision == "fp32"
    with pytest.raises(ValueError):
        build_encoder("tiny-clip-image", precision="fp16")
    monkeypatch.setenv("SPANER_PRECISION", "half")
    with pytest.raises(ValueError):
        resolve_precision("auto")
