"""``spaner``: one command, one subcommand per stage.

Each subcommand lives in its own module under :mod:`spaner.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> int``).
Errors a user can cause (:class:`~spaner.errors.SpanerError`, missing files, bad values)
print one clear line and exit 2; they never show a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from spaner import __version__
from spaner.errors import SpanerError, is_disk_full

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

log = logging.getLogger("spaner")

#: Subcommand modules, in the order ``spaner --help`` lists them.
SUBCOMMANDS = [
    "encoders",
    "train",
    "extend",
    "eval",
    "datasets",
    "ingest",
    "embed",
    "search",
    "delete",
    "serve",
    "demo",
]


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """Logging/debug flags, accepted before or after the subcommand."""
    g = parser.add_argument_group("output")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="more logging (-vv for debug)",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="only warnings and errors, no progress bars",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=False if default is None else default,
        help="show tracebacks on errors",
    )


class _SubParsers(argparse._SubParsersAction):
    """Adds the global flags to every subcommand (with SUPPRESS defaults, so a flag given
    before the subcommand is not reset by the subparser)."""

    def add_parser(self, name: str, **kwargs):  # type: ignore[override]
        p = super().add_parser(name, **kwargs)
        _add_global_flags(p, argparse.SUPPRESS)
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spaner",
        description="SPANER: one embedding space for text, images and audio, aligned few-shot.",
    )
    parser.add_argument("--version", action="version", version=f"spaner {__version__}")
    _add_global_flags(parser, None)
    parser.register("action", "parsers", _SubParsers)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"spaner.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"spaner.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # Third-party libraries log at INFO on the root logger (open_clip's model-creation chatter);
    # the root stays at WARNING unless -vv, and SPANER's own loggers get the chosen level.
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.WARNING,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=verbose > 1, rich_tracebacks=False, markup=False)],
        force=True,
    )
    logging.getLogger("spaner").setLevel(level)
    if verbose <= 1:
        # open_clip warns on purpose-built random presets ("No pretrained weights loaded")
        logging.getLogger().addFilter(
            lambda r: "No pretrained weights loaded" not in r.getMessage()
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except SpanerError as exc:
        if args.debug:
            raise
        print(f"spaner {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        name = getattr(exc, "filename", None) or ""
        print(f"spaner {args.command}: error: {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:
        if args.debug or not is_disk_full(exc):
            raise
        name = getattr(exc, "filename", None)
        print(
            f"spaner {args.command}: error: no space left on device"
            f"{f' writing {name}' if name else ''} ({exc}); free space and retry",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"spaner {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
