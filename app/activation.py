"""Activation jobs: re-embed the collection into another model's space, then switch.

The new store is built beside the active one (``.<store>.next-<job>``) from the stored
original content, keeping every item's id and metadata; searches keep using the old
store meanwhile. The switch runs under the exclusive lock: items added or deleted during
the rebuild are carried over, the directories are swapped by rename, and the new space
is opened. A request sees the old space or the new one, never a mix.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from spaner.index import EmbeddingSpace, FaissConfig, Item, VectorStore, create_store, open_store
from spaner.index.atomic_io import fsync_dir, move_into_place

from spaner.ingest.binding import CHECKPOINT_DIR, MODELS_DIR, write_binding
from spaner.model.checkpoint import checkpoint_hash, load_checkpoint
from spaner.pipeline import Spaner, build_encoders
from spaner.search.calibration import load_calibration

from .errors import Conflict
from .jobs import Job
from .killpoints import progress_point
from .model_registry import model_path
from .recovery import BUILD, PARKED, adopt_models, discard, recover_activation
from .state import ActiveSpace, ServiceState, model_id_of

__all__ = ["start_activation", "recover_activation"]

log = logging.getLogger(__name__)

BATCH = 64


def _load_model(path: Path, current: Spaner, device: str) -> Spaner:
    """Load a checkpoint, reusing the active encoders where the config names the same ones."""
    model, _ = load_checkpoint(path)
    cur = current.model.config.modalities
    encoders, other = {}, {}
    for m, c in model.config.modalities.items():
        if m in cur and cur[m].encoder == c.encoder and cur[m].options == c.options:
            encoders[m] = current.encoders[m]
        else:
            other[m] = c
    if other:
        encoders.update(
            build_encoders(
                {m: c.encoder for m, c in other.items()},
                {m: c.options for m, c in other.items()},
                device,
            )
        )
    return Spaner(model, encoders, path, load_calibration(path))


def _all_ids(store: VectorStore) -> list[int]:
    return [int(i) for i in store.meta.ids_matching(None)]  # type: ignore[attr-defined]


def _copy_items(old: VectorStore, new_sp: Spaner, new: VectorStore, ids: list[int]) -> int:
    """Re-embed ``ids`` of ``old`` from their stored content into ``new``; returns items skipped."""
    metas = old.get(ids)
    skipped = 0
    by_mod: dict[str, list[int]] = {}
    for i, m in zip(ids, metas, strict=True):
        if m["modality"] in new_sp.encoders:
            by_mod.setdefault(m["modality"], []).append(i)
        else:
            skipped += 1
    meta_of = dict(zip(ids, metas, strict=True))
    for modality, mids in by_mod.items():
        contents = [old.content(i) for i in mids]
        vecs = new_sp.embed(modality, contents, names=[f"item {i}" for i in mids])
        items = [
            Item(
                modality,
                content=c,
                source=meta_of[i]["source"],
                concept=meta_of[i]["concept"],
                extra=meta_of[i]["extra"],
            )
            for i, c in zip(mids, contents, strict=True)
        ]
        new.add(np.asarray(vecs, np.float32), items, ids=mids)
        progress_point(f"activate:added {len(mids)} {modality}")
    return skipped


def _create_like(old: VectorStore, path: Path, space: EmbeddingSpace) -> VectorStore:
    cfg = old.manifest.backend_config  # type: ignore[attr-defined]
    if old.backend == "faiss":
        return create_store(path, space, "faiss", FaissConfig.from_dict(cfg))
    return create_store(path, space, old.backend)


def _swap_dirs(state: ServiceState, old: ActiveSpace, build: Path, parked: Path) -> None:
    """Rename the live store away and the new one into its place (rolled back on failure).

    Crash-safe with :func:`recover_activation` at the next start: killed before the second
    rename, the old store is put back; killed after it, the new store stays and the trained
    models still in the parked folder are moved over."""
    live = state.store_dir
    old.store.close()
    progress_point("activate:swap:closed")
    move_into_place(live, parked)
    progress_point("activate:swap:parked")
    try:
        move_into_place(build, live)  # the commit point
    except OSError:
        move_into_place(parked, live)
        raise
    progress_point("activate:swap:moved-in")


def _run_activation(state: ServiceState, job: Job, model_id: str) -> dict[str, Any]:
    src = model_path(state, model_id)
    start = state.peek()
    if model_id == start.model_id:
        return {"model_id": model_id, "items": start.store.count(), "changed": False}
    job.update(0.02, "loading the model")
    new_sp = _load_model(src, start.spaner, state.settings.device)
    space = EmbeddingSpace(checkpoint_hash(src), int(new_sp.model.dim))
    live = state.store_dir
    build = live.parent / f".{live.name}{BUILD}{job.id}"
    parked = live.parent / f".{live.name}{PARKED}{job.id}"
    new_store = _create_like(start.store, build, space)
    try:
        shutil.copytree(src, build / CHECKPOINT_DIR)
        # the previous model stays activatable: its checkpoint goes along into models/
        shutil.copytree(live / CHECKPOINT_DIR, build / MODELS_DIR / start.model_id)
        write_binding(build, space, new_sp.model.config.profile)
        with state.reading() as active:
            todo = _all_ids(active.store)
        done: set[int] = set()
        skipped = 0
        for s in range(0, len(todo), BATCH):
            chunk = todo[s : s + BATCH]
            with state.reading() as active:
                chunk = [int(i) for i in active.store.meta.existing(chunk)]  # type: ignore[attr-defined]
                skipped += _copy_items(active.store, new_sp, new_store, chunk)
            done.update(chunk)
            job.update(
                0.05 + 0.85 * min(1.0, len(done) / max(1, len(todo))),
                f"re-embedding: {len(done)} of {len(todo)} items",
            )
        job.update(0.92, "switching")
        with state.writing() as active:
            job.no_more_cancel()
            now = set(_all_ids(active.store))
            added = sorted(now - done)
            if added:
                skipped += _copy_items(active.store, new_sp, new_store, added)
            removed = sorted(i for i in done if i not in now)
            if removed:
                new_store.delete(removed)
            count = new_store.count()
            new_store.close()
            fsync_dir(build)
            progress_point("activate:swap:built")
            try:
                _swap_dirs(state, active, build, parked)
            except BaseException:
                state.swap(ActiveSpace(active.spaner, open_store(live, active.space), active.space))
                raise
            store = open_store(live, space)
            new_sp.checkpoint = live / CHECKPOINT_DIR
            state.swap(ActiveSpace(new_sp, store, space))
            progress_point("activate:swap:opened")
        try:
            adopt_models(parked, live)
            discard(parked, live)
        except OSError as exc:  # the switch is done; the next start finishes this
            log.warning("%s: could not tidy up after the switch (%s)", live, exc)
        progress_point("activate:swap:cleaned")
    except BaseException:
        if not new_store._closed:  # type: ignore[attr-defined]
            new_store.close()
        discard(build, live)
        raise
    log.info("activated model %s (%d items re-embedded)", model_id, count)
    return {
        "model_id": model_id_of(space.checkpoint_hash),
        "previous": start.model_id,
        "items": count,
        "skipped": skipped,
        "changed": True,
    }


def start_activation(state: ServiceState, model_id: str) -> Job:
    model_path(state, model_id)  # 404 now rather than in the job
    if state.jobs.running("activate"):
        raise Conflict(
            "another activation is running; wait for its job to finish (GET /v1/jobs/{id})"
        )
    return state.jobs.submit(
        "activate",
        lambda job: _run_activation(state, job, model_id),
        params={"model_id": model_id, "from": state.peek().model_id},
    )
