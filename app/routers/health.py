"""``GET /v1/health``: is the service up, and on which model."""

from __future__ import annotations

from fastapi import APIRouter

from spaner import __version__

from ..deps import StateDep
from ..schemas.stats import HealthOut

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthOut, summary="Liveness and the active model")
def health(state: StateDep) -> HealthOut:
    """Never waits: while a write or a model switch holds the store, it answers at once with
    ``busy`` and the item count it saw last (a liveness probe must not hang on a long ingest)."""
    with state.try_reading() as active:
        if active is not None:
            items = state.last_item_count = active.store.count()
            return HealthOut(
                status="ok", version=__version__, model_id=active.model_id, items=items
            )
    return HealthOut(
        status="ok",
        version=__version__,
        model_id=state.peek().model_id,
        items=state.last_item_count,
        busy=True,
    )
