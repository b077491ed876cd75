"""Ingest files, folders and manifests into a vector store: reader -> encoder -> writer.

>>> from spaner.ingest import ingest
>>> report = ingest(["photos/", "notes.jsonl"], "data/store", profile="tiny")
>>> report.added, report.skipped_present, len(report.bad)

Stages (clip-retrieval style, each timed; :class:`IngestReport` has the summary):

1. **read** (:mod:`spaner.ingest_sources`): walk folders, parse manifests, sniff modality.
2. **decode**: read the file once (size limit checked first), hash it (sha256) and skip
   content already in the store or seen earlier in this run; then the modality's encoder
   validates and decodes it (``Encoder.load``). Bad inputs are reported and skipped.
3. **encode**: batches of decoded inputs per modality through the frozen encoder and the
   SPANER model into unit vectors.
4. **write**: each batch is one atomic ``store.add`` (vectors, metadata, original content).

An interrupted run loses at most the batches not yet written; running the same command again
skips what is stored (by content hash) and finishes the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaner.errors import InputError, SpanerError

from .ingest_sources import Candidate, Skip, discover
from .ingest_store import BoundStore, open_bound_store

__all__ = ["ingest", "ingest_into", "IngestReport", "Problem"]

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
        }

    def summary(self) -> str:
        mods = ", ".join(f"{m} {n}" for m, n in sorted(self.added_by_modality.items())) or "none"
        rate = self.added / self.total_seconds if self.total_seconds > 0 else 0.0
        stages = "  ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (
            f"ingested {self.added} items ({mods}) into {self.store} in {self.total_seconds:.1f}s "
            f"({rate:.1f} items/s); already stored: {self.skipped_present}; "
            f"skipped: {len(self.bad)} bad, {len(self.unknown)} unknown type; "
            f"store now holds {self.store_count}\nstages: {stages}"
        )


@dataclass
class _Decoded:
    cand: Candidate
    raw: Any  # what Encoder.load returned
    content: bytes | str
    digest: str


class _Timer:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.stage_seconds[self.stage] += time.perf_counter() - self.t0


class _Pipeline:
    def __init__(
        self,
        bound: BoundStore,
        report: IngestReport,
        batch_size: int,
        modalities: Sequence[str] | None,
        concept: str | None,
        on_problem: Callable[[Problem], None] | None,
    ) -> None:
        self.bound, self.report = bound, report
        self.store, self.sp = bound.store, bound.spaner
        self.batch_size = batch_size
        self.wanted = set(modalities) if modalities else None
        self.concept = concept
        self.on_problem = on_problem
        self.buffers: dict[str, list[_Decoded]] = {}
        self.seen_hashes: set[str] = set()

    # -- problems -----------------------------------------------------------------------
    def problem(self, source: str, text: str, kind: str = "bad") -> None:
        p = Problem(source, text, kind)
        (self.report.unknown if kind == "unknown" else self.report.bad).append(p)
        log.warning("skipped %s", p)
        if self.on_problem:
            self.on_problem(p)

    # -- stage 2: decode ----------------------------------------------------------------
    def decode(self, cand: Candidate) -> _Decoded | None:
        from spaner.encoders.decode import read_bytes
        from spaner.index import content_sha256

        m = cand.modality
        if self.wanted is not None and m not in self.wanted:
            return None
        enc = self.sp.encoders.get(m)
        if enc is None:
            have = ", ".join(sorted(self.sp.encoders))
            self.problem(cand.source, f"the model has no {m} encoder (has: {have})", "unknown")
            return None
        try:
            if cand.text is not None:
                content: bytes | str = cand.text
            elif enc.input_kind == "text":
                data = read_bytes(cand.path, enc.limits, cand.source)
                try:
                    content = data.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise InputError(cand.source, "not UTF-8 text") from None
                if not content:
                    raise InputError(cand.source, "empty text file")
            else:
                content = read_bytes(cand.path, enc.limits, cand.source)
            digest = content_sha256(content)
            if digest in self.seen_hashes or self.store.find_by_hash(digest):
                self.report.skipped_present += 1
                return None
            raw = enc.load(content, cand.source)
        except InputError as exc:
            self.problem(cand.source, exc.problem)
            return None
        except OSError as exc:
            self.problem(cand.source, f"cannot read: {exc.strerror or exc}")
            return None
        self.seen_hashes.add(digest)
        return _Decoded(cand, raw, content, digest)

    # -- stages 3 and 4: encode, write --------------------------------------------------
    def push(self, item: _Decoded) -> int:
        buf = self.buffers.setdefault(item.cand.modality, [])
        buf.append(item)
        return self.flush(item.cand.modality) if len(buf) >= self.batch_size else 0

    def _embed(self, modality: str, items: list[_Decoded]) -> np.ndarray:
        enc = self.sp.encoders[modality]
        batch = enc.forward(enc.preprocess([it.raw for it in items]))
        self.sp.model.eval()
        with torch.no_grad():
            return self.sp.model.embed(modality, batch).float().cpu().numpy()

    def flush(self, modality: str) -> int:
        from spaner.index import Item

        items = self.buffers.pop(modality, [])
        if not items:
            return 0
        with _Timer(self.report, "encode"):
            try:
                vecs = self._embed(modality, items)
            except SpanerError:
                raise
            except Exception:  # one bad input broke the batch: isolate it
                good, rows = [], []
                for it in items:
                    try:
                        rows.append(self._embed(modality, [it]))
                        good.append(it)
                    except Exception as exc:  # noqa: BLE001 - reported per file, run goes on
                        self.problem(it.cand.source, f"encoder failed: {exc}")
                items = good
                if not items:
                    return 0
                vecs = np.concatenate(rows)
        metas = [
            Item(
                modality,
                source=it.cand.source,
                concept=it.cand.concept if it.cand.concept is not None else self.concept,
                extra=it.cand.extra,
                content=it.content,
            )
            for it in items
        ]
        with _Timer(self.report, "write"):
            self.store.add(np.ascontiguousarray(vecs, dtype=np.float32), metas)
        self.report.added += len(items)
        self.report.added_by_modality[modality] = self.report.added_by_modality.get(
            modality, 0
        ) + len(items)
        return len(items)

    def flush_all(self) -> int:
        return sum(self.flush(m) for m in list(self.buffers))


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="item", desc="ingest", disable=not enabled, leave=False)


def ingest_into(
    bound: BoundStore,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestReport:
    """Ingest ``paths`` into an already opened store+model (see :func:`ingest`)."""
    if batch_size <= 0:
        raise SpanerError(f"batch size must be positive, got {batch_size}")
    t_start = time.perf_counter()
    report = IngestReport(
        store=str(bound.store.path), checkpoint=str(bound.checkpoint), created=bound.created
    )
    pipe = _Pipeline(bound, report, batch_size, modalities, concept, on_problem)
    with _Timer(report, "read"):
        found = list(discover(paths))
    # manifest items first: they carry concept and meta, so when a folder holds both a
    # manifest and the files it lists, the manifest's version of each item is the one kept
    cands = sorted(
        (c for c in found if isinstance(c, Candidate)), key=lambda c: "manifest_id" not in c.extra
    )
    for s in found:
        if isinstance(s, Skip):
            pipe.problem(s.source, s.problem, s.kind)
    report.seen = len(cands) + sum(isinstance(s, Skip) for s in found)
    with _progress(len(cands), progress) as bar:
        for cand in cands:
            with _Timer(report, "decode"):
                item = pipe.decode(cand)
            if item is not None:
                pipe.push(item)
            bar.update(1)
        pipe.flush_all()
    bound.store.save()
    report.store_count = bound.store.count()
    report.total_seconds = time.perf_counter() - t_start
    return report


def ingest(
    paths: Sequence[str | Path],
    store_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    profile: str | None = None,
    backend: str = "faiss",
    backend_config: Any = None,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestReport:
    """Ingest files, folders and ``.jsonl`` manifests into the store at ``store_dir``.

    The store is created on first use (from ``checkpoint``, or an untrained ``profile``
    model saved into the store); later runs use the recorded checkpoint and refuse another.
    Returns an :class:`IngestReport`; bad inputs are in ``report.bad``, never raised.
    """
    bound = open_bound_store(
        store_dir,
        checkpoint=checkpoint,
        profile=profile,
        modalities=modalities,
        create=True,
        backend=backend,
        backend_config=backend_config,
        device=device,
    )
    try:
        return ingest_into(
            bound,
            paths,
            batch_size=batch_size,
            modalities=modalities,
            concept=concept,
            progress=progress,
            on_problem=on_problem,
        )
    finally:
        bound.close()
