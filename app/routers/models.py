"""``/v1/models``: the active model, trained ones, and activation."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ..activation import start_activation
from ..deps import StateDep, WriteAccess
from ..model_registry import list_models
from ..schemas.common import ErrorOut
from ..schemas.jobs import JobOut
from ..schemas.models import ModelOut, ModelsOut

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "", response_model=ModelsOut, summary="The active model and the models trained by fit jobs"
)
def models(state: StateDep) -> ModelsOut:
    return ModelsOut(
        active=state.peek().model_id, models=[ModelOut(**m) for m in list_models(state)]
    )


@router.post(
    "/{model_id}/activate",
    status_code=202,
    response_model=JobOut,
    dependencies=[WriteAccess],
    summary="Re-embed the collection into this model's space, then switch to it (a job)",
    description=(
        "Stored items are re-embedded from their original content into a new store built "
        "beside the live one; search keeps serving the current space until the switch, "
        "which is atomic. Poll `GET /v1/jobs/{id}`."
    ),
    responses={
        404: {"model": ErrorOut, "description": "no such model"},
        409: {"model": ErrorOut, "description": "an activation is already running"},
        401: {"model": ErrorOut, "description": "API key missing or wrong"},
    },
)
async def activate(model_id: str, state: StateDep) -> JobOut:
    job = await run_in_threadpool(start_activation, state, model_id)
    return JobOut(**job.to_dict())
