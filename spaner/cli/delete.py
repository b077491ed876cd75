"""``spaner delete``: remove items from a vector store, durably.

Select items by id (as ``spaner search`` prints them), by --source (the ingested file's path)
and/or by --concept; the union of the selections is deleted in one atomic step. Unknown ids
are reported and do not stop the others. Content files no remaining item uses are removed.

    spaner delete --store DIR 12 13 40
    spaner delete --store DIR --source photos/cat.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spaner.errors import ConfigError

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "delete",
        help="delete items from a vector store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, type=Path, help="vector store directory")
    p.add_argument("ids", nargs="*", metavar="ID", help="item ids to delete")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="PATH",
        help="delete the items ingested from this file (repeatable)",
    )
    p.add_argument(
        "--concept",
        action="append",
        default=[],
        help="delete every item of this concept (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=run)


def _parse_ids(values: list[str]) -> list[int]:
    out = []
    for v in values:
        try:
            i = int(v)
        except ValueError:
            raise ConfigError(f"item ids are integers, got {v!r}") from None
        if i < 0:
            raise ConfigError(f"item ids are non-negative, got {i}")
        out.append(i)
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from spaner.index import Filter, open_store

    ids = _parse_ids(args.ids)
    if not ids and not args.source and not args.concept:
        raise ConfigError("nothing to delete: give item IDs, --source PATH or --concept C")
    store = open_store(args.store, None)  # deleting needs no model
    try:
        known = set(store.existing(ids))
        unknown = [i for i in ids if i not in known]
        selected = set(known)
        by_source: dict[str, int] = {}
        for src in args.source:
            found = store.ids(Filter(where={"source": str(Path(src).resolve())}))
            if not len(found):  # sources of manifest texts are "<manifest>:<line>" strings
                found = store.ids(Filter(where={"source": src}))
            by_source[src] = len(found)
            selected.update(found.tolist())
        by_concept: dict[str, int] = {}
        for c in args.concept:
            found = store.ids(Filter(concept=c))
            by_concept[c] = len(found)
            selected.update(found.tolist())
        deleted = store.delete(np.asarray(sorted(selected), dtype=np.int64)) if selected else 0
        remaining = store.count()
    finally:
        store.close()
    if args.json:
        print_json(
            {
                "deleted": deleted,
                "unknown_ids": unknown,
                "by_source": by_source,
                "by_concept": by_concept,
                "remaining": remaining,
            }
        )
    else:
        for i in unknown:
            print(f"unknown id: {i}", file=sys.stderr)
        for s, n in by_source.items():
            if n == 0:
                print(f"no items from source: {s}", file=sys.stderr)
        for c, n in by_concept.items():
            if n == 0:
                print(f"no items of concept: {c}", file=sys.stderr)
        print(
            f"deleted {deleted} items; {len(unknown)} unknown ids; the store now holds {remaining}"
        )
    return 1 if unknown and not deleted else 0
