"""``/v1/jobs``: status, progress (0..1) and final metrics of background jobs; cancellation.

Jobs are recorded beside the store, so an id the server gave out answers after a restart
too (a job the restart cut short is ``interrupted``, with the reason in ``error``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ..deps import StateDep, WriteAccess
from ..errors import NotFound
from ..schemas.common import ErrorOut
from ..schemas.jobs import JobOut
from ..state import ServiceState

router = APIRouter(prefix="/jobs", tags=["jobs"])

_NOT_FOUND = {404: {"model": ErrorOut, "description": "this server never gave out that job id"}}


def _missing(job_id: str) -> NotFound:
    return NotFound(f"no job with id {job_id!r}: this server never gave it out")


@router.get("", response_model=list[JobOut], summary="Recent jobs, oldest first")
def list_jobs(state: StateDep) -> list[JobOut]:
    return [JobOut(**j.to_dict()) for j in state.jobs.list()]


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="A job's status, progress and metrics",
    responses=_NOT_FOUND,
)
def get_job(job_id: str, state: StateDep) -> JobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise _missing(job_id)
    return JobOut(**job.to_dict())


def _cancel(state: ServiceState, job_id: str) -> JobOut:
    job = state.jobs.cancel(job_id)
    if job is None:
        raise _missing(job_id)
    return JobOut(**job.to_dict())


_CANCEL_DOC = dict(
    response_model=JobOut,
    status_code=202,
    dependencies=[WriteAccess],
    description=(
        "A queued job is cancelled at once; a running one stops at its next step "
        "(`cancel_requested` is true until then). A cancelled activation leaves the current "
        "model active. Once an activation has begun its switch, or a fit is saving its "
        "model, the job can no longer be cancelled (409)."
    ),
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorOut, "description": "the job has finished or cannot stop any more"},
        401: {"model": ErrorOut, "description": "API key missing or wrong"},
    },
)


@router.delete("/{job_id}", summary="Cancel a job", **_CANCEL_DOC)
async def delete_job(job_id: str, state: StateDep) -> JobOut:
    return await run_in_threadpool(_cancel, state, job_id)


@router.post("/{job_id}/cancel", summary="Cancel a job (same as DELETE)", **_CANCEL_DOC)
async def cancel_job(job_id: str, state: StateDep) -> JobOut:
    return await run_in_threadpool(_cancel, state, job_id)
