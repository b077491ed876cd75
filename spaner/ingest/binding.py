"""Which model goes with which store: the one module that knows a store's model layout.

A store holds vectors of exactly one embedding space: the sha256 of the checkpoint that made
them (:attr:`spaner.pipeline.Spaner.space_id`) and its dimension. ``spaner ingest``,
``spaner search`` and ``spaner serve`` all create and open stores through this module, so a
store made by one opens in the others. Layout::

    <store>/spaner.json     the binding record: {"checkpoint": "checkpoint", "space_id": sha256,
                            "dim": int, "profile": name}
    <store>/checkpoint/     the model whose space the store holds (saved or copied in)
    <store>/models/<id>/    other trained checkpoints (the server's fit jobs), by 12-hex id
    <store>/store.json ...  the vector store itself (:mod:`spaner.index`)

A new store gets its model as ``checkpoint/``: a trained ``--checkpoint DIR`` is copied in,
an untrained ``--profile NAME`` model is saved there, so the store is self-contained and its
space reproducible. Stores in older layouts still open: the record's ``checkpoint`` says
where the model is (``model``, relative to the store, from ``spaner ingest`` before; or an
absolute path); a store without a record uses ``checkpoint/``.

Later ``ingest`` and ``search`` calls default to the recorded checkpoint; passing another
checkpoint is refused with :class:`~spaner.index.SpaceMismatchError`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaner.errors import CheckpointError, ConfigError

__all__ = [
    "BoundStore",
    "open_bound_store",
    "create_bound_store",
    "read_binding",
    "write_binding",
    "bound_checkpoint",
    "adopt_checkpoint",
    "copy_checkpoint",
    "BINDING_NAME",
    "CHECKPOINT_DIR",
    "MODELS_DIR",
]

BINDING_NAME = "spaner.json"
#: the store's model, in every store made from now on (CLI and server)
CHECKPOINT_DIR = "checkpoint"
#: trained checkpoints kept beside the active one (the server's fit jobs), ``models/<id>/``
MODELS_DIR = "models"
#: the sibling folder a new store's model is staged in before the store is built
_STAGE = ".ckpt-"
#: staging prefixes of earlier versions (``spaner ingest`` used ``.model-``)
_OLD_STAGES = (".model-",)
#: a checkpoint being copied into an existing store (:func:`adopt_checkpoint`)
_COPY = f".{CHECKPOINT_DIR}.copy-"


@dataclass
class BoundStore:
    """An open vector store together with the model whose space it holds."""

    store: Any  # spaner.index.VectorStore
    spaner: Any  # spaner.pipeline.Spaner
    checkpoint: Path
    created: bool = False

    def close(self) -> None:
        self.store.close()


# -- the record ----------------------------------------------------------------------------


def read_binding(store_dir: str | Path) -> dict[str, Any]:
    """The ``spaner.json`` record of a store ({} when absent)."""
    f = Path(store_dir) / BINDING_NAME
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{f}: unreadable ({exc})") from exc


def binding_record(space: Any, profile: str | None, checkpoint: str = CHECKPOINT_DIR) -> dict:
    """The record for a store of ``space`` (an :class:`~spaner.index.EmbeddingSpace`)."""
    return {
        "checkpoint": checkpoint,
        "space_id": space.checkpoint_hash,
        "dim": int(space.dim),
        "profile": profile,
    }


def write_binding(
    store_dir: str | Path, space: Any, profile: str | None, checkpoint: str = CHECKPOINT_DIR
) -> None:
    """Record ``checkpoint`` (relative to the store, or absolute) as the store's model
    (atomically; not rewritten when it already says the same)."""
    doc = binding_record(space, profile, checkpoint)
    try:
        if read_binding(store_dir) == doc:
            return
    except CheckpointError:
        pass  # unreadable: replace it
    from spaner.index.atomic_io import atomic_write_json

    atomic_write_json(Path(store_dir) / BINDING_NAME, doc)


def bound_checkpoint(store_dir: str | Path) -> Path | None:
    """The store's model: where its record says, else ``<store>/checkpoint`` if there."""
    d = Path(store_dir)
    rec = read_binding(d).get("checkpoint")
    if rec:
        p = Path(rec)
        return p if p.is_absolute() else d / p
    own = d / CHECKPOINT_DIR
    return own if own.is_dir() else None


_recorded_checkpoint = bound_checkpoint  # the name before; kept for callers of it


