"""Arguments shared by several subcommands, built from the typed configs' help metadata."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from spaner.errors import ConfigError
from spaner.model.config import AlignerConfig, TrainConfig
from spaner.profiles import PROFILES, resolve_train_config
from spaner.training.features import FeatureCache

__all__ = [
    "add_model_args",
    "add_train_args",
    "add_aligner_args",
    "add_cache_args",
    "add_text_bridge_args",
    "bridge_phrases",
    "parse_mapping",
    "encoder_choice",
    "train_config",
    "aligner_overrides",
    "feature_cache",
    "print_json",
]


def _dc_args(
    group: argparse._ArgumentGroup, cls: type, prefix: str = "", skip: tuple[str, ...] = ()
) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + f" (default: {f.default})"
        if f.type in ("bool",) or isinstance(f.default, bool):
            group.add_argument(
                flag,
                dest=prefix + f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_,
            )
        else:
            kind = {int: int, float: float}.get(type(f.default), str)
            if f.name in ("shots",):
                kind = int
            if f.name in ("fraction",):
                kind = float
            group.add_argument(flag, dest=prefix + f.name, type=kind, default=None, help=help_)


def add_model_args(p: argparse.ArgumentParser, with_profile: bool = True) -> None:
    g = p.add_argument_group("encoders")
    if with_profile:
        g.add_argument(
            "--profile",
            default="default",
            choices=sorted(PROFILES),
            help="encoder set: default (open_clip + CLAP, needs weights), offline (no network), tiny (tests)",
        )
        g.add_argument(
            "--modalities",
            default=None,
            help="comma-separated modalities to use (default: every modality in the manifest)",
        )
    g.add_argument(
        "--encoder",
        action="append",
        default=[],
        metavar="MODALITY=NAME",
        help="use encoder NAME for MODALITY (see `spaner encoders`); repeatable",
    )
    g.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="MODALITY=PATH",
        help="local weights (file or directory) for MODALITY's encoder, for machines without network",
    )
    g.add_argument(
        "--encoder-opt",
        action="append",
        default=[],
        metavar="MODALITY:KEY=VALUE",
        help="extra encoder option, VALUE parsed as JSON when possible (e.g. image:model_name=ViT-L-14)",
    )
    g.add_argument("--device", default="cpu", help="torch device for the encoders and the model")


def add_aligner_args(p: argparse.ArgumentParser) -> None:
    _dc_args(p.add_argument_group("aligner (model shape)"), AlignerConfig, skip=("kind",))


def add_train_args(p: argparse.ArgumentParser) -> None:
    _dc_args(p.add_argument_group("few-shot training"), TrainConfig)


def add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature cache")
    g.add_argument(
        "--cache-dir",
        default=None,
        help="frozen-feature cache (default: $SPANER_CACHE or ~/.cache/spaner)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write cached features")


def add_text_bridge_args(p: argparse.ArgumentParser, modalities: bool) -> None:
    """``--align-through-text`` (with ``modalities``: the modalities to align, ``audio`` when
    left bare) and ``--phrases FILE`` (see :mod:`spaner.training.text_bridge`)."""
    g = p.add_argument_group("aligning through text")
    what = (
        "align MODALITIES (comma-separated; bare: audio) through text before their shots, or "
        "with none in the manifest instead of them"
        if modalities
        else "align --modality through text before its shots, or with none in the manifest "
        "instead of them"
    )
    g.add_argument(
        "--align-through-text",
        **(
            {"nargs": "?", "const": "audio", "default": None, "metavar": "MODALITIES"}
            if modalities
            else {"action": "store_true"}
        ),
        help=what + ": its encoder's text tower (CLAP's) maps each phrase (the manifest's "
        "training texts and concepts, and --phrases) onto the model's text embedding of it",
    )
    g.add_argument(
        "--phrases",
        type=Path,
        default=None,
        help="a file of extra phrases for --align-through-text, one per line",
    )


def bridge_phrases(args: argparse.Namespace, manifest: Any, seed: int) -> list[str]:
    """The phrases ``--align-through-text`` learns from: the manifest's, then ``--phrases``."""
    from spaner.training.text_bridge import manifest_phrases, read_phrases

    phrases = manifest_phrases(manifest, seed)
    if args.phrases is not None:
        if not args.phrases.is_file():
            raise ConfigError(f"--phrases {args.phrases}: no such file")
        phrases += read_phrases(args.phrases)
    return phrases


def parse_mapping(values: list[str], what: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for v in values:
        key, s, val = v.partition(sep)
        if not s or not key or not val:
            raise ConfigError(f"{what} expects MODALITY{sep}VALUE, got {v!r}")
        out[key.strip()] = val.strip()
    return out


def encoder_choice(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(modality -> encoder name overrides, modality -> factory options) from the CLI flags."""
    choice = parse_mapping(args.encoder, "--encoder")
    options: dict[str, dict[str, Any]] = {}
    for mod, path in parse_mapping(args.weights, "--weights").items():
        if not Path(path).exists():
            raise ConfigError(f"--weights {mod}={path}: no such file or directory")
        options.setdefault(mod, {})["weights"] = str(Path(path).resolve())
    for item in args.encoder_opt:
        mod, s, rest = item.partition(":")
        key, s2, val = rest.partition("=")
        if not (s and s2 and mod and key):
            raise ConfigError(f"--encoder-opt expects MODALITY:KEY=VALUE, got {item!r}")
        try:
            parsed: Any = json.loads(val)
        except json.JSONDecodeError:
            parsed = val
        options.setdefault(mod, {})[key] = parsed
    return choice, options


def train_config(args: argparse.Namespace, profile: str | None) -> TrainConfig:
    """The TrainConfig flags given (a flag left out is ``None``) over ``profile``'s training
    defaults (:func:`spaner.profiles.resolve_train_config`); validated."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return resolve_train_config(profile, given)


def aligner_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(AlignerConfig)
        if getattr(args, f.name, None) is not None
    }


def feature_cache(args: argparse.Namespace) -> FeatureCache | None:
    return None if args.no_cache else FeatureCache(args.cache_dir)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=False, default=str))
