"""``spaner ingest``: embed files, folders and manifests into a vector store.

PATHs are files, folders (walked recursively) or ``.jsonl`` manifests. Modality comes from
the content (image/audio magic bytes) and the extension (.txt/.md are text, one item per
file). Bad files are reported and skipped; the run goes on. Re-running skips content already
stored, so an interrupted ingest resumes where it stopped.

The first ingest creates the store with its model in DIR/checkpoint: a copy of --checkpoint
(a trained SPANER checkpoint), or an untrained model of --profile (without either, the
offline profile, which needs no network). Later runs use the checkpoint recorded in the
store's spaner.json (the layout ``spaner serve`` uses too: spaner.ingest.binding).

Audio that is speech gets Whisper's transcript in its metadata (extra.transcript), which the
full-text channel searches: typing "frog" finds a recording of someone saying "frog".
--transcribe auto (the default, or SPANER_TRANSCRIBE) transcribes speech only, with the model's
Whisper audio encoder or else the shipped Whisper tiny.en; always stores every clip's
transcript; never turns it off (see spaner.ingest.transcripts).

With --engine ray the encoders run on a Ray actor pool (a local Ray, or the cluster at
--ray-address), each actor loading the model once; results are the same as without it.
Needs the ray extra: pip install 'spaner[ray]'.

Exit status: 0 when every input went in (or was already there), 1 when some were skipped
as bad or of unknown type (the summary lists them), 2 on errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from spaner.errors import ConfigError
from spaner.profiles import PROFILES

from .common import print_json

log = logging.getLogger(__name__)

#: Model of a new store when neither --checkpoint nor --profile is given: runs offline.
DEFAULT_PROFILE = "offline"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="embed files, folders and manifests into a vector store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or .jsonl manifest")
    p.add_argument(
        "--store", required=True, type=Path, help="vector store directory (created on first ingest)"
    )
    g = p.add_argument_group("model (first ingest; later runs use the store's)")
    g.add_argument(
        "--checkpoint", type=Path, default=None, help="trained SPANER checkpoint directory"
    )
    g.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="start from an untrained model of this profile (saved as STORE/model)",
    )
    g.add_argument(
        "--modalities",
        default=None,
        help="comma-separated modalities to ingest (default: all the model has)",
    )
    g.add_argument("--device", default="cpu", help="torch device for encoders and model")
    b = p.add_argument_group("store backend (first ingest only)")
    b.add_argument("--backend", choices=["faiss", "milvus"], default="faiss")
    b.add_argument(
        "--factory",
        default="Flat",
        help="FAISS index factory: Flat (exact, default), HNSW32, 'IVF1024,PQ64np', ...",
    )
    b.add_argument("--nprobe", type=int, default=None, help="IVF lists probed per query")
    b.add_argument(
        "--milvus-uri",
        default=None,
        help="Milvus server URI (http://host:19530); default: Milvus Lite file in the store",
    )
    b.add_argument("--milvus-token", default="", help="Milvus token (user:password or API key)")
    b.add_argument(
        "--text-fields",
        default=None,
        metavar="FIELDS",
        help="comma-separated metadata (extra) fields the lexical search also indexes, e.g. "
        "caption,title (default: none; texts and audio transcripts are always indexed). "
        "Given for an existing store, its full-text index is rebuilt with these fields",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="items per encoder batch and store commit (default: 32 on the CPU, what fits "
        "the free memory on a GPU)",
    )
    p.add_argument(
        "--concept", default=None, help="concept label for items that carry none (plain files)"
    )
    p.add_argument(
        "--transcribe",
        choices=("auto", "always", "never"),  # = spaner.ingest.transcripts.TRANSCRIBE_MODES
        default=None,
        help="Whisper transcripts of audio items, searched by the full-text channel: auto "
        "(speech only; default, or $SPANER_TRANSCRIBE), always (every clip), never",
    )
    add_engine_flags(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """--engine and the Ray flags (shared with ``spaner embed``)."""
    r = p.add_argument_group("engine (where the encoders run)")
    r.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: a Ray actor pool (pip install 'spaner[ray]')",
    )
    r.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (e.g. auto, ray://head:10001); default: a local Ray",
    )
    r.add_argument("--workers", type=int, default=1, help="Ray actors, one model each")
    r.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (0: CPU)")


def ray_options(args: argparse.Namespace):
    """The RayOptions of the flags (None for the local engine)."""
    if args.engine != "ray":
        return None
    from spaner.ingest import RayOptions
    from spaner.ingest.ray_engine import require_ray

    require_ray()  # the one-line install hint, before anything else happens
    opts = RayOptions(
        address=args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker
    )
    opts.check()
    return opts


def backend_config(args: argparse.Namespace):
    if args.backend == "milvus":
        from spaner.index import MilvusConfig

        return MilvusConfig(
            uri=args.milvus_uri, token=args.milvus_token, text_fields=text_fields(args)
        )
    from spaner.index import FaissConfig

    cfg = FaissConfig(factory=args.factory, text_fields=text_fields(args))
    if args.nprobe is not None:
        cfg.nprobe = args.nprobe
    return cfg


def text_fields(args: argparse.Namespace) -> list[str]:
    """The --text-fields names, checked (a bad name is refused before a store is made)."""
    from spaner.index.lexical import check_text_fields

    try:
        return list(check_text_fields(args.text_fields))
    except ValueError as exc:
        raise ConfigError(f"--text-fields: {exc}") from exc


def set_text_fields(args: argparse.Namespace) -> None:
    """--text-fields on an existing store: re-index its full-text index with them."""
    if args.text_fields is None or not (args.store / "store.json").is_file():
        return
    from spaner.index import open_store

    with open_store(args.store, None) as store:
        if store.set_text_fields(text_fields(args)):
            log.info(
                "%s: full-text index rebuilt with text fields %s", args.store, args.text_fields
            )


def run(args: argparse.Namespace) -> int:
    from spaner.ingest import ingest

    from .search import quiet_libraries

    quiet_libraries(args)
    ray_options(args)  # bad flags are refused before a store is made
    if (
        args.checkpoint is None
        and args.profile is None
        and not (args.store / "store.json").is_file()
    ):
        args.profile = DEFAULT_PROFILE
        log.warning(
            "new store without --checkpoint/--profile: using an untrained %r model "
            "(saved as %s/checkpoint); train one with `spaner train` for better search",
            DEFAULT_PROFILE,
            args.store,
        )
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    mods = [m.strip() for m in args.modalities.split(",") if m.strip()] if args.modalities else None
    text_fields(args)
    set_text_fields(args)
    report = ingest(
        args.paths,
        args.store,
        checkpoint=args.checkpoint,
        profile=args.profile,
        backend=args.backend,
        backend_config=backend_config(args),
        batch_size=args.batch_size,
        modalities=mods,
        concept=args.concept,
        device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
        engine=args.engine,
        ray=ray_options(args),
        transcribe=args.transcribe,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        for p in report.bad + report.unknown:
            print(f"skipped {p.kind}: {p}", file=sys.stderr)
        print(report.summary())
    return 1 if report.skipped else 0