def copy_checkpoint(src: str | Path, dest: str | Path) -> None:
    """Copy the checkpoint folder ``src`` to ``dest`` whole or not at all (copied beside
    ``dest``, then renamed; an existing ``dest`` is replaced)."""
    from spaner.index.atomic_io import swap_into_place

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.copy-", dir=dest.parent))
    try:
        shutil.copytree(src, tmp / "c")
        swap_into_place(tmp / "c", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def adopt_checkpoint(store_dir: str | Path, checkpoint: str | Path | None = None) -> Path:
    """Make sure the existing store has its model at ``<store>/checkpoint/`` (the server
    swaps it on activation): a store in an older layout gets its recorded model copied in;
    one that records none gets ``checkpoint``. The caller rewrites the record
    (:func:`write_binding`). Returns the folder."""
    d = Path(store_dir)
    target = d / CHECKPOINT_DIR
    for stale in d.glob(f"{_COPY}*"):  # a copy a crash interrupted
        shutil.rmtree(stale, ignore_errors=True)
    if target.is_dir():
        return target
    src = bound_checkpoint(d) if checkpoint is None else Path(checkpoint)
    if src is None or not src.is_dir():
        raise ConfigError(
            f"{d} has no {CHECKPOINT_DIR}/ folder: pass --checkpoint with the model "
            "that produced its vectors"
        )
    copy_checkpoint(src, target)
    return target


# -- opening and creating --------------------------------------------------------------------


def _load(checkpoint: Path, device: str) -> Any:
    from spaner.pipeline import Spaner

    return Spaner.load(checkpoint, device=device)


def _space(sp: Any) -> Any:
    from spaner.index import EmbeddingSpace

    assert sp.space_id is not None, "model must be saved or loaded from a checkpoint"
    return EmbeddingSpace(checkpoint_hash=sp.space_id, dim=int(sp.model.dim))


def create_bound_store(
    store_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    profile: str | None = None,
    modalities: Sequence[str] | None = None,
    backend: str = "faiss",
    backend_config: Any = None,
    device: str = "cpu",
    note: str | None = None,
) -> BoundStore:
    """Make a new store at ``store_dir`` with its model in ``checkpoint/``: a copy of
    ``checkpoint``, or an untrained ``profile`` model (``note`` goes into its config).

    The store, its model and ``spaner.json`` appear together: ``create_store`` builds them
    in a hidden sibling folder and renames it, so a crash leaves no half-made store behind
    and the next call creates it again."""
    from spaner.index import create_store
    from spaner.index.atomic_io import move_into_place
    from spaner.index.registry import remove_stale_builds
    from spaner.pipeline import Spaner

    d = Path(store_dir)
    if checkpoint is None and profile is None:
        raise ConfigError(
            f"{d}: new store: pass --checkpoint DIR (a trained model) or --profile NAME"
        )
    if d.exists() and any(d.iterdir()):
        raise ConfigError(f"{d}: exists, is not empty and is not a SPANER store (no store.json)")
    d.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(d, (_STAGE, *_OLD_STAGES))
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}{_STAGE}", dir=d.parent))
    try:
        staged = tmp / CHECKPOINT_DIR
        if checkpoint is not None:
            src = _load(Path(checkpoint), device)
            shutil.copytree(checkpoint, staged)
            sp = Spaner(src.model, src.encoders, staged, src.calibration)
        else:
            sp = Spaner.from_profile(profile, modalities=modalities, device=device)
            sp.save(staged, extra={"note": note} if note else None)
        space = _space(sp)

        def prepare(build: Path) -> None:
            move_into_place(staged, build / CHECKPOINT_DIR)
            write_binding(build, space, sp.model.config.profile)

        store = create_store(d, space, backend=backend, config=backend_config, prepare=prepare)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sp.checkpoint = d / CHECKPOINT_DIR
    return BoundStore(store, sp, sp.checkpoint, created=True)


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
    New store (``create``): :func:`create_bound_store`. ``read_only``: open an existing
    store without the writer lock (search).
    """
    from spaner.index import SpaceMismatchError, open_store

    d = Path(store_dir)
    if (d / "store.json").is_file():
        recorded = bound_checkpoint(d)
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
    return create_bound_store(
        d,
        checkpoint=checkpoint,
        profile=profile,
        modalities=modalities,
        backend=backend,
        backend_config=backend_config,
        device=device,
    )
