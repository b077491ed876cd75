"""Build a :class:`~spaner.pipeline.Spaner` from CLI flags and a manifest."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from spaner.errors import ConfigError
from spaner.pipeline import Spaner
from spaner.profiles import get_profile
from spaner.training.manifest import Manifest

from .common import aligner_overrides, encoder_choice


def spaner_from_args(
    args: argparse.Namespace, manifest: Manifest, extra: Sequence[str] = ()
) -> Spaner:
    """Encoders from ``--profile`` / ``--encoder`` for the manifest's (or ``--modalities``)
    modalities, and the ``extra`` ones (aligned through text: the manifest may have none)."""
    choice, options = encoder_choice(args)
    known = {**get_profile(args.profile).encoders, **choice}
    if args.modalities:
        mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
        missing = [m for m in mods if m not in manifest.modalities and m not in extra]
        if missing:
            raise ConfigError(f"--modalities {','.join(missing)}: not in {manifest.path}")
    else:
        mods = manifest.modalities
        unknown = [m for m in mods if m not in known]
        if unknown:
            raise ConfigError(
                f"{manifest.path} has modality {', '.join(unknown)} but profile {args.profile!r} has no encoder for it: "
                f"pass --encoder {unknown[0]}=NAME (see `spaner encoders`) or --modalities to leave it out"
            )
    for m in extra:
        if m not in known:
            raise ConfigError(
                f"no encoder for {m!r} in profile {args.profile!r}: pass --encoder {m}=NAME"
            )
        if m not in mods:
            mods.append(m)
    if len(mods) < 2:
        raise ConfigError(f"training needs at least two modalities; {manifest.path} gives {mods}")
    return Spaner.from_profile(
        args.profile,
        modalities=mods,
        aligner=aligner_overrides(args),
        encoders=choice,
        options=options,
        device=args.device,
    )
