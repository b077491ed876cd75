"""``GET /v1/jobs/{id}``: status, progress (0..1) and final metrics of background jobs."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import StateDep
from ..errors import NotFound
from ..schemas.common import ErrorOut
from ..schemas.jobs import JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=list[JobOut], summary="Recent jobs, oldest first")
def list_jobs(state: StateDep) -> list[JobOut]:
    return [JobOut(**j.to_dict()) for j in state.jobs.list()]


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="A job's status, progress and metrics",
    responses={404: {"model": ErrorOut, "description": "no such job (jobs are kept in memory)"}},
)
def get_job(job_id: str, state: StateDep) -> JobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFound(
            f"no job with id {job_id!r} (jobs are kept in memory until the server restarts)"
        )
    return JobOut(**job.to_dict())
