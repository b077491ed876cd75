"""Start-up recovery: finish or undo what a killed activation left beside the store.

An activation (:mod:`.activation`) builds the new store in ``.<store>.next-<job>``, renames
the live store to ``.<store>.old-<job>`` and the build into its place, then moves the trained
models over and removes the old folder. :func:`recover_activation` runs when the service
opens the store (:meth:`.state.ServiceState.open`, with the writer lock held), before
anything reads it. It imports neither the state nor the activation (only the no-op
kill-point seam), so both can use it without an import circle.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from spaner.index.atomic_io import move_into_place

from spaner.ingest.binding import MODELS_DIR

from .killpoints import progress_point

__all__ = ["recover_activation", "adopt_models", "discard", "BUILD", "PARKED", "TRASH"]

log = logging.getLogger(__name__)

#: sibling folders of the store during an activation: the new store being built, the previous
#: store after the switch, and folders being removed
BUILD, PARKED, TRASH = ".next-", ".old-", ".trash-"


def adopt_models(parked: Path, live: Path, events: bool = True) -> None:
    """Move the trained models of the parked (previous) store into the live one (``events``:
    count progress events; not during the recovery at start, which is not a job)."""
    src = parked / MODELS_DIR
    if src.is_dir():
        (live / MODELS_DIR).mkdir(exist_ok=True)
        moved = 0
        for entry in sorted(src.iterdir()):
            dest = live / MODELS_DIR / entry.name
            if not entry.name.startswith(".") and not dest.exists():
                move_into_place(entry, dest)
                moved += 1
                if moved == 1 and events:  # one event however many models
                    progress_point("activate:swap:first-model-moved")
    if events:
        progress_point("activate:swap:models-moved")


def discard(path: Path, store_dir: Path) -> None:
    """Remove a leftover folder beside ``store_dir``: renamed to a ``.trash-`` name first, so
    a crash half-way through the removal leaves nothing that looks like a store or a build."""
    if not path.exists():
        return
    trash = store_dir.parent / f".{store_dir.name}{TRASH}{uuid.uuid4().hex[:12]}"
    move_into_place(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def recover_activation(store_dir: Path) -> list[str]:
    """Finish or undo the folder swap of an activation a crash interrupted; remove leftovers.

    Called before the store is opened (with the writer lock held). Returns what it did."""
    parent, name = store_dir.parent, store_dir.name
    notes: list[str] = []
    if not parent.is_dir():
        return notes
    parked = sorted(parent.glob(f".{name}{PARKED}*"))
    if parked and not (store_dir / "store.json").is_file():
        if store_dir.is_dir() and not any(store_dir.iterdir()):
            store_dir.rmdir()
        move_into_place(parked[0], store_dir)  # killed between the two renames: the old store
        notes.append(f"put the previous store back from {parked[0].name}")
        parked = parked[1:]
    for p in parked:  # killed after the commit: keep the new store, adopt the models
        adopt_models(p, store_dir, events=False)
        discard(p, store_dir)
        notes.append(f"finished the switch: removed {p.name}")
    for p in sorted(parent.glob(f".{name}{BUILD}*")):
        discard(p, store_dir)
        notes.append(f"removed the unfinished build {p.name}")
    for p in sorted(parent.glob(f".{name}{TRASH}*")):
        shutil.rmtree(p, ignore_errors=True)
        notes.append(f"removed {p.name}")
    for p in sorted(parent.glob(f"..{name}{BUILD}*.lock")):  # a killed build's writer lock
        p.unlink(missing_ok=True)
        notes.append(f"removed {p.name}")
    models = store_dir / MODELS_DIR
    if models.is_dir():
        for p in sorted(models.glob(".tmp-*")):
            shutil.rmtree(p, ignore_errors=True)
            notes.append(f"removed {MODELS_DIR}/{p.name}")
    if notes:
        log.warning("%s: recovered from an interrupted job: %s", store_dir, "; ".join(notes))
    return notes
