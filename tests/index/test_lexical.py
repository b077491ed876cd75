"""The lexical channel: the FTS5 index of the collection's text and ``lexical_search``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from spaner.index import (
    FaissConfig,
    Filter,
    Item,
    StoreError,
    StoreFullError,
    create_store,
    lexical,
    open_store,
)
from store_helpers import HAS_MILVUS, items, unit

FIXTURE_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"


def in_sync(store) -> bool:
    """The FTS rows are exactly those the stored items call for."""
    return store.meta.lexical_rows() == store.meta.expected_lexical_rows()


def texts_store(make_store, backend="faiss", config=None):
    s = make_store(backend, config)
    docs = [
        Item("text", content="A dog barking at the mailman", concept="dog"),
        Item("text", content="Un café au lait sur la table", concept="cafe"),
        Item("text", content="σκύλος τρέχει στην παραλία", concept="greek"),
        Item("text", content="一只狗在公园里跑", concept="chinese"),
        Item("image", content=b"png", source="dog.png", extra={"caption": "two dogs"}),
        Item("audio", content=b"wav", extra={"transcript": "the cat sat on the mat"}),
        Item("text", content="red square", extra={"split": "a"}),
        Item("text", content="blue circle", extra={"split": "b"}),
    ]
    ids = s.add(unit(len(docs)), docs)
    return s, ids.tolist()


def test_adds_and_deletes_keep_fts_in_sync(make_store, backend):
    s = make_store(backend)
    ids = s.add(unit(30), items(30)).tolist()
    assert in_sync(s) and s.meta.lexical_count() == 10  # the 10 text items of items()
    assert s.lexical_search("text 3", 1, modalities="text")[0][0] == ids[3]
    s.delete(ids[:15])
    assert in_sync(s) and s.meta.lexical_count() == 5
    got = {i for i, _ in s.lexical_search("text", 100)}
    assert got == {i for i in ids[15:] if i % 3 == 0}
    assert s.lexical_search("3", 5) == []  # id 3 is gone (and "text 3" was its only "3")


def test_exact_text_ranks_first_and_scores_are_positive(make_store, backend):
    s = make_store(backend)
    rng = np.random.default_rng(0)
    words = [
        "red",
        "blue",
        "green",
        "dog",
        "cat",
        "bird",
        "car",
        "tree",
        "house",
        "river",
        "stone",
        "cloud",
    ]
    words += [f"{w}{n}" for w in ("alpha", "beta", "gamma") for n in range(100)]
    docs = [" ".join(rng.choice(words, 6)) for _ in range(200)]
    ids = s.add(unit(200), [Item("text", content=d) for d in docs]).tolist()
    for j in (0, 17, 123):
        hits = s.lexical_search(docs[j], 10)
        assert hits[0][0] == ids[j], (docs[j], hits[:3])
        assert all(sc > 0 for _, sc in hits)
        assert [sc for _, sc in hits] == sorted((sc for _, sc in hits), reverse=True)


def test_stemming_diacritics_transcript_and_filters(make_store):
    s, ids = texts_store(make_store)
    assert s.lexical_search("DOGS", 10)[0][0] == ids[0]  # porter: dogs -> dog; case folded
    assert [i for i, _ in s.lexical_search("cafe", 10)] == [ids[1]]  # diacritics folded
    assert [i for i, _ in s.lexical_search("cats on mats", 10)] == [ids[5]]  # transcript
    assert s.lexical_search("dog", 10, modalities="image") == []  # caption: not a text field
    assert s.lexical_search("dog.png", 10) == s.lexical_search("dog", 10)  # source not indexed
    assert [
        i for i, _ in s.lexical_search("square circle", 10, filters=Filter(where={"split": "b"}))
    ] == [ids[7]]
    assert s.lexical_search("red", 10, modalities="audio") == []
    both = Filter(modality=["text", "image"])
    assert s.lexical_search("red", 10, modalities="audio", filters=both) == []
    assert [i for i, _ in s.lexical_search("red", 10, modalities=["text"], filters=both)] == [
        ids[6]
    ]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'dog"',
        "dog*",
        "-dog",
        "NEAR(dog mailman)",
        "dog AND NOT cat",
        "dog OR",
        "(dog",
        "body: dog",
        "{body fields}: dog",
        "^dog",
        "dog + cat",
        "'; DROP TABLE items; --",
        "!!!???...",
        "the of and",
        "",
        "   ",
        "\x00\x01",
        "σκύλος",
        "狗",
        "公园",
        "🐕 dog",
        "x" * 10_000,
        ("dog " * 2_500),
        " ".join(f"w{i}" for i in range(3_000)),
    ],
)
def test_any_query_gives_a_list_never_an_error(make_store, query):
    s, ids = texts_store(make_store)
    t = time.perf_counter()
    hits = s.lexical_search(query, 5)
    assert time.perf_counter() - t < 2.0
    assert isinstance(hits, list) and len(hits) <= 5
    assert all(isinstance(i, int) and sc > 0 for i, sc in hits)
    if "dog" in query.lower().replace("dog.", ""):
        assert ids[0] in [i for i, _ in hits], query
    if query in ("!!!???...", "the of and", "", "   ", "\x00\x01"):
        assert hits == []


def test_non_latin_queries(make_store):
    s, ids = texts_store(make_store)
    assert [i for i, _ in s.lexical_search("ΣΚΎΛΟΣ", 5)] == [ids[2]]  # Greek, case folded
    assert [i for i, _ in s.lexical_search("狗", 5)] == [ids[3]]  # one Han character
    assert [i for i, _ in s.lexical_search("公园", 5)] == [ids[3]]  # a run: a phrase
    assert s.lexical_search("园公", 5) == []  # not a substring


def test_bad_arguments_refused(make_store):
    s, _ = texts_store(make_store)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(StoreError):
            s.lexical_search("dog", bad)
    with pytest.raises(StoreError):
        s.lexical_search(b"dog", 5)
    with pytest.raises(StoreError):
        s.lexical_search("dog", 5, filters={"modality": "text"})


def test_text_fields_indexed_and_changeable(tmp_path, space):
    path = tmp_path / "s"
    with pytest.raises(StoreError):
        create_store(path, space, config=FaissConfig(text_fields=["bad field"]))
    s = create_store(path, space, config=FaissConfig(text_fields=["caption", "title"]))
    ids = s.add(
        unit(3),
        [
            Item("image", content=b"a", extra={"caption": "a dog on a sofa", "title": "Rex"}),
            Item("image", content=b"b", extra={"caption": ["a cat", "sleeping"], "other": "rex"}),
            Item("image", content=b"c", extra={"caption": 7}),  # not text: not indexed
        ],
    ).tolist()
    assert json.loads((path / "store.json").read_text())["backend_config"]["text_fields"] == [
        "caption",
        "title",
    ]
    assert [i for i, _ in s.lexical_search("rex", 5)] == [ids[0]]  # "other" is not chosen
    assert [i for i, _ in s.lexical_search("sleeping cats", 5)] == [ids[1]]
    assert in_sync(s) and s.meta.lexical_count() == 2
    assert s.set_text_fields("other") is True  # the CLI's comma-separated form
    assert [i for i, _ in s.lexical_search("rex", 5)] == [ids[1]]
    assert s.lexical_search("sofa", 5) == [] and in_sync(s)
    assert s.set_text_fields(["other"]) is False
    s.close()
    # a crash between store.json and the rebuild: the next open finishes it
    doc = json.loads((path / "store.json").read_text())
    doc["backend_config"]["text_fields"] = ["caption"]
    (path / "store.json").write_text(json.dumps(doc))
    with open_store(path, space) as s:
        assert any("full-text" in n for n in s.last_repair.notes)
        assert [i for i, _ in s.lexical_search("sofa", 5)] == [ids[0]] and in_sync(s)


def _drop_fts(path: Path) -> None:
    """Make a store's database look like one written before the full-text index."""
    con = sqlite3.connect(path / "metadata.sqlite")
    con.execute("DROP TABLE items_fts")
    con.execute("DELETE FROM meta WHERE key='fts_fields'")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()


