"""Encoder precision: the bf16 path runs on one bf16 copy of the frozen weights (no per-call
recast), the fp32 path is the old one bit for bit, both agree, the option and SPANER_PRECISION
are respected, ``auto`` picks bf16 only on CPUs where it is faster, and the feature-cache key
tells precisions apart."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spaner.encoders import build_encoder
from spaner.encoders import precision as prec
from spaner.encoders.base import Encoder, TokenBatch, resolve_precision
from spaner.encoders.precision import FrozenWeights, cast_floats

TEXTS = ["seven", "a handwritten seven", "someone saying three", "the number 9"]
TINY = [
    "tiny-clip-image",
    "tiny-clip-text",
    "tiny-wav2vec2-audio",
    "tiny-bert-text",
    "tiny-clap-audio",
    "tiny-clap-text",
]


def _inputs(enc: Encoder) -> list[Any]:
    """Raw inputs (text, PNG bytes, WAV bytes) for ``enc.encode``."""
    import io
    import wave

    rng = np.random.default_rng(0)
    if enc.modality == "text":
        return list(TEXTS)
    out = []
    if enc.modality == "image":
        from PIL import Image

        for _ in range(3):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buf, "PNG")
            out.append(buf.getvalue())
        return out
    for n in (8000, 5000):
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((rng.standard_normal(n) * 3000).astype("<i2").tobytes())
        out.append(buf.getvalue())
    return out


def _build(name: str, precision: str, seed: int) -> Encoder:
    """A tiny encoder with its own module (a seed no other test uses: open_clip caches per seed)."""
    return build_encoder(name, precision=precision, seed=seed)


def _pooled(out: TokenBatch) -> torch.Tensor:
    if out.native is not None:
        return out.native
    m = out.mask.unsqueeze(-1).float()
    return (out.tokens * m).sum(1) / m.sum(1)


def _old_fp32_forward(enc: Encoder, batch: Any) -> TokenBatch:
    """What Encoder.forward did for fp32 before the bf16 copies: no_grad, _forward, float, cpu."""
    with torch.no_grad():
        out = enc._forward(batch)
    native = out.native.float().cpu() if out.native is not None else None
    return TokenBatch(out.tokens.float().cpu(), out.mask.cpu(), native)


def _float_dtypes(enc: Encoder) -> set[torch.dtype]:
    (module,) = enc.modules()
    tensors = [*module.parameters(), *module.buffers()]
    return {t.dtype for t in tensors if t.is_floating_point()}


@pytest.mark.parametrize("name", TINY)
def test_fp32_unchanged_bf16_on_bf16_weights_and_agrees(name: str):
    enc = _build(name, "fp32", seed=110 + TINY.index(name))
    raws = [enc.load(x) for x in _inputs(enc)]
    batch = enc.preprocess(raws)
    before = _old_fp32_forward(enc, batch)
    fp32 = enc.forward(batch)
    assert torch.equal(fp32.tokens, before.tokens) and torch.equal(fp32.mask, before.mask)
    assert FrozenWeights.of(enc.modules()[0], create=False) is None  # fp32 never made copies

    enc.set_precision("bf16")
    (module,) = enc.modules()
    seen: list[tuple[torch.dtype, int]] = []
    layers = [
        m
        for m in module.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))
        and "weight" in m._parameters  # not weight-normed ones: theirs is computed per call
    ]
    hooks = [
        m.register_forward_pre_hook(
            lambda m, args, i=i: seen.append((i, m.weight.dtype, m.weight.data_ptr()))
        )
        for i, m in enumerate(layers)
    ]
    try:
        bf16 = enc.forward(batch)
        first = len(seen)
        enc.forward(batch)
    finally:
        for h in hooks:
            h.remove()
    # the layers really ran on bf16 weights, the same tensors both times (one copy, no recast)
    assert first > 0 and {d for _, d, _ in seen} == {torch.bfloat16}
    assert [(i, p) for i, _, p in seen[:first]] == [(i, p) for i, _, p in seen[first:]]
    assert _float_dtypes(enc) == {torch.bfloat16}
    assert bf16.tokens.dtype == torch.float32  # features leave as float32 either way
    assert not torch.equal(bf16.tokens, fp32.tokens)  # bf16 really ran
    cos = F.cosine_similarity(_pooled(fp32), _pooled(bf16), dim=-1)
    assert float(cos.min()) >= 0.999

    # back to fp32: the originals come back exactly (rebuilt: this encoder was the only user)
    enc.set_precision("fp32")
    again = enc.forward(batch)
    assert torch.equal(again.tokens, before.tokens)
    assert _float_dtypes(enc) == {torch.float32}
    assert not any(p.requires_grad for p in module.parameters())


def test_one_copy_in_memory_unless_fp32_is_also_needed():
    img = _build("tiny-clip-image", "bf16", seed=102)
    img.encode(_inputs(img))
    fw = FrozenWeights.of(img.modules()[0])
    assert fw is not None and fw.stored() == [torch.bfloat16]  # the fp32 originals were released

    # an fp32 text tower on the same model: both copies are needed now, and both are kept
    txt = _build("tiny-clip-text", "fp32", seed=102)
    assert txt.modules()[0] is img.modules()[0]
    ref = txt.encode(TEXTS)
    assert sorted(map(str, fw.stored())) == ["None", "torch.bfloat16"]
    a = img.encode(_inputs(img))
    assert torch.equal(txt.encode(TEXTS).tokens, ref.tokens)
    assert torch.equal(img.encode(_inputs(img)).tokens, a.tokens)


def test_encoder_without_rebuild_keeps_its_originals():
    class Plain(Encoder):
        name, modality, width, input_kind = "plain", "text", 8, "text"

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(4, 8).eval().requires_grad_(False)

        def load(self, source, name=None):
            return source

        def preprocess(self, raws):
            return torch.randn(len(raws), 3, 4, generator=torch.Generator().manual_seed(1))

        def _forward(self, batch):
            y = self.net(batch)
            return TokenBatch(y, torch.ones(y.shape[:2], dtype=torch.bool))

        def config(self):
            return {}

        def modules(self):
            return [self.net]

    enc = Plain().set_precision("fp32")  # the reference is fp32 whatever auto picks here
    assert not enc.can_rebuild
    ref = enc.encode(["a", "b"])
    enc.set_precision("bf16")
    assert enc.encode(["a", "b"]).tokens.dtype == torch.float32
    assert enc.net.weight.dtype == torch.bfloat16
    assert sorted(map(str, FrozenWeights.of(enc.net).stored())) == ["None", "torch.bfloat16"]
    enc.set_precision("fp32")
    assert torch.equal(enc.encode(["a", "b"]).tokens, ref.tokens)


def test_concurrent_fp32_and_bf16_forwards_on_a_shared_model():
    fp32 = _build("tiny-clip-text", "fp32", seed=103)
    bf16 = _build("tiny-clip-text", "bf16", seed=103)
    assert fp32.modules()[0] is bf16.modules()[0]
    want = {"fp32": fp32.encode(TEXTS).native, "bf16": bf16.encode(TEXTS).native}
    errors: list[str] = []

    def run(enc: Encoder, key: str) -> None:
        for _ in range(15):
            if not torch.equal(enc.encode(TEXTS).native, want[key]):
                errors.append(key)

    threads = [
        threading.Thread(target=run, args=(e, k)) for e, k in ((fp32, "fp32"), (bf16, "bf16"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cast_floats_walks_batches():
    batch = ({"x": torch.ones(2), "ids": torch.ones(2, dtype=torch.long)}, [torch.zeros(1)], 3)
    out = cast_floats(batch, torch.bfloat16)
    assert out[0]["x"].dtype == torch.bfloat16 and out[0]["ids"].dtype == torch.long
    assert out[1][0].dtype == torch.bfloat16 and out[2] == 3


@pytest.mark.parametrize(
    "vendor,flags,faster",
    [
        ("AuthenticAMD", {"avx512_bf16", "avx512f"}, True),
        ("GenuineIntel", {"avx512_bf16", "avx512f"}, False),  # no AMX: bf16 GEMM peak = fp32's
        ("GenuineIntel", {"avx512_bf16", "amx_bf16", "amx_tile"}, True),
        ("AuthenticAMD", {"avx2"}, False),
    ],
)
def test_auto_picks_bf16_only_where_it_is_faster(monkeypatch, vendor, flags, faster):
    monkeypatch.delenv("SPANER_PRECISION", raising=False)
    monkeypatch.setattr(prec, "_cpuinfo", lambda: (vendor, frozenset(flags)))
    assert prec.bf16_faster("cpu") is faster
    assert resolve_precision("auto", "cpu") == ("bf16" if faster else "fp32")
    assert resolve_precision("bf16", "cpu") == "bf16"  # forcing always works


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
    # fixed transforms never run bf16
    assert build_encoder("logmel-audio", precision="bf16").compute_precision == "fp32"
    with pytest.raises(ValueError):
        build_encoder("tiny-clip-image", precision="fp16")
    monkeypatch.setenv("SPANER_PRECISION", "half")
    with pytest.raises(ValueError):
        resolve_precision("auto")
