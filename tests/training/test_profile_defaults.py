"""A profile's training defaults reach every training run, and a setting the caller gives wins."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

import spaner.pipeline
from spaner.cli.common import add_train_args, train_config
from spaner.errors import ConfigError
from spaner.model.config import TrainConfig
from spaner.pipeline import Spaner
from spaner.profiles import PROFILES, resolve_train_config

DEFAULT = TrainConfig()


@pytest.fixture()
def tiny_with_defaults(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The tiny profile, carrying training defaults for this test only."""
    train = {"image_augment": 1, "epochs": 2, "min_epochs": 1}
    monkeypatch.setitem(PROFILES, "tiny", dataclasses.replace(PROFILES["tiny"], train=train))
    return train


@pytest.fixture()
def used_configs(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """The TrainConfig of every fit Spaner runs (the real fit still runs); ``cfg.train_images``:
    how many training images it saw."""
    seen: list[TrainConfig] = []
    real = spaner.pipeline.fit

    def spy(model, train, val, cfg, **kw):
        seen.append(cfg)
        cfg.train_images = len(train.modalities["image"])  # not a field: equality ignores it
        return real(model, train, val, cfg, **kw)

    monkeypatch.setattr(spaner.pipeline, "fit", spy)
    return seen


def test_precedence_given_over_profile_over_trainconfig() -> None:
    augment = PROFILES["digits"].train["image_augment"]
    assert augment > 0 and DEFAULT.image_augment == 0
    assert resolve_train_config("digits").image_augment == augment
    assert resolve_train_config(PROFILES["digits"]).image_augment == augment
    chosen = resolve_train_config("digits", {"image_augment": 0, "epochs": 7})
    assert (chosen.image_augment, chosen.epochs) == (0, 7)  # an explicit 0 is a setting too
    assert resolve_train_config("digits", {"shots": 3}).shots == 3
    # no profile, or one no longer registered (an old checkpoint's): TrainConfig's defaults
    assert resolve_train_config(None) == DEFAULT
    assert resolve_train_config("gone-profile", {"epochs": 3}) == TrainConfig(epochs=3)
    assert resolve_train_config("offline") == DEFAULT


def test_unknown_or_invalid_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="imag_augment"):
        resolve_train_config("digits", {"imag_augment": 1})
    with pytest.raises(ConfigError, match="image_augment"):
        resolve_train_config("digits", {"image_augment": -1})


def test_cli_flags_left_out_take_the_profile_default() -> None:
    p = argparse.ArgumentParser()
    add_train_args(p)
    augment = PROFILES["digits"].train["image_augment"]
    assert train_config(p.parse_args([]), "digits").image_augment == augment
    assert train_config(p.parse_args(["--image-augment", "0"]), "digits").image_augment == 0
    assert train_config(p.parse_args(["--epochs", "5"]), "digits").epochs == 5
    assert train_config(p.parse_args([]), "offline").image_augment == 0


def test_fit_applies_the_model_profile_defaults(
    paired_set: Path, tiny_with_defaults: dict, used_configs: list
) -> None:
    sp = Spaner.from_profile("tiny", modalities=["text", "image"])
    plain = sp.prepare(paired_set, TrainConfig(shots=2, seed=0))
    result = sp.fit(paired_set, {"shots": 2, "seed": 0}, progress=False)
    (cfg,) = used_configs
    assert cfg == TrainConfig(shots=2, seed=0, **tiny_with_defaults)
    assert result.epochs_run <= 2
    # the profile's image augmentation reached the data: one augmented copy per training image
    assert cfg.train_images == 2 * len(plain.train.modalities["image"])
    assert sp.train_config() == TrainConfig(**tiny_with_defaults)


def test_an_explicit_setting_wins_over_the_profile_default(
    paired_set: Path, tiny_with_defaults: dict, used_configs: list
) -> None:
    sp = Spaner.from_profile("tiny", modalities=["text", "image"])
    sp.fit(paired_set, {"shots": 2, "image_augment": 0, "epochs": 1}, progress=False)
    sp.fit(paired_set, TrainConfig(shots=2, epochs=1), progress=False)  # used as it is
    first, second = used_configs
    assert (first.image_augment, first.epochs, first.min_epochs) == (0, 1, 1)
    assert (second.image_augment, second.min_epochs) == (0, DEFAULT.min_epochs)


def test_a_loaded_checkpoint_keeps_its_profile_defaults(
    tmp_path: Path, tiny_with_defaults: dict
) -> None:
    Spaner.from_profile("tiny", modalities=["text", "image"]).save(tmp_path / "ckpt")
    sp = Spaner.load(tmp_path / "ckpt")
    assert sp.model.config.profile == "tiny"
    assert sp.train_config(epochs=9) == TrainConfig(**{**tiny_with_defaults, "epochs": 9})
