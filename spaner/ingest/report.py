"""What an ingest run did: skipped inputs (:class:`Problem`), the :class:`IngestReport` with
per-stage seconds, and the :class:`Problems` sink every stage reports to."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Problem", "IngestReport", "Problems", "StageTimer"]

log = logging.getLogger(__name__)


@dataclass
class Problem:
    """A skipped input: where it is and what is wrong with it."""

    source: str
    problem: str
    kind: str = "bad"  # "bad" (corrupt, truncated, over a limit, refused) or "unknown" (type)

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


@dataclass
class IngestReport:
    """What an ingest run did."""

    store: str = ""
    checkpoint: str = ""
    created: bool = False
    seen: int = 0
    added: int = 0
    added_by_modality: dict[str, int] = field(default_factory=dict)
    skipped_present: int = 0  # same content already stored (resume) or repeated in this run
    bad: list[Problem] = field(default_factory=list)
    unknown: list[Problem] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "decode": 0.0, "encode": 0.0, "write": 0.0}
    )
    total_seconds: float = 0.0
    store_count: int = 0
    worker_load_seconds: list[float] = field(default_factory=list)  # per Ray actor
    transcribed: int = 0  # audio items stored with a transcript made by this run

    @property
    def skipped(self) -> int:
        """Inputs not ingested because of a problem (bad or unknown)."""
        return len(self.bad) + len(self.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "checkpoint": self.checkpoint,
            "created": self.created,
            "seen": self.seen,
            "added": self.added,
            "added_by_modality": self.added_by_modality,
            "skipped_present": self.skipped_present,
            "skipped_bad": len(self.bad),
            "skipped_unknown": len(self.unknown),
            "problems": [
                {"source": p.source, "problem": p.problem, "kind": p.kind}
                for p in self.bad + self.unknown
            ],
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "total_seconds": round(self.total_seconds, 3),
            "store_count": self.store_count,
            "worker_load_seconds": [round(s, 3) for s in self.worker_load_seconds],
            "transcribed": self.transcribed,
        }

    def summary(self) -> str:
        mods = ", ".join(f"{m} {n}" for m, n in sorted(self.added_by_modality.items())) or "none"
        rate = self.added / self.total_seconds if self.total_seconds > 0 else 0.0
        stages = "  ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (
            f"ingested {self.added} items ({mods}) into {self.store} in {self.total_seconds:.1f}s "
            f"({rate:.1f} items/s); already stored: {self.skipped_present}; "
            f"skipped: {len(self.bad)} bad, {len(self.unknown)} unknown type; "
            f"transcribed: {self.transcribed}; "
            f"store now holds {self.store_count}\nstages: {stages}"
        )


class Problems:
    """Where the stages report a skipped input: the report's lists, the log, and the
    caller's ``on_problem``."""

    def __init__(
        self, report: IngestReport, on_problem: Callable[[Problem], None] | None = None
    ) -> None:
        self.report, self.on_problem = report, on_problem

    def __call__(self, source: str, text: str, kind: str = "bad") -> None:
        p = Problem(source, text, kind)
        (self.report.unknown if kind == "unknown" else self.report.bad).append(p)
        log.warning("skipped %s", p)
        if self.on_problem:
            self.on_problem(p)


class StageTimer:
    """``with StageTimer(report, "encode"):`` adds the block's seconds to that stage."""

    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.stage_seconds[self.stage] += time.perf_counter() - self.t0
