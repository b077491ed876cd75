"""``spaner demo``: the offline demo in one command.

Builds the Tux Paint collection (real photos, sounds, labels, spoken descriptions; the digits
when the Debian package cannot be had), trains SPANER few-shot on the offline profile, indexes
every item and serves the API and the UI on 127.0.0.1. Everything is cached under
``--workdir``: later runs start in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spaner.demo import DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build, train, index and serve the offline demo (Tux Paint photos, sounds, speech)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".spaner-demo"),
        help="where data, model and store live",
    )
    p.add_argument(
        "--shots", type=int, default=5, help="examples per concept per modality (default 5)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the data set and training (default 0)"
    )
    p.add_argument(
        "--collection",
        choices=("tuxpaint", "digits"),
        default="tuxpaint",
        help="tuxpaint: real photos, sounds and speech (falls back to digits if the Debian "
        "package cannot be fetched); digits: handwritten and spoken digits",
    )
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="PATH",
        help="Tux Paint stamps folder or .deb (default: installed copy, else apt-get download)",
    )
    p.add_argument(
        "--transcribe",
        choices=("auto", "always", "never"),
        default="never",
        help="Whisper transcripts of the collection's clips, for the full-text channel: auto "
        "(speech only), always, never (default: it would lengthen the first run; changing it "
        "rebuilds the store)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--no-serve", action="store_true", help="prepare everything, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spaner.demo import DemoConfig
    from spaner.errors import ConfigError
    from spaner.model.shared_encoders import shared_encoders

    if args.shots < 1:
        raise ConfigError("--shots must be >= 1")
    cfg = DemoConfig(
        workdir=args.workdir,
        shots=args.shots,
        seed=args.seed,
        host=args.host,
        port=args.port,
        collection=args.collection,
        source=args.source,
        warm_server=not args.no_serve,
        transcribe=args.transcribe,
    )
    with shared_encoders():  # the encoders training loads serve the API and UI too
        return _prepare_and_serve(cfg, args)


def _prepare_and_serve(cfg: DemoConfig, args: argparse.Namespace) -> int:
    import time

    from spaner.demo import prepare_demo, serve_demo

    t0 = time.perf_counter()
    info = prepare_demo(cfg, progress=not args.quiet)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in info["timings"].items())
    print(
        f"demo ({info['collection']}, profile {info['profile']}) ready in {time.perf_counter() - t0:.1f}s ({steps}); {info['items']} items in {info['store']}"
    )
    if info["test_r1"]:
        print(
            "held-out R@1: " + "  ".join(f"{d} {v:.2f}" for d, v in sorted(info["test_r1"].items()))
        )
    if not args.no_serve:
        serve_demo(cfg)
    return 0
