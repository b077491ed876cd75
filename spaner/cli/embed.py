"""``spaner embed``: embed files, folders and manifests into Parquet files.

PATHs are read as by ``spaner ingest`` (folders walked, ``.jsonl`` manifests, modality
sniffed; bad files reported and skipped). Each ``OUT/part-NNNNNN.parquet`` holds the columns
id, modality, source, content_hash, concept, extra (JSON) and vector (fixed-size list of
float32), for Spark, DuckDB, LanceDB or pandas. Running it again embeds only content not
already in OUT (by content hash).

Exit status: 0 when every input was embedded (or was already there), 1 when some were
skipped as bad or of unknown type, 2 on errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spaner.errors import ConfigError

from .common import print_json
from .ingest import add_engine_flags, ray_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed files, folders and manifests into Parquet files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or .jsonl manifest")
    p.add_argument(
        "--checkpoint", required=True, type=Path, help="trained SPANER checkpoint directory"
    )
    p.add_argument("--out", required=True, type=Path, help="folder of the Parquet files")
    p.add_argument(
        "--modalities",
        default=None,
        help="comma-separated modalities to embed (default: all the model has)",
    )
    p.add_argument("--device", default="cpu", help="torch device for encoders and model")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="items per encoder batch (default: 32 on the CPU, what fits the free memory on a GPU)",
    )
    p.add_argument(
        "--rows-per-file", type=int, default=8192, help="rows per Parquet file (the last fewer)"
    )
    p.add_argument(
        "--concept", default=None, help="concept label for items that carry none (plain files)"
    )
    add_engine_flags(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spaner.ingest import embed

    from .search import quiet_libraries

    quiet_libraries(args)
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    if args.rows_per_file <= 0:
        raise ConfigError(f"--rows-per-file must be positive, got {args.rows_per_file}")
    mods = [m.strip() for m in args.modalities.split(",") if m.strip()] if args.modalities else None
    report = embed(
        args.paths,
        args.checkpoint,
        args.out,
        batch_size=args.batch_size,
        modalities=mods,
        concept=args.concept,
        device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
        engine=args.engine,
        ray=ray_options(args),
        rows_per_file=args.rows_per_file,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        for p in report.bad + report.unknown:
            print(f"skipped {p.kind}: {p}", file=sys.stderr)
        print(report.summary().replace("ingested", "embedded", 1))
    return 1 if report.skipped else 0
