"""musicnn in torch: the TensorFlow checkpoint reader on a hand-written checkpoint, the
converter's output shapes, and, where the musicnn wheel is at hand, a known input against the
tags TensorFlow computed for it."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from spaner.encoders.musicnn import MTT_TAGS, Musicnn, musicnn_log_mel, patches, tf_to_torch
from spaner.encoders.tagged_audio import tag_vectors
from spaner.encoders.tf_checkpoint import read_tf_checkpoint


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(num << 3 | 2) + _varint(len(value)) + value
    return _varint(num << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)


def _write_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """A one-shard TF tensor bundle: the data file and a LevelDB-table index."""
    data, entries = b"", [(b"", _field(1, 1))]  # BundleHeaderProto: num_shards = 1
    for name in sorted(tensors):
        arr = np.array(tensors[name], dtype=np.float32, order="C")
        shape = b"".join(_field(2, _field(1, d)) for d in arr.shape)
        entry = _field(1, 1) + _field(2, shape) + _field(4, len(data)) + _field(5, arr.nbytes)
        entries.append((name.encode(), entry))
        data += arr.tobytes()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)
    table = b""
    blocks = []
    for block in (_block(entries), _block([])):
        blocks.append((len(table), len(block)))
        table += block + b"\0" + b"\0\0\0\0"  # no compression, an unchecked crc
    index = _block([(entries[-1][0], _varint(blocks[0][0]) + _varint(blocks[0][1]))])
    index_at = len(table)
    table += index + b"\0\0\0\0\0"
    handles = (
        _varint(blocks[1][0]) + _varint(blocks[1][1]) + _varint(index_at) + _varint(len(index))
    )
    table += handles.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(table)


def _tf_names() -> dict[str, tuple[int, ...]]:
    shapes = {
        "conv2d": (7, 38, 1, 204), "conv2d_1": (7, 67, 1, 204), "conv2d_2": (128, 1, 1, 51),
        "conv2d_3": (64, 1, 1, 51), "conv2d_4": (32, 1, 1, 51), "conv2d_5": (7, 561, 1, 64),
        "conv2d_6": (7, 64, 1, 64), "conv2d_7": (7, 64, 1, 64),
    }  # fmt: skip
    out = {f"{k}/kernel": v for k, v in shapes.items()}
    out.update({f"{k}/bias": (v[-1],) for k, v in shapes.items()})
    bns = [1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200]
    for i, n in enumerate(bns):
        name = "batch_normalization" + (f"_{i}" if i else "")
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            out[f"{name}/{part}"] = (n,)
    out.update({"dense/kernel": (1506, 200), "dense/bias": (200,)})
    out.update({"dense_1/kernel": (200, 50), "dense_1/bias": (50,)})
    return out


def test_read_tf_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {"a/kernel": rng.normal(size=(2, 3)), "b": rng.normal(size=(4,)), "c": np.ones(())}
    _write_checkpoint(tmp_path / "m", tensors)
    got = read_tf_checkpoint(tmp_path / "m")
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].shape == v.shape and np.array_equal(got[k], v.astype(np.float32))
    (tmp_path / "bad.index").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a TensorFlow checkpoint"):
        read_tf_checkpoint(tmp_path / "bad")


@pytest.mark.precision("fp32")
def test_converted_network_shapes_and_batch_norm_order() -> None:
    rng = np.random.default_rng(1)
    weights = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in _tf_names().items()}
    for k in weights:
        if k.endswith("moving_variance"):
            weights[k] = np.abs(weights[k]) + 1.0
    net = Musicnn().eval()
    net.load_state_dict(tf_to_torch(weights))
    wave = torch.from_numpy(rng.normal(0, 0.1, 16000 * 4).astype(np.float32))
    spec = musicnn_log_mel(wave)
    assert spec.shape == (251, 96)
    x = patches(spec)
    assert x.shape == (1, 187, 96)
    assert patches(spec[:50]).shape == (1, 187, 96)  # a short clip is repeated
    logits, penultimate = net(x)
    assert logits.shape == (1, len(MTT_TAGS)) == (1, 50) and penultimate.shape == (1, 200)
    # the conv kernel layout: TF [kh, kw, in, out] -> torch [out, in, kh, kw]
    k = weights["conv2d/kernel"]
    assert torch.equal(net.timbral[0].weight[5, 0, 3], torch.from_numpy(k[3, :, 0, 5]))


@pytest.mark.precision("fp32")
def test_tag_vectors_weight_the_top_tags() -> None:
    matrix = torch.eye(4)
    probs = torch.tensor([[0.9, 0.1, 0.3, 0.0]])
    v = tag_vectors(probs, matrix, top_k=2)
    expected = torch.nn.functional.normalize(torch.tensor([[0.75, 0.0, 0.25, 0.0]]), dim=-1)
    assert torch.allclose(v, expected, atol=1e-6)


def _wheel() -> Path | None:
    for path in (os.environ.get("SPANER_MUSICNN_WHEEL"), "/tmp/musicnn/musicnn-0.1.0-py3-none-any.whl"):  # fmt: skip
        if path and Path(path).is_file():
            return Path(path)
    return None


@pytest.mark.precision("fp32")
@pytest.mark.skipif(
    _wheel() is None,
    reason="needs the musicnn wheel (pip download musicnn==0.1.0 --no-deps; SPANER_MUSICNN_WHEEL)",
)
def test_known_input_matches_tensorflow(tmp_path: Path) -> None:
    """A 4.5-s chirp + tones + noise; TensorFlow's musicnn 0.1.0 (extractor, 3-s patches, 1-s
    hop = 61 frames) gave these tags for its first patch, from the float16 log-mel it computes,
    fed here as well."""
    from spaner.encoders.convert_musicnn import convert_musicnn

    out = convert_musicnn(_wheel(), tmp_path / "musicnn.safetensors")
    from safetensors.torch import load_file

    net = Musicnn().eval()
    net.load_state_dict(load_file(str(out)))
    sr = 16000
    t = np.arange(int(4.5 * sr)) / sr
    noise = np.random.default_rng(0).standard_normal(t.size)
    x = 0.1 * np.sin(2 * np.pi * (220 + 100 * t) * t) + 0.02 * noise
    x = (x + 0.05 * np.sin(2 * np.pi * 880 * t) * (t % 0.5 < 0.1)).astype(np.float32)
    mel = musicnn_log_mel(torch.from_numpy(x))
    assert mel.shape == (282, 96)
    with torch.no_grad():
        probs = torch.sigmoid(net(patches(mel, hop=61))[0])
    top = [MTT_TAGS[i] for i in probs.mean(0).argsort(descending=True)[:5]]
    assert top == ["techno", "electronic", "synth", "fast", "slow"]
    first = probs[0, :8].numpy()
    reference = np.array([0.0030, 0.0034, 0.0545, 0.2796, 0.0001, 0.0225, 0.2639, 0.0226])
    # the reference's log-mel was rounded to float16 and its STFT padded with zeros, this
    # one reflects: the tags agree to a few hundredths
    assert np.abs(first - reference).max() < 0.05
