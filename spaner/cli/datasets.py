"""``spaner datasets``: build benchmark datasets (``spaner datasets digits --out DIR``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``datasets`` subcommand and its dataset builders."""
    parser = subparsers.add_parser(
        "datasets",
        help="build benchmark datasets",
        description="Build benchmark datasets offline and deterministically from a seed.",
    )
    kinds = parser.add_subparsers(dest="dataset", metavar="DATASET")
    digits = kinds.add_parser(
        "digits",
        help="tri-modal digits: handwritten images, eSpeak NG speech, text",
        description=(
            "Real 8x8 handwritten digits (scikit-learn load_digits) as PNG, the digit words "
            "spoken by eSpeak NG voice variants as 16 kHz WAV, and text templates; written "
            "with manifest.jsonl and dataset.json. Test and val voices and images are held "
            "out of training."
        ),
    )
    digits.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    digits.add_argument("--seed", type=int, default=0, help="seed for every choice (default 0)")
    digits.add_argument(
        "--voices",
        type=int,
        default=24,
        help="eSpeak voice variants, split train/val/test (default 24)",
    )
    digits.add_argument(
        "--renditions", type=int, default=3, help="jittered clips per voice and digit (default 3)"
    )
    digits.add_argument(
        "--per-digit-images",
        type=int,
        default=None,
        metavar="N",
        help="images per digit (default: all)",
    )
    digits.add_argument(
        "--noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mix seeded background noise into most clips (default: on)",
    )
    digits.add_argument(
        "--workers",
        type=int,
        default=None,
        help="eSpeak processes at once (default: one per core, at most 2)",
    )
    digits.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    synth = kinds.add_parser(
        "synthetic",
        help="seeded colour/tone/text set with its own ground truth (seconds to build)",
        description=(
            "Colour concepts: noisy colour patches (image), tones at a per-colour pitch (audio) "
            "and colour-naming texts; one modality per line, or paired lines with --paired."
        ),
    )
    synth.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    synth.add_argument(
        "--concepts", type=int, default=10, help="number of colour concepts (1-12, default 10)"
    )
    synth.add_argument(
        "--per-concept", type=int, default=12, help="items per concept and modality (default 12)"
    )
    synth.add_argument(
        "--paired", action="store_true", help="one line holds a text, an image and a sound"
    )
    synth.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    tux = kinds.add_parser(
        "tuxpaint",
        help="real photos, sounds, labels and speech from Debian's tuxpaint-stamps-default",
        description=(
            "Labelled real cut-out photos (flattened onto white), recorded sounds, English labels "
            "with translations and spoken descriptions from Debian's tuxpaint-stamps-default "
            "(an installed copy, --from PATH, or fetched with apt-get download + dpkg-deb -x). "
            "Writes manifest.jsonl (test concepts never trained), manifest-seen.jsonl (held-out "
            "items of trained concepts), spoken-digits.jsonl and dataset.json."
        ),
    )
    tux.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    tux.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="PATH",
        help="a stamps folder or the package's .deb (default: installed copy, else apt-get download)",
    )
    tux.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    tux.add_argument(
        "--speech-langs",
        default="en",
        help="spoken-description languages, comma-separated, or 'all' (default: en)",
    )
    tux.add_argument(
        "--text-langs",
        default="de,es,fr",
        help="label translations added as text items with meta.lang (default: de,es,fr; '' for none)",
    )
    tux.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    parser.set_defaults(func=run, _datasets_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Build the dataset named by ``args.dataset``; returns the exit code."""
    if getattr(args, "dataset", None) == "synthetic":
        return _run_synthetic(args)
    if getattr(args, "dataset", None) == "tuxpaint":
        return _run_tuxpaint(args)
    if getattr(args, "dataset", None) != "digits":
        parser = getattr(args, "_datasets_parser", None)
        if parser is not None:
            parser.print_help()
        return 2
    from spaner.datasets.digits import DigitsConfig, build_digits

    config = DigitsConfig(
        seed=args.seed,
        voices=args.voices,
        renditions=args.renditions,
        per_digit_images=args.per_digit_images,
        noise=args.noise,
    )
    result = build_digits(
        args.out,
        config,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not getattr(args, "quiet", False),
    )
    by_modality = result.counts["by_modality"]
    log.info(
        "wrote %s: %d images, %d audio clips, %d texts in %.1f s",
        result.out,
        by_modality.get("image", 0),
        by_modality.get("audio", 0),
        by_modality.get("text", 0),
        result.seconds,
    )
    for split, voices in result.voices.items():
        log.info("%s voices: %s", split, ", ".join(voices))
    return 0


def _run_synthetic(args: argparse.Namespace) -> int:
    from spaner.datasets.synthetic import make_synthetic
    from spaner.errors import ConfigError

    if args.out.exists() and any(args.out.iterdir()):
        raise ConfigError(f"{args.out} exists and is not empty; choose another --out")
    try:
        manifest = make_synthetic(
            args.out,
            concepts=args.concepts,
            per_concept=args.per_concept,
            paired=args.paired,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    log.info("wrote %s", manifest)
    return 0


def _langs(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _run_tuxpaint(args: argparse.Namespace) -> int:
    from spaner.datasets.tuxpaint import TuxPaintConfig, build_tuxpaint

    config = TuxPaintConfig(
        seed=args.seed, speech_langs=_langs(args.speech_langs), text_langs=_langs(args.text_langs)
    )
    result = build_tuxpaint(
        args.out,
        config,
        source=args.source,
        overwrite=args.overwrite,
        progress=not getattr(args, "quiet", False),
    )
    info = result.counts
    print(
        f"wrote {result.out}/manifest.jsonl: {info['items']} items, {info['concepts']} concepts, "
        f"{info['spoken_digits']} spoken digits in {result.seconds:.1f} s"
    )
    for reason, n in sorted(result.skipped.items()):
        print(f"skipped {n}: {reason} (e.g. {info['skipped_examples'][reason]})")
    return 0
