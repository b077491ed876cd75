"""Aligning audio through text: a random tiny CLAP's text tower and the tiny profile's text
encoder, phrases built from words so that held-out phrases share words with training ones."""

from __future__ import annotations

import io
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from spaner.encoders import build_encoder

from spaner.cli.main import main
from spaner.errors import ConfigError
from spaner.model.config import AlignerConfig
from spaner.pipeline import Spaner, build_model_config
from spaner.training.manifest import load_manifest
from spaner.training.text_bridge import manifest_phrases, read_phrases

ADJECTIVES = ["small", "big", "loud", "quiet", "old", "young", "angry", "happy"]
NOUNS = [
    "dog",
    "cat",
    "bird",
    "car",
    "train",
    "bell",
    "drum",
    "baby",
    "horse",
    "cow",
    "duck",
    "frog",
]


def _phrases() -> list[str]:
    phrases = [f"a {a} {n}" for a, n in itertools.product(ADJECTIVES, NOUNS)]
    random.Random(0).shuffle(phrases)
    return phrases  # 96: the first 72 to align through, the last 24 held out


def _tiny(**kw) -> Spaner:
    return Spaner.from_profile(
        "tiny", modalities=["text", "image", "audio"], encoders={"audio": "tiny-clap-audio"}, **kw
    )


def _wav(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def _held_out_recall(sp: Spaner, phrases: list[str]) -> float:
    """CLAP text vector of each phrase through the audio aligner's head -> nearest of the
    phrases' text embeddings in the model."""
    tower = sp.encoders["audio"].text_tower()
    with torch.no_grad():
        z = sp.model.aligners["audio"].head.from_native(tower.encode(phrases).native)
    a = torch.from_numpy(sp.embed("text", phrases))
    return float(((z @ a.T).argmax(1) == torch.arange(len(phrases))).float().mean())


@pytest.mark.slow
@pytest.mark.precision("fp32")
def test_text_alone_maps_held_out_phrases_onto_their_anchor_text() -> None:
    sp = _tiny()
    mcfg = sp.model.config.modalities
    assert mcfg["audio"].native_map and not mcfg["audio"].use_native
    assert not mcfg["text"].native_map and mcfg["text"].use_native
    train, held = _phrases()[:72], _phrases()[72:]
    before = _held_out_recall(sp, held)
    others = {k: v.clone() for k, v in sp.model.state_dict().items() if "native_map" not in k}
    result = sp.align_through_text("audio", train)
    after = _held_out_recall(sp, held)
    # 24 candidates: chance is 0.04; the tiny models measured 0.54
    assert before <= 0.15 and after >= 0.3, (before, after)
    assert result.val_phrases == 14 and result.val_recall > result.val_recall_before
    # only the map moved: the prompt, every other aligner, the audio residual are bit-identical
    state = sp.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in others.items())
    head = sp.model.aligners["audio"].head
    assert not head.proj.weight.any() and not head.proj.bias.any()
    # at inference a sound lands at normalize(M @ clap_audio): the cross-attention is skipped
    clips = [_wav(1.0, 440.0), _wav(2.0, 660.0)]
    z = torch.from_numpy(sp.embed("audio", clips))
    native = sp.encoders["audio"].encode(clips).native
    expect = F.normalize(F.normalize(native, dim=-1) @ head.native_map.weight.T, dim=-1)
    assert torch.allclose(z, expect, atol=1e-5)


@pytest.mark.precision("fp32")
def test_the_map_survives_save_and_load(tmp_path: Path) -> None:
    sp = _tiny()
    sp.align_through_text("audio", _phrases()[:40], {"epochs": 30})
    clips = [_wav(1.5, 330.0)]
    sp.save(tmp_path / "ckpt")
    again = Spaner.load(tmp_path / "ckpt")
    assert again.model.config.modalities["audio"].native_map
    assert np.allclose(again.embed("audio", clips), sp.embed("audio", clips), atol=1e-6)


def test_what_cannot_be_aligned_through_text_says_why() -> None:
    wav2vec = Spaner.from_profile("tiny", modalities=["text", "audio"])
    with pytest.raises(ConfigError, match="no text tower"):
        wav2vec.align_through_text("audio", _phrases()[:10])
    no_text = Spaner.from_profile(
        "tiny", modalities=["image", "audio"], encoders={"audio": "tiny-clap-audio"}
    )
    with pytest.raises(ConfigError, match="no 'text' modality"):
        no_text.align_through_text("audio", _phrases()[:10])
    sp = _tiny()
    with pytest.raises(ConfigError, match="at least 2 phrases"):
        sp.align_through_text("audio", ["a dog", " a dog "])
    with torch.no_grad():  # as after training with audio items: the residual has learned
        sp.model.aligners["audio"].head.proj.weight.add_(0.01)
    with pytest.raises(ConfigError, match="before training with them"):
        sp.align_through_text("audio", _phrases()[:10])


