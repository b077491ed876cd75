"""``POST /v1/search``: examples of any modality -> ranked items of the target modalities."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..body import file_part, json_part, openapi_body, read_body
from ..deps import StateDep
from ..errors import Unprocessable
from ..inputs import classify_upload
from ..retrieval import build_filter, examples, hit_out, search_examples
from ..schemas.common import BODY_ERROR_RESPONSES
from ..schemas.search import SearchIn, SearchOut

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchOut,
    summary="Search by one or more examples (texts, stored items, uploaded files)",
    description=(
        "Every example is embedded into the unified space and their mean is the query, so "
        "several examples of a concept make a few-shot query. Results come from the target "
        "`modalities` (default: all), filtered by `filters`, best first, in one ranking "
        "whatever the modality. Each hit has `score`, the raw cosine with the query, and "
        "`relevance`, the score calibrated for the (query modality, target modality) pair "
        "(0-1, comparable across modalities; null for a model without calibration). When the "
        "model has a calibration, `results` is ranked by `relevance` (the top-k of each target "
        "modality, merged), else by `score`. With `group_by: modality`, `groups` also holds the "
        "top-k of each target modality as its own list (k per modality). An empty collection "
        "returns an empty result list."
    ),
    responses={**BODY_ERROR_RESPONSES, 404: {"description": "a query item_id does not exist"}},
    openapi_extra=openapi_body(
        SearchIn,
        {
            "request": json_part(
                "SearchIn JSON: text/item_id queries, k, modalities, filters, group_by (every search "
                "option goes here; other form fields are refused)",
                SearchIn,
            ),
            "files": file_part("query examples (images, audio)", many=True),
        },
        "JSON SearchIn, or multipart/form-data: a 'request' part with SearchIn JSON plus file parts",
        json_extra={"required": ["queries"], "properties": {"queries": {"minItems": 1}}},
        multipart_extra={
            "anyOf": [
                {"required": ["files"], "properties": {"files": {"minItems": 1}}},
                {
                    "required": ["request"],
                    "properties": {
                        "request": {
                            "required": ["queries"],
                            "properties": {"queries": {"minItems": 1}},
                        }
                    },
                },
            ]
        },
    ),
)
async def search_items(request: Request, state: StateDep) -> SearchOut:
    settings = state.settings
    body = await read_body(request, SearchIn, max_files=settings.max_queries)
    req: SearchIn = body.model
    n = len(req.queries) + len(body.files)
    if n > settings.max_queries:
        raise Unprocessable(f"{n} query examples; at most {settings.max_queries} per search")
    if req.k > settings.max_k:
        raise Unprocessable(f"k={req.k} is over this server's limit of {settings.max_k}")

    def work() -> SearchOut:
        t0 = time.perf_counter()
        with state.reading() as active:
            uploads = [classify_upload(active, data, name) for _, name, data in body.files]
            found = search_examples(
                active,
                examples(
                    [x.text for x in req.queries if x.text is not None],
                    [x.item_id for x in req.queries if x.item_id is not None],
                    uploads,
                ),
                req.k,
                modalities=req.modalities,
                filters=build_filter(
                    req.filters.concept if req.filters else None,
                    req.filters.where if req.filters else None,
                ),
                group_by=req.group_by,
                speech=req.speech,
                speech_bias=req.speech_bias,
                hybrid=req.hybrid,
            )
            groups = None
            if found.groups is not None:
                groups = {m: [hit_out(active, h) for h in g] for m, g in found.groups.items()}
            return SearchOut(
                model_id=active.model_id,
                results=[hit_out(active, h) for h in found.results],
                transcripts=found.transcripts,
                groups=groups,
                took_ms=(time.perf_counter() - t0) * 1e3,
            )

    return await run_in_threadpool(work)
