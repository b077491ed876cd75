"""Trained checkpoints kept in ``<store>/models/<id>/`` and the active one in ``<store>/checkpoint/``."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from spaner.index.atomic_io import move_into_place

from spaner.ingest.binding import CHECKPOINT_DIR
from spaner.model.checkpoint import CONFIG_NAME, checkpoint_hash
from spaner.pipeline import Spaner

from .errors import NotFound
from .state import ServiceState, model_id_of

__all__ = ["save_model", "list_models", "model_path", "json_safe"]

_ID = re.compile(r"^[0-9a-f]{12}$")


def json_safe(value: Any) -> Any:
    """Metrics as strict JSON: NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_model(state: ServiceState, spaner: Spaner, info: dict[str, Any]) -> str:
    """Save a trained model under ``models/<id>`` (id from its hash); returns the id."""
    state.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=state.models_dir, prefix=".tmp-"))
    try:
        spaner.save(tmp / "c", extra=json_safe(info))
        mid = model_id_of(checkpoint_hash(tmp / "c"))
        dest = state.models_dir / mid
        if not dest.exists():
            move_into_place(tmp / "c", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mid


def _describe(path: Path, mid: str, active: bool) -> dict[str, Any]:
    doc = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    cfg = doc.get("spaner", {})
    return {
        "id": mid,
        "active": active,
        "modalities": list(cfg.get("modalities", {})),
        "dim": int(cfg.get("aligner", {}).get("dim", 0)),
        "profile": cfg.get("profile"),
        "created": (path / CONFIG_NAME).stat().st_mtime,
        "info": doc.get("extra", {}),
    }


def list_models(state: ServiceState) -> list[dict[str, Any]]:
    """The active model first, then the trained ones, newest first."""
    active_id = state.peek().model_id
    out = [_describe(state.store_dir / CHECKPOINT_DIR, active_id, True)]
    others = []
    if state.models_dir.is_dir():
        for p in state.models_dir.iterdir():
            if _ID.match(p.name) and (p / CONFIG_NAME).is_file() and p.name != active_id:
                others.append(_describe(p, p.name, False))
    return out + sorted(others, key=lambda m: m["created"] or 0, reverse=True)


def model_path(state: ServiceState, model_id: str) -> Path:
    """The checkpoint directory of ``model_id``; 404 when there is none."""
    if _ID.match(model_id):
        if model_id == state.peek().model_id:
            return state.store_dir / CHECKPOINT_DIR
        p = state.models_dir / model_id
        if (p / CONFIG_NAME).is_file():
            return p
    raise NotFound(f"no model with id {model_id!r}; GET /v1/models lists them")
