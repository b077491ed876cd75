"""``GET /v1/stats``: what the collection holds and what serves it."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import StateDep
from ..schemas.stats import StatsOut

router = APIRouter(tags=["service"])


@router.get(
    "/stats", response_model=StatsOut, summary="Items per modality, model, index type, device"
)
def stats(state: StateDep) -> StatsOut:
    with state.reading() as active:
        s = active.store.stats()
        cfg = active.spaner.model.config
        model = {
            "id": active.model_id,
            "checkpoint_hash": active.space.checkpoint_hash,
            "profile": cfg.profile,
            "modalities": active.spaner.modalities,
            "dim": active.space.dim,
            "encoders": {m: c.encoder for m, c in cfg.modalities.items()},
        }
        backend_cfg = s.get("config", {})
        index = {
            "backend": s.get("backend"),
            "type": backend_cfg.get("factory", s.get("backend")),
            "count": s.get("index_count"),
            "config": backend_cfg,
        }
        return StatsOut(
            items=s["count"],
            items_per_modality=s.get("by_modality", {}),
            items_per_concept=s.get("by_concept", {}),
            model=model,
            index=index,
            device=state.settings.device,
            jobs_running=len(state.jobs.running()),
        )
