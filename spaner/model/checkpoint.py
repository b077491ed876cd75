"""Checkpoints: ``config.json`` (typed config + training record) beside ``model.safetensors``,
and ``calibration.json`` (search-time score calibration, :mod:`spaner.search.calibration`) when the
model has one. The checkpoint hash covers config and weights only: calibration does not move a
vector, so a store's vectors stay valid for it.

No pickle anywhere: weights are safetensors, everything else JSON. A checkpoint is
written to a temporary sibling directory and renamed into place, so a crash never leaves
a half-written checkpoint under the final name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from spaner.errors import CheckpointError, ConfigError, DiskFullError, is_disk_full
from spaner.index.atomic_io import atomic_write_text, atomic_write_with, swap_into_place
from spaner.model.config import SpanerConfig, from_dict
from spaner.model.network import SpanerModel
from spaner.search.calibration import Calibration

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_hash", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_checkpoint(
    model: SpanerModel,
    path: str | Path,
    extra: dict[str, Any] | None = None,
    calibration: Calibration | None = None,
) -> Path:
    """Atomically write ``model`` to the directory ``path`` (replacing an existing checkpoint).

    A full disk raises :class:`DiskFullError` naming ``path``; the previous checkpoint, if
    any, is left as it was."""
    try:
        return _save(model, Path(path), extra, calibration)
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(
            f"{path}: no space left on device while saving the checkpoint ({exc}); "
            "nothing was replaced: free space and retry"
        ) from exc


def _save(
    model: SpanerModel,
    path: Path,
    extra: dict[str, Any] | None,
    calibration: Calibration | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path / CONFIG_NAME).is_file() and any(path.iterdir()):
        raise CheckpointError(
            f"{path} exists and is not a SPANER checkpoint; refusing to overwrite it"
        )
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        # one metadata key only: safetensors writes a multi-key metadata map in arbitrary order,
        # which would make the bytes (and the checkpoint hash) differ between identical saves
        atomic_write_with(
            tmp / WEIGHTS_NAME,
            lambda f: save_file(
                state, f, metadata={"format": f"spaner-v{model.config.format_version}"}
            ),
        )
        doc = {"spaner": model.config.to_dict(), "extra": extra or {}}
        atomic_write_text(tmp / CONFIG_NAME, json.dumps(doc, indent=2, sort_keys=True))
        if calibration is not None:
            calibration.save(tmp)
        swap_into_place(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path) -> tuple[SpanerModel, dict[str, Any]]:
    """Load a checkpoint directory; returns the model (eval mode) and the ``extra`` record."""
    path = Path(path)
    cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not cfg_file.is_file() or not weights.is_file():
        raise CheckpointError(
            f"{path}: not a SPANER checkpoint (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    try:
        doc = json.loads(cfg_file.read_text(encoding="utf-8"))
        config = from_dict(SpanerConfig, doc["spaner"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{cfg_file}: invalid checkpoint config: {exc}") from exc
    model = SpanerModel(config)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{weights}: weights do not match the config: {exc}") from exc
    model.eval()
    return model, doc.get("extra", {})


def checkpoint_hash(path: str | Path) -> str:
    """sha256 over config and weights: identifies the embedding space a checkpoint defines."""
    path = Path(path)
    h = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        h.update(name.encode())
        with open(path / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
