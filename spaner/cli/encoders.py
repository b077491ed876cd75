"""``spaner encoders``: list every registered encoder (built-ins and plugins)."""

from __future__ import annotations

import argparse

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encoders", help="list registered encoders", description=__doc__)
    p.add_argument("--modality", default=None, help="only encoders of this modality")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from spaner.encoders import list_encoders, plugin_errors

    specs = list_encoders(args.modality)
    if args.json:
        print_json(
            [
                {
                    "name": s.name,
                    "modality": s.modality,
                    "width": s.width,
                    "weights": s.weights,
                    "source": s.source,
                    "description": s.description,
                }
                for s in specs
            ]
        )
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("name", "modality", "width", "weights", "source"):
        table.add_column(
            col, justify="right" if col == "width" else "left", no_wrap=col != "weights"
        )
    for s in specs:
        table.add_row(s.name, s.modality, str(s.width), s.weights, s.source)
    console = Console(width=160)
    console.print(table)
    for name, err in plugin_errors().items():
        console.print(f"[yellow]plugin {name!r} failed to load: {err}[/yellow]")
    return 0
