"""``GET /v1/health``: is the service up, and on which model."""

from __future__ import annotations

from fastapi import APIRouter

from spaner import __version__

from ..deps import StateDep
from ..schemas.stats import HealthOut

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthOut, summary="Liveness and the active model")
def health(state: StateDep) -> HealthOut:
    with state.reading() as active:
        return HealthOut(
            status="ok", version=__version__, model_id=active.model_id, items=active.store.count()
        )