def test_a_native_map_only_where_the_native_space_is_not_shared() -> None:
    aligner = AlignerConfig(width=32, heads=2, prompt_len=4, depth=1)
    clap_audio = build_encoder("tiny-clap-audio")
    own = build_model_config(
        {"text": build_encoder("tiny-clip-text"), "audio": clap_audio}, aligner
    ).modalities
    assert own["audio"].native_map and not own["text"].native_map
    shared = build_model_config(
        {"text": build_encoder("tiny-clap-text"), "audio": clap_audio}, aligner
    ).modalities  # CLAP's own text beside its audio: one native space, used as it is
    assert shared["audio"].use_native and not shared["audio"].native_map
    plain = build_model_config(
        {"text": build_encoder("tiny-clip-text"), "audio": build_encoder("tiny-wav2vec2-audio")},
        aligner,
    ).modalities
    assert not plain["audio"].native_map


def test_phrases_come_from_the_training_split_and_files(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "concept": "dog", "text": "a dog barking", "split": "train"},
        {"id": "b", "concept": "dog", "text": "a dog barking", "split": "train"},
        {"id": "c", "concept": "rain", "text": "rain on a roof", "split": "test"},
        {"id": "d", "concept": "bell", "text": "a church bell", "split": "val"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    assert manifest_phrases(load_manifest(path)) == ["a dog barking", "dog"]
    extra = tmp_path / "phrases.txt"
    extra.write_text("# sounds\nthunder\n\n  a cow mooing \n")
    assert read_phrases(extra) == ["thunder", "a cow mooing"]


def _manifest(root: Path, with_audio: bool) -> Path:
    """Text and image lines of 6 colour concepts (the synthetic set), with or without audio."""
    from spaner.datasets.synthetic import make_synthetic

    full = make_synthetic(root, concepts=6, per_concept=6, paired=False, seed=1)
    if with_audio:
        return full
    lines = [x for x in full.read_text().splitlines() if '"audio"' not in x]
    out = root / "text-image.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


def _cli(args: list[str], capsys) -> dict:
    code = main(["-q", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.precision("fp32")
def test_train_and_extend_align_through_text_end_to_end(tmp_path: Path, capsys) -> None:
    text_image = _manifest(tmp_path / "data", with_audio=False)
    trimodal = tmp_path / "data" / "manifest.jsonl"
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("a dog barking\nthunder\n")
    common = ["--profile", "tiny", "--shots", "2", "--epochs", "3"]
    # train: text + image from the manifest, audio from its phrases alone
    record = _cli(
        [
            "train",
            "--manifest",
            str(text_image),
            "--encoder",
            "audio=tiny-clap-audio",
            "--align-through-text",
            "--phrases",
            str(phrases),
            "--out",
            str(tmp_path / "zero-shot"),
            *common,
        ],
        capsys,
    )
    bridge = record["through_text"]["audio"]
    assert bridge["phrases"] == len(manifest_phrases(load_manifest(text_image))) + 2
    assert record["train"]["epochs_run"] >= 1  # text and image trained first
    sp = Spaner.load(tmp_path / "zero-shot")
    assert set(sp.modalities) == {"text", "image", "audio"}
    assert sp.embed("audio", [_wav(1.0, 440.0)]).shape == (1, sp.model.dim)

    # extend: a text+image checkpoint gains audio through text, then audio shots train it
    _cli(["train", "--manifest", str(text_image), "--out", str(tmp_path / "ti"), *common], capsys)
    ext = [
        "extend",
        "--checkpoint",
        str(tmp_path / "ti"),
        "--modality",
        "audio",
        "--encoder",
        "tiny-clap-audio",
        "--shots",
        "2",
        "--epochs",
        "3",
    ]
    record = _cli(
        [*ext, "--manifest", str(text_image), "--align-through-text", "--out", str(tmp_path / "a")],
        capsys,
    )
    assert record["train"] is None and record["through_text"]["audio"]["phrases"] >= 2
    record = _cli(
        [*ext, "--manifest", str(trimodal), "--align-through-text", "--out", str(tmp_path / "b")],
        capsys,
    )
    assert record["train"]["epochs_run"] >= 1 and "text->audio" in record["test"]["retrieval"]
    # without the option, a manifest with no audio is still refused
    assert main([*ext, "--manifest", str(text_image), "--out", str(tmp_path / "c")]) != 0
    # an audio encoder without a text tower is refused before anything trains
    code = main(
        [
            "train",
            "--manifest",
            str(text_image),
            "--align-through-text",
            "--out",
            str(tmp_path / "d"),
            *common,
        ]
    )
    assert code != 0 and "no text tower" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
