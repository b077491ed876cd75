"""``/v1/items``: add (upload or JSON text), read metadata, serve content, delete."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from ..body import file_part, json_part, openapi_body, read_body
from ..collection import NewItem, add_items
from ..deps import StateDep, WriteAccess
from ..errors import NotFound, Unprocessable
from ..inputs import classify_upload
from ..retrieval import item_out
from ..schemas.common import BODY_ERROR_RESPONSES, ErrorOut, ItemOut
from ..schemas.items import ItemsFormIn, ItemsIn, ItemsOut, TextItemIn
from ..uploads import SNIFFED_TYPES, sniff


def _decimal_item_id(request: Request) -> None:
    """An item id in the path is written in decimal digits: FastAPI would read "+0.0" or "1e3"
    as integers (found by schemathesis)."""
    raw = request.path_params.get("item_id")
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise RequestValidationError(
            [
                {
                    "type": "int_parsing",
                    "loc": ("path", "item_id"),
                    "msg": "an item id is a non-negative integer written in decimal digits",
                    "input": raw,
                }
            ]
        )


router = APIRouter(prefix="/items", tags=["items"])
# per route, after its key check (a missing key is a 401 first), not on the whole router
DecimalId = Depends(_decimal_item_id)

ItemId = Path(ge=0, le=2**63 - 1, description="the item's id", examples=[42])
_NOT_FOUND = {404: {"model": ErrorOut, "description": "no item with this id"}}


@router.post(
    "",
    status_code=201,
    response_model=ItemsOut,
    dependencies=[WriteAccess],
    summary="Store and index items: uploaded files (multipart) or texts (JSON)",
    responses={
        **BODY_ERROR_RESPONSES,
        401: {"model": ErrorOut, "description": "API key missing or wrong"},
    },
    openapi_extra=openapi_body(
        ItemsIn,
        {
            "files": file_part("images or audio files to store", many=True),
            "concept": {"type": "string", "description": "concept label for every file"},
            "source": {"type": "string", "description": "source label (default: the file name)"},
            "extra": json_part('JSON object of metadata for every file, e.g. {"license": "CC-BY"}'),
            "request": json_part("optional JSON with text items", ItemsFormIn),
        },
        "JSON ItemsIn (text items), or multipart/form-data with file parts and metadata fields",
        multipart_extra={
            "anyOf": [
                {"required": ["files"], "properties": {"files": {"minItems": 1}}},
                {"required": ["request"]},
            ]
        },
    ),
)
async def create_items(request: Request, state: StateDep) -> ItemsOut:
    body = await read_body(request, ItemsFormIn, form_fields=("concept", "source", "extra"))
    extra: dict = {}
    raw_extra = body.field("extra")
    if raw_extra:
        try:
            extra = json.loads(raw_extra)
        except json.JSONDecodeError as exc:
            raise Unprocessable(f"extra: not valid JSON ({exc.msg}); send a JSON object") from None
        if not isinstance(extra, dict):
            raise Unprocessable('extra: must be a JSON object such as {"license": "CC-BY"}')
    texts: list[TextItemIn] = body.model.items
    if not body.files and not texts:
        raise Unprocessable(
            'nothing to add: send JSON {"items": [{"text": ...}]} or multipart file parts'
        )

    def work() -> ItemsOut:
        with state.reading() as active:
            new = [
                NewItem(text=t.text, concept=t.concept, source=t.source, extra=t.extra)
                for t in texts
            ]
            for _, name, data in body.files:
                up = classify_upload(active, data, name)
                new.append(
                    NewItem(
                        upload=up,
                        concept=body.field("concept"),
                        source=body.field("source") or name,
                        extra=extra,
                    )
                )
            ids, dups = add_items(active, new)
            metas = active.store.get(ids)
            return ItemsOut(
                items=[item_out(active, i, m) for i, m in zip(ids, metas, strict=True)],
                duplicates=dups,
            )

    return await run_in_threadpool(work)


@router.get(
    "/{item_id}",
    response_model=ItemOut,
    summary="An item's metadata",
    responses=_NOT_FOUND,
    dependencies=[DecimalId],
)
def get_item(state: StateDep, item_id: int = ItemId) -> ItemOut:
    with state.reading() as active:
        meta = active.store.get([item_id])[0]
        return ItemOut(**item_out(active, item_id, meta))


@router.get(
    "/{item_id}/content",
    summary="The original content (image, audio or text), served safely",
    description="Served with the sniffed content type, `Content-Disposition` and `X-Content-Type-Options: nosniff`.",
    responses={
        **_NOT_FOUND,
        200: {
            "content": {
                mime: {} for mime in (*SNIFFED_TYPES, "text/plain", "application/octet-stream")
            }
        },
    },
    response_class=Response,
    dependencies=[DecimalId],
)
def get_content(state: StateDep, item_id: int = ItemId) -> Response:
    with state.reading() as active:
        active.store.get([item_id])  # 404 for unknown ids
        content = active.store.content(item_id)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=3600",
    }
    if isinstance(content, str):
        headers["Content-Disposition"] = f'inline; filename="item-{item_id}.txt"'
        return Response(
            content.encode("utf-8"), media_type="text/plain; charset=utf-8", headers=headers
        )
    kind = sniff(content)
    mime, ext = (kind.mime, kind.ext) if kind else ("application/octet-stream", "bin")
    disposition = "inline" if kind else "attachment"
    headers["Content-Disposition"] = f'{disposition}; filename="item-{item_id}.{ext}"'
    return Response(content, media_type=mime, headers=headers)


@router.delete(
    "/{item_id}",
    status_code=204,
    dependencies=[WriteAccess, DecimalId],
    summary="Delete an item (and its content when no other item uses it)",
    responses={**_NOT_FOUND, 401: {"model": ErrorOut, "description": "API key missing or wrong"}},
)
def delete_item(state: StateDep, item_id: int = ItemId) -> Response:
    with state.reading() as active:
        if not active.store.delete([item_id]):
            raise NotFound(f"no item with id {item_id} (already deleted?)")
    return Response(status_code=204)
