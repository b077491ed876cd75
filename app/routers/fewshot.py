"""``POST /v1/fewshot/fit``: a labelled support set -> a background training job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..body import file_part, json_part, openapi_body, read_body
from ..deps import StateDep, WriteAccess
from ..errors import Unprocessable
from ..fewshot import MAX_SUPPORT, SupportExample, check_support, start_fit
from ..inputs import classify_upload
from ..schemas.common import BODY_ERROR_RESPONSES, ErrorOut
from ..schemas.jobs import FitIn, JobOut

router = APIRouter(prefix="/fewshot", tags=["few-shot"])


@router.post(
    "/fit",
    status_code=202,
    response_model=JobOut,
    dependencies=[WriteAccess],
    summary="Start a few-shot fit job (prompt + aligners, from the active model)",
    description=(
        "The support set is a handful of examples per concept in two or more modalities: "
        "texts and stored items in JSON, and/or uploaded files in multipart with one "
        "`concept` field per file, in file order. Poll `GET /v1/jobs/{id}`; the trained model "
        "is listed by `GET /v1/models` and becomes active only through "
        "`POST /v1/models/{id}/activate`."
    ),
    responses={
        **BODY_ERROR_RESPONSES,
        404: {"model": ErrorOut, "description": "an example item_id does not exist"},
        401: {"model": ErrorOut, "description": "API key missing or wrong"},
    },
    openapi_extra=openapi_body(
        FitIn,
        {
            "request": json_part(
                "optional FitIn JSON (text / item_id examples, epochs, lr, seed)", FitIn
            ),
            "files": file_part("example files", many=True),
            "concept": {
                "type": "array",
                "items": {"type": "string"},
                "description": "one concept per file, in order",
            },
        },
        "JSON FitIn, or multipart/form-data: file parts, one 'concept' field per file, optional 'request' JSON",
    ),
)
async def fit(request: Request, state: StateDep) -> JobOut:
    body = await read_body(request, FitIn, max_files=MAX_SUPPORT, form_fields=("concept",))
    req: FitIn = body.model
    concepts = body.field_values("concept")
    if len(concepts) != len(body.files):
        raise Unprocessable(
            f"{len(body.files)} files but {len(concepts)} 'concept' fields: send one concept per file, in order"
        )

    def work() -> JobOut:
        examples: list[SupportExample] = []
        with state.reading() as active:
            for ex in req.examples:
                if ex.text is not None:
                    examples.append(SupportExample("text", ex.text, ex.concept, "text"))
                else:
                    meta = active.store.get([ex.item_id])[0]
                    examples.append(
                        SupportExample(
                            meta["modality"],
                            active.store.content(ex.item_id),
                            ex.concept,
                            f"item {ex.item_id}",
                        )
                    )
            for (_, name, data), concept in zip(body.files, concepts, strict=True):
                if not concept.strip():
                    raise Unprocessable(f"{name}: empty concept label")
                up = classify_upload(active, data, name)
                active.spaner.encoders[up.kind.modality].load(
                    data, name
                )  # decode now: 413/415/422 here
                examples.append(SupportExample(up.kind.modality, data, concept.strip(), name))
            check_support(active, examples)
        job = start_fit(state, examples, req.epochs, req.lr, req.seed)
        return JobOut(**job.to_dict())

    return await run_in_threadpool(work)