def _has_fts(path: Path) -> bool:
    con = sqlite3.connect(path / "metadata.sqlite")
    try:
        return (
            con.execute("SELECT 1 FROM sqlite_master WHERE name='items_fts'").fetchone() is not None
        )
    finally:
        con.close()


def test_store_without_fts_is_migrated_on_open(tmp_path, space):
    path = tmp_path / "s"
    with create_store(path, space) as s:
        ids = s.add(unit(30), items(30)).tolist()
        want = s.meta.lexical_rows()
    _drop_fts(path)
    ro = open_store(path, space, read_only=True)  # read-only: built in memory, file untouched
    try:
        assert ro.lexical_search("4", 1) == []  # item 4 is an image
        assert ro.lexical_search("text 6", 1)[0][0] == ids[6]
        assert ro.meta.fts_schema == "temp" and ro.meta.lexical_rows() == want
    finally:
        ro.close()
    assert not _has_fts(path)
    with open_store(path, space) as s:
        assert any("built the full-text index (10 documents" in n for n in s.last_repair.notes)
        assert s.meta.lexical_rows() == want and s.meta.get_meta("schema_version") == "2"
        assert s.lexical_search("text 6", 1)[0][0] == ids[6]
    with open_store(path, space) as s:
        assert s.last_repair.notes == []


