"""``spaner search``: query a vector store with text, image or audio examples.

Give one or more query items of any modality (--text, --image, --audio, each repeatable):
they are embedded with the store's model and combined into one query by averaging their
unit vectors and renormalising (few-shot retrieval by example). Targets can be limited to
some modalities, a concept, or metadata equalities. The results are one ranking over every
target modality: by ``relevance``, the cosine calibrated per (query modality, target modality)
pair, when the model has a calibration (each target modality's top k, merged), else by
``score`` (the raw cosine); ``--group-by modality`` lists each target modality's own top k
instead.

    spaner search --store DIR --text "seven" -k 5
    spaner search --store DIR --text "seven" -k 3 --group-by modality
    spaner search --store DIR --image a.png --image b.png --modality audio --json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spaner.errors import ConfigError, InputError

from .common import print_json

if TYPE_CHECKING:
    from spaner.search.engine import Example, SearchHit

QUERY_FLAGS = ("text", "image", "audio")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search a vector store by text, image or audio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, type=Path, help="vector store directory")
    q = p.add_argument_group("query (repeatable; several items are averaged into one query)")
    q.add_argument("--text", action="append", default=[], help="query text")
    q.add_argument("--image", action="append", default=[], type=Path, help="query image file")
    q.add_argument("--audio", action="append", default=[], type=Path, help="query audio file")
    p.add_argument("-k", "--k", type=int, default=10, help="number of results (default: 10)")
    p.add_argument(
        "--group-by",
        choices=("modality",),
        default=None,
        help="'modality': the top k of each target modality as its own list (k per modality)",
    )
    f = p.add_argument_group("filters")
    f.add_argument(
        "--modality", default=None, help="target modalities, comma-separated (e.g. image,audio)"
    )
    f.add_argument(
        "--concept",
        action="append",
        default=None,
        help="only items of this concept (repeatable: any of)",
    )
    f.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata equality (source, content_hash or a meta key); VALUE parsed as JSON when possible",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="model checkpoint (default: the one recorded in the store; another is refused)",
    )
    p.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fuse the store's full-text index (its texts, spoken transcripts) with the vectors: "
        "a query that is a stored text ranks it first (default: on; --no-hybrid: vectors only)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run)


class _LibraryChatter(logging.Filter):
    """Drops INFO chatter of third-party model loaders (faiss CPU-feature probing, open_clip)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not (record.name.startswith("faiss") or "open_clip" in record.pathname)


def quiet_libraries(args: argparse.Namespace) -> None:
    """Hide library loading chatter unless -vv (shared by ingest, search and delete)."""
    if getattr(args, "verbose", 0) >= 2:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _LibraryChatter) for f in handler.filters):
            handler.addFilter(_LibraryChatter())


def parse_where(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--where expects KEY=VALUE, got {v!r}")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        if isinstance(val, (list, dict)):
            val = raw
        out[key.strip()] = val
    return out


def target_modalities(args: argparse.Namespace) -> list[str] | None:
    return [m.strip() for m in args.modality.split(",") if m.strip()] if args.modality else None


def build_filter(args: argparse.Namespace, modalities: list[str] | None = None):
    from spaner.index import Filter

    mods = modalities if modalities is not None else target_modalities(args)
    try:
        flt = Filter(
            modality=mods or None, concept=args.concept or None, where=parse_where(args.where)
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return None if flt.is_empty() else flt


def query_items(args: argparse.Namespace) -> list[Example]:
    """The query examples, files checked up front (texts named by their repr in messages)."""
    from spaner.search.engine import Example

    items = [Example("text", t, name=repr(t)) for t in args.text]
    for modality in ("image", "audio"):
        for path in getattr(args, modality):
            if not path.is_file():
                raise InputError(str(path), f"query {modality} file not found")
            items.append(Example(modality, str(path), name=str(path)))
    if not items:
        raise ConfigError("no query given: pass --text TEXT, --image FILE and/or --audio FILE")
    return items


def snippet(store: Any, hit: Any, width: int = 48) -> str:
    meta = hit.metadata
    if meta["modality"] == "text":
        try:
            text = store.content(hit.id)
        except Exception:  # noqa: BLE001 - a display nicety only
            text = None
        if isinstance(text, str):
            text = " ".join(text.split())
            return text if len(text) <= width else text[: width - 1] + "…"
    src = meta.get("source") or ""
    return src if len(src) <= width else "…" + src[-(width - 1) :]


def run(args: argparse.Namespace) -> int:
    from spaner.ingest.binding import open_bound_store
    from spaner.search.engine import search

    quiet_libraries(args)
    if args.k <= 0:
        raise ConfigError(f"-k must be a positive number of results, got {args.k}")
    items = query_items(args)
    flt = build_filter(args)
    bound = open_bound_store(
        args.store, checkpoint=args.checkpoint, device=args.device, read_only=True
    )
    try:
        found = search(
            bound.spaner,
            bound.store,
            items,
            args.k,
            modalities=target_modalities(args),
            filters=flt,
            group_by=args.group_by,
            speech="audio",  # a query clip is its sound (the service also offers transcripts)
            hybrid=args.hybrid,
        )
        rows = result_rows(bound.store, found.results)
        groups = (
            None
            if found.groups is None
            else {m: result_rows(bound.store, hits) for m, hits in found.groups.items()}
        )
        if args.json:
            print_json(
                {
                    "store": str(args.store),
                    "query": [{"modality": q.modality, "value": q.value} for q in items],
                    "k": args.k,
                    "filter": None
                    if flt is None
                    else {
                        "modality": flt.modality,
                        "concept": flt.concept,
                        "where": dict(flt.where),
                    },
                    "group_by": args.group_by,
                    "results": rows,
                    **({"groups": groups} if groups is not None else {}),
                }
            )
            return 0
        if groups is not None:
            for m, g in groups.items():
                print(f"== {m} ==")
                print(format_table(g) if g else "(no results)")
            return 0
        print(format_table(rows))
        if not rows:
            print("(no results)")
    finally:
        bound.close()
    return 0


def result_rows(store: Any, hits: Sequence[SearchHit]) -> list[dict[str, Any]]:
    """Result rows; ``score`` is the raw cosine, ``relevance`` the calibrated score (None
    without a calibration)."""
    return [
        {
            "rank": r,
            "id": h.id,
            "score": round(h.score, 6),
            "relevance": None if h.relevance is None else round(h.relevance, 6),
            "lexical": None if h.lexical is None else round(h.lexical, 6),
            "modality": h.metadata["modality"],
            "concept": h.metadata["concept"],
            "source": h.metadata["source"],
            "snippet": snippet(store, h),
            "extra": h.metadata["extra"],
        }
        for r, h in enumerate(hits, 1)
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("rank", "id", "relevance", "score", "modality", "concept", "source / text")
    body = [
        (
            str(r["rank"]),
            str(r["id"]),
            "-" if r["relevance"] is None else f"{r['relevance']:.4f}",
            f"{r['score']:.4f}",
            r["modality"],
            r["concept"] or "-",
            r["snippet"],
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    return "\n".join(lines)
