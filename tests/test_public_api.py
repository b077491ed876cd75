"""``import spaner``: the package's face (lazy names, ``__all__``, ``__dir__``), cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import spaner

FACE = [
    "Spaner",
    "TrainConfig",
    "create_store",
    "open_store",
    "Filter",
    "Item",
    "EmbeddingSpace",
    "Modality",
]
HEAVY = ["torch", "faiss", "gradio", "open_clip", "transformers", "torchaudio", "fastapi"]


def test_import_spaner_loads_no_heavy_module(tmp_path) -> None:
    code = (
        "import json, sys\n"
        "import spaner\n"
        "names = (spaner.__all__, dir(spaner), spaner.__version__)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
        "spaner.Filter\n"  # the index layer needs FAISS: loaded now, on first use
        "print(json.dumps('faiss' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert json.loads(out[0]) == [], f"import spaner loaded {out[0]}"
    assert json.loads(out[1]) is True  # the lazy name really came from spaner.index


def test_face_names_are_the_defining_objects() -> None:
    from spaner.index import EmbeddingSpace, Filter, Item, create_store, open_store

    from spaner.modality import Modality
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner

    assert spaner.__all__ == ["__version__", *FACE]
    assert list(spaner._LAZY) == FACE  # every lazy name is public and vice versa
    assert set(FACE) <= set(dir(spaner))
    got = [getattr(spaner, n) for n in FACE]
    assert got == [
        Spaner,
        TrainConfig,
        create_store,
        open_store,
        Filter,
        Item,
        EmbeddingSpace,
        Modality,
    ]
    ns: dict = {}
    exec("from spaner import *", ns)  # noqa: S102 - what a star import gives
    assert set(FACE) <= set(ns)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        spaner.Nope  # noqa: B018
    assert not hasattr(spaner, "create")
    with pytest.raises(ImportError):
        exec("from spaner import Nope", {})  # noqa: S102


def test_the_face_builds_and_searches_a_store(tmp_path) -> None:
    space = spaner.EmbeddingSpace("face-test", 4)
    vecs = np.eye(4, dtype=np.float32)
    items = [spaner.Item("text" if i % 2 else "image", content=f"item {i}") for i in range(4)]
    with spaner.create_store(tmp_path / "store", space) as store:
        ids = store.add(vecs, items)
    with spaner.open_store(tmp_path / "store", space) as store:
        hits = store.search(vecs[1:2], k=4, filters=spaner.Filter(modality="image"))[0]
        assert [h.id for h in hits] == [int(ids[0]), int(ids[2])]
    assert spaner.TrainConfig(shots=3).shots == 3