def test_v1_fixture_opens_with_a_lexical_index(tmp_path):
    path = tmp_path / "store"
    shutil.copytree(FIXTURE_V1, path)
    with open_store(path, None) as s:
        assert s.meta.lexical_count() == 3 and in_sync(s)
        hits = s.lexical_search("a red square", 5)
        assert s.content(hits[0][0]) == "a red square"
        assert s.lexical_search("dogs barking", 5, modalities="image") == []


def test_failed_add_leaves_fts_untouched(make_store, monkeypatch):
    """A disk that fills while the FTS rows are written rolls the whole add back."""
    s, ids = texts_store(make_store)
    before = s.meta.lexical_rows()
    real = lexical.document
    calls = {"n": 0}

    def full(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*a, **kw)

    monkeypatch.setattr(lexical, "document", full)
    with pytest.raises(StoreFullError):
        s.add(unit(3, seed=5), [Item("text", content=f"new words {j}") for j in range(3)])
    monkeypatch.setattr(lexical, "document", real)
    assert s.meta.lexical_rows() == before and s.count() == len(ids) and in_sync(s)
    assert s.lexical_search("new words", 5) == []


@pytest.mark.skipif(not HAS_MILVUS, reason="pymilvus/milvus-lite not installed")
def test_milvus_and_faiss_agree(make_store):
    got = []
    for backend in ("faiss", "milvus"):
        s, _ = texts_store(lambda b, c=None, _n=backend: make_store(b, c, name=_n), backend)
        got.append([s.lexical_search(q, 5) for q in ("dog", "red circle", "狗", "cafe")])
    assert got[0] == got[1]


def test_latency_4000_texts(make_store):
    """p50/p95 of lexical_search over 4,000 text items (printed, not asserted)."""
    s = make_store()
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(3000)] + ["dog", "cat", "red", "blue", "the", "a", "of"]
    p = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf-like word frequencies
    p /= p.sum()
    docs = [" ".join(rng.choice(vocab, int(rng.integers(5, 25)), p=p)) for _ in range(4000)]
    t = time.perf_counter()
    for b in range(0, 4000, 500):
        s.add(unit(500, seed=b), [Item("text", content=d) for d in docs[b : b + 500]])
    build = time.perf_counter() - t
    queries = [" ".join(rng.choice(vocab, int(rng.integers(1, 6)), p=p)) for _ in range(300)]
    for label, kw in (("all", {}), ("modality=text", {"modalities": "text"})):
        times = []
        for q in queries:
            t = time.perf_counter()
            s.lexical_search(q, 10, **kw)
            times.append(time.perf_counter() - t)
        p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
        print(f"lexical_search k=10 over 4000 texts ({label}): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    t = time.perf_counter()
    s.lexical_search("x" * 10_000, 10)
    print(f"adds {build:.2f} s; 10k-char query {1e3 * (time.perf_counter() - t):.2f} ms")


@pytest.mark.slow  # runs the offline model (about a minute on two cores)
def test_cli_ingest_text_fields(tmp_path):
    from spaner.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a red square\n")
    (data / "b.txt").write_text("a blue circle\n")
    store = tmp_path / "store"
    args = ["ingest", str(data), "--store", str(store), "-q"]
    assert main([*args, "--text-fields", "bad field"]) == 2 and not store.exists()
    assert main([*args, "--text-fields", "caption,title"]) == 0
    doc = json.loads((store / "store.json").read_text())
    assert doc["backend_config"]["text_fields"] == ["caption", "title"]
    with open_store(store, None) as s:
        hits = s.lexical_search("squares", 5)
        assert [s.content(i) for i, _ in hits] == ["a red square"]
        assert s.lexical_search("b.txt", 5) == s.lexical_search("b", 5) == []  # not file names
    assert main([*args, "--text-fields", "title"]) == 0  # an existing store: re-indexed
    assert json.loads((store / "store.json").read_text())["backend_config"]["text_fields"] == [
        "title"
    ]
