"""Which model goes with which store: create, open and check a store for a SPANER checkpoint.

A store holds vectors of exactly one embedding space: the sha256 of the checkpoint that made
them (:attr:`spaner.pipeline.Spaner.space_id`) and its dimension. The first ingest creates
the store and records, in ``<store>/spaner.json``, the checkpoint it used:

* ``--checkpoint DIR``: a trained SPANER checkpoint, recorded by absolute path;
* ``--profile NAME``: an untrained model of that profile, *saved into the store* as
  ``<store>/model`` so the space stays reproducible (its hash is the space id).

Later ``ingest`` and ``search`` calls default to the recorded checkpoint; passing another
checkpoint is refused with :class:`~spaner.index.SpaceMismatchError`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaner.errors import CheckpointError, ConfigError

__all__ = ["BoundStore", "open_bound_store", "read_binding", "BINDING_NAME", "MODEL_DIR"]

BINDING_NAME = "spaner.json"
MODEL_DIR = "model"


@dataclass
class BoundStore:
    """An open vector store together with the model whose space it holds."""

    store: Any  # spaner.index.VectorStore
    spaner: Any  # spaner.pipeline.Spaner
    checkpoint: Path
    created: bool = False

    def close(self) -> None:
        self.store.close()


def read_binding(store_dir: Path) -> dict[str, Any]:
    """The ``spaner.json`` record of a store ({} when absent)."""
    import json

    f = Path(store_dir) / BINDING_NAME
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{f}: unreadable ({exc})") from exc


def _recorded_checkpoint(store_dir: Path) -> Path | None:
    rec = read_binding(store_dir).get("checkpoint")
    if not rec:
        return None
    p = Path(rec)
    return p if p.is_absolute() else store_dir / p


def _load(checkpoint: Path, device: str) -> Any:
    from spaner.pipeline import Spaner

    return Spaner.load(checkpoint, device=device)


def _space(sp: Any) -> Any:
    from spaner.index import EmbeddingSpace

    return EmbeddingSpace(checkpoint_hash=sp.space_id, dim=int(sp.model.dim))


def open_bound_store(
    store_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    profile: str | None = None,
    modalities: Sequence[str] | None = None,
    create: bool = False,
    backend: str = "faiss",
    backend_config: Any = None,
    device: str = "cpu",
    read_only: bool = False,
) -> BoundStore:
    """Open (or, with ``create``, make) the store at ``store_dir`` with its model.

    Existing store: the model is ``checkpoint`` when given (refused unless it is the store's
    space), else the recorded one; ``profile`` must then match the recorded model's profile.
    New store (``create``): from ``checkpoint``, or an untrained ``profile`` model saved
    into the store. ``read_only``: open an existing store without the writer lock (search).
    """
    from spaner.index import SpaceMismatchError, create_store, open_store
    from spaner.index.atomic_io import atomic_write_json

    d = Path(store_dir)
    if (d / "store.json").is_file():
        recorded = _recorded_checkpoint(d)
        if checkpoint is not None:
            ckpt = Path(checkpoint).resolve()
        elif recorded is not None:
            ckpt = recorded
        else:
            raise ConfigError(f"{d}: the store records no checkpoint; pass --checkpoint DIR")
        sp = _load(ckpt, device)
        if profile is not None and checkpoint is None:
            have = sp.model.config.profile
            if have != profile:
                raise SpaceMismatchError(
                    {"store": str(d), "profile": have, "checkpoint": str(ckpt)},
                    {"profile": profile},
                )
        store = open_store(d, _space(sp), read_only=read_only)
        return BoundStore(store, sp, ckpt)
    if not create:
        from spaner.index import StoreFormatError

        raise StoreFormatError(
            f"{d}: not a vector store (no store.json); create one with `spaner ingest`"
        )
    if checkpoint is None and profile is None:
        raise ConfigError(
            f"{d}: new store: pass --checkpoint DIR (a trained model) or --profile NAME"
        )
    if d.exists() and any(d.iterdir()):
        raise ConfigError(f"{d}: exists and is not empty, and is not a vector store")
    # The store, its model and spaner.json appear together: create_store builds them in a
    # hidden sibling folder and renames it, so a crash leaves no half-made store behind.
    from spaner.index.registry import remove_stale_builds

    def binding(build: Path, recorded: str, space: Any) -> None:
        doc = {"checkpoint": recorded, "space_id": space.checkpoint_hash, "dim": space.dim}
        atomic_write_json(build / BINDING_NAME, {**doc, "profile": profile})

    if checkpoint is not None:
        ckpt = Path(checkpoint).resolve()
        sp = _load(ckpt, device)
        space = _space(sp)
        store = create_store(
            d,
            space,
            backend=backend,
            config=backend_config,
            prepare=lambda build: binding(build, str(ckpt), space),
        )
    else:
        from spaner.pipeline import Spaner

        sp = Spaner.from_profile(profile, modalities=modalities, device=device)
        d.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(d, (".model-",))
        tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.model-", dir=d.parent))

        try:
            sp.save(tmp / MODEL_DIR)
            space = _space(sp)

            def prepare(build: Path) -> None:
                os.replace(tmp / MODEL_DIR, build / MODEL_DIR)
                binding(build, MODEL_DIR, space)

            store = create_store(d, space, backend=backend, config=backend_config, prepare=prepare)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sp.checkpoint = ckpt = d / MODEL_DIR
    return BoundStore(store, sp, ckpt, created=True)
