"""Pure helpers: vector/id checks, filter translation, manifest, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from spaner.index import DuplicateIdError, EmbeddingSpace, Filter, StoreFormatError, VectorError
from spaner.index.atomic_io import atomic_write_json
from spaner.index.filters import to_milvus_expr, to_sql
from spaner.index.space import StoreManifest
from spaner.index.vector_checks import check_ids, check_vectors


def test_check_vectors_policy():
    v = np.array([[3.0, 4.0]], dtype=np.float64)
    with pytest.raises(VectorError, match="L2-normalised"):
        check_vectors(v, 2)
    np.testing.assert_allclose(check_vectors(v, 2, normalize=True), [[0.6, 0.8]])
    out = check_vectors([0.6, 0.8], 2)
    assert out.dtype == np.float32 and out.shape == (1, 2) and out.flags.c_contiguous
    with pytest.raises(VectorError, match="dimension"):
        check_vectors(np.ones((1, 3)) / np.sqrt(3), 2)
    with pytest.raises(VectorError, match="NaN"):
        check_vectors([[np.inf, 0.0]], 2, normalize=True)
    with pytest.raises(VectorError):
        check_vectors("abc", 2)


def test_check_ids():
    assert check_ids(None, 3) is None
    assert check_ids([5, 6], 2).dtype == np.int64
    with pytest.raises(DuplicateIdError):
        check_ids([1, 1], 2)
    with pytest.raises(VectorError):
        check_ids([-1, 2], 2)
    with pytest.raises(VectorError):
        check_ids([1.5, 2.0], 2)
    with pytest.raises(VectorError):
        check_ids([1], 2)


def test_filter_translation():
    f = Filter(
        modality="image", concept=["dog", "cat"], where={"split": 1, "source": None, "ok": True}
    )
    assert f.modality == ("image",)
    clause, params = to_sql(f)
    assert clause == (
        "modality IN (?) AND concept IN (?,?) AND json_extract(extra, ?) = ? "
        "AND source IS NULL AND json_extract(extra, ?) = ?"
    )
    assert params == ["image", "dog", "cat", '$."split"', 1, '$."ok"', 1]
    assert to_milvus_expr(f) == (
        'modality in ["image"] and concept in ["dog", "cat"] and '
        'extra["split"] == 1 and source is null and extra["ok"] == true'
    )
    assert to_sql(Filter()) == ("1", []) and to_milvus_expr(None) == ""
    with pytest.raises(ValueError):
        Filter(where={"a'); DROP TABLE items; --": 1})
    with pytest.raises(ValueError):
        Filter(where={"a": [1, 2]})
    with pytest.raises(ValueError):
        Filter(modality=[])


def test_manifest_versioning(tmp_path):
    space = EmbeddingSpace("h", 8)
    StoreManifest("faiss", space, backend_config={"factory": "Flat"}).write(tmp_path)
    d = json.loads((tmp_path / "store.json").read_text())
    assert (
        d["format_version"] == 1
        and d["dim"] == 8
        and d["space"] == {"checkpoint_hash": "h", "dim": 8}
    )
    assert StoreManifest.read(tmp_path).space == space
    d["format_version"] = 99
    atomic_write_json(tmp_path / "store.json", d)
    with pytest.raises(StoreFormatError, match="version 99"):
        StoreManifest.read(tmp_path)
    with pytest.raises(StoreFormatError, match="not a vector store"):
        StoreManifest.read(tmp_path / "nowhere")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_check_vectors_keeps_unit_vectors_and_renormalises_near_unit_ones():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((64, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert check_vectors(v, 32) is v  # unit to float32 precision: no copy
    near = v * np.float32(1.0005)  # within the 1e-3 tolerance: re-normalised
    out = check_vectors(near, 32)
    assert out is not near
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    bad = v.copy()
    bad[5] *= 2
    with pytest.raises(VectorError, match=r"rows \[5\]"):
        check_vectors(bad, 32)
    bad[5] = np.nan
    with pytest.raises(VectorError, match="NaN"):
        check_vectors(bad, 32, normalize=True)
    bad[5] = 0.0
    with pytest.raises(VectorError, match="zero"):
        check_vectors(bad, 32, normalize=True)


def test_check_vectors_edge_inputs_through_the_fast_path():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((8, 16))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    # float64 and a strided (non-contiguous) view: a contiguous float32 copy comes back
    wide = np.repeat(v, 2, axis=1)[:, ::2]
    assert not wide.flags.c_contiguous
    out = check_vectors(wide, 16)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, v, atol=1e-6)
    # squared norms overflow float32 for these finite values: still normalised
    big = (v * 1e30).astype(np.float32)
    np.testing.assert_allclose(check_vectors(big, 16, normalize=True), v, atol=1e-6)
    with pytest.raises(VectorError, match="L2-normalised"):
        check_vectors(big, 16)
    # squared norms underflow to zero: refused as zero vectors, not divided by zero
    with pytest.raises(VectorError, match="zero"):
        check_vectors((v * 1e-30).astype(np.float32), 16, normalize=True)
    # one row just outside the no-copy band is re-normalised, the rest are kept as they are
    near = v.astype(np.float32)
    near[3] *= np.float32(1 + 5e-5)
    out = check_vectors(near, 16)
    assert out is not near
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("row", [0, 3, 7])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_check_vectors_refuses_a_non_finite_value_in_any_row(row, value):
    v = np.full((8, 4), 0.5, np.float32)  # unit rows
    v[row, 2] = value
    for normalize in (False, True):
        with pytest.raises(VectorError, match=rf"NaN or inf \(rows \[{row}\]\)"):
            check_vectors(v, 4, normalize=normalize)
