"""``POST /v1/embed``: one text or one uploaded file -> its vector."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..body import file_part, openapi_body, read_body
from ..deps import StateDep
from ..errors import Unprocessable
from ..inputs import classify_upload, embed_texts, embed_uploads
from ..schemas.common import BODY_ERROR_RESPONSES
from ..schemas.embed import EmbedOut, EmbedText

router = APIRouter(tags=["embed"])


class _Optional(EmbedText):
    text: str | None = None  # type: ignore[assignment]


@router.post(
    "/embed",
    response_model=EmbedOut,
    summary="Embed a text (JSON) or a file (multipart field 'file')",
    responses=BODY_ERROR_RESPONSES,
    openapi_extra=openapi_body(
        EmbedText,
        {"file": file_part("an image or audio file")},
        'JSON {"text": ...}, or multipart/form-data with one file part named "file"',
        multipart_extra={"required": ["file"]},
    ),
)
async def embed(request: Request, state: StateDep) -> EmbedOut:
    body = await read_body(request, _Optional, max_files=1)

    def work() -> EmbedOut:
        with state.reading() as active:
            if body.files:
                if body.model.text is not None:
                    raise Unprocessable("send either a text or a file, not both")
                _, name, data = body.files[0]
                up = classify_upload(active, data, name)
                vec, modality = embed_uploads(active, [up])[0], up.kind.modality
            elif body.model.text:
                vec, modality = embed_texts(active, [body.model.text])[0], "text"
            else:
                raise Unprocessable(
                    'nothing to embed: send JSON {"text": "..."} or a multipart part named "file"'
                )
            return EmbedOut(
                modality=modality, model_id=active.model_id, dim=len(vec), vector=vec.tolist()
            )

    return await run_in_threadpool(work)
