"""The streaming embed path (spaner.model.streaming): the same vectors as encoding batch by
batch, bad inputs reported without dropping the others, and bounded reading ahead."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from spaner import Spaner
from spaner.errors import InputError
from spaner.model.streaming import StreamingEmbedder


@pytest.fixture(scope="module")
def sp() -> Spaner:
    return Spaner.from_profile("tiny", modalities=["text", "image"])


def _jpeg(seed: int, w: int = 48, h: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def _serial(sp: Spaner, modality: str, values: list) -> np.ndarray:
    """What Spaner.embed did before the streaming path: encode a batch, then the aligner."""
    enc = sp.encoders[modality]
    out = []
    for s in range(0, len(values), 4):
        feats = enc.encode(values[s : s + 4])
        with torch.no_grad():
            out.append(sp.model.embed(modality, feats).numpy())
    return np.concatenate(out)


@pytest.mark.precision("fp32")
def test_streaming_gives_the_serial_paths_vectors(sp, tmp_path):
    files = []
    for i in range(11):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_jpeg(i, 40 + i, 30 + 2 * i))
        files.append(str(path))
    got = sp.embed("image", files, batch_size=4, workers=3)
    np.testing.assert_allclose(got, _serial(sp, "image", files), atol=1e-5)
    texts = [f"a photo of thing {i}" for i in range(9)]
    np.testing.assert_allclose(
        sp.embed("text", texts, batch_size=4), _serial(sp, "text", texts), atol=1e-5
    )
    assert sp.embed("text", []).shape == (0, sp.model.dim)


def test_a_bad_input_is_reported_and_the_others_embed(sp):
    values = [_jpeg(0), b"not an image", _jpeg(1), _jpeg(2)]
    names = ["a.jpg", "bad.jpg", "b.jpg", "c.jpg"]
    for batch_size in (3, 10):  # threads, and one batch run inline
        parts = list(sp.embed_stream("image", values, batch_size=batch_size, names=names))
        positions = [p for part in parts for p in part.positions]
        problems = [pr for part in parts for pr in part.problems]
        assert positions == [0, 2, 3]
        assert [(pos, exc.source) for pos, exc in problems] == [(1, "bad.jpg")]
        norms = [np.linalg.norm(part.vectors, axis=1) for part in parts]
        assert all(np.allclose(n, 1, atol=1e-4) for n in norms)
    with pytest.raises(InputError, match="bad.jpg"):
        sp.embed("image", values, names=names)


def test_inputs_are_read_a_bounded_distance_ahead(sp):
    taken = []

    def texts():
        for i in range(400):
            taken.append(i)
            yield f"text number {i}"

    batch, prefetch = 4, 1
    embedder = StreamingEmbedder(
        sp.encoders["text"], sp.model, "text", batch, workers=2, prefetch=prefetch
    )
    stream = embedder.stream(texts())
    first = next(stream)
    assert first.positions == [0, 1, 2, 3]
    # at most: chunks submitted ahead, one being assembled, the queue, the one handed out
    bound = (embedder.assemblers + 2 * prefetch + 2) * batch
    assert len(taken) <= bound
    stream.close()  # stops the producer; nothing more is read
    seen = len(taken)
    assert seen <= bound
    rest = list(embedder.stream(f"t{i}" for i in range(10)))
    assert [p for part in rest for p in part.positions] == list(range(10))
