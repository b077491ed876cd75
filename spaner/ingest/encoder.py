"""Ingest stage 3 (encoder, clip-retrieval's mapper): a job of one modality is decoded
(``Encoder.load``, with the encoder's limits; files the reader left behind are read again
and must still hash the same) and run through the frozen encoder and the SPANER model into
unit vectors. When the batch fails, each input is encoded alone so that one bad input is
reported and the rest go on. :class:`EncodeStage` is what runs in this process or in each
Ray actor (the model loaded once per actor)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spaner.errors import InputError, SpanerError

from .reader import Job, read_content

__all__ = ["embed", "encode_batch", "EncodeStage", "Result"]


def _tokens(enc: Any, raws: list[Any], keys: list[str] | None, cache: Any) -> Any:
    """The frozen features of ``raws``: from the feature cache where ``keys`` hit (the demo
    indexes what it has just trained on), the encoder for the rest (then cached)."""
    if cache is None or keys is None:
        return enc.forward(enc.preprocess(raws))
    from spaner.encoders.base import TokenBatch

    items = [cache.get(enc, k) for k in keys]
    miss = [i for i, it in enumerate(items) if it is None]
    if miss:
        fresh = enc.forward(enc.preprocess([raws[i] for i in miss])).split()
        for i, item in zip(miss, fresh, strict=True):
            cache.put(enc, keys[i], item)
            items[i] = item
    return TokenBatch.collate(items)


def embed(
    sp: Any,
    modality: str,
    raws: list[Any],
    keys: list[str] | None = None,
    cache: Any = None,
) -> np.ndarray:
    """Unit vectors (float32, ``[len(raws), dim]``) of decoded inputs of ``modality``;
    ``cache`` (a :class:`~spaner.training.features.FeatureCache`) with ``keys`` (their content keys)
    reuses frozen features encoded before."""
    enc = sp.encoders[modality]
    batch = _tokens(enc, raws, keys, cache)
    sp.model.eval()
    with torch.no_grad():
        return sp.model.embed(modality, batch).float().cpu().numpy()


def encode_batch(
    sp: Any,
    modality: str,
    raws: list[Any],
    problem: Callable[[int, str], None],
    keys: list[str] | None = None,
    cache: Any = None,
) -> tuple[list[int], np.ndarray]:
    """The positions in ``raws`` that encoded, and their vectors (C-contiguous float32).
    A failing batch is retried input by input; each input that fails alone is reported
    through ``problem(position, text)``. Errors of the model itself (SpanerError)
    propagate."""
    try:
        vecs = embed(sp, modality, raws, keys, cache)
        keep = list(range(len(raws)))
    except SpanerError:
        raise
    except Exception:  # one bad input broke the batch: isolate it
        keep, rows = [], []
        for i, raw in enumerate(raws):
            try:
                one = [keys[i]] if keys is not None else None
                rows.append(embed(sp, modality, [raw], one, cache))
                keep.append(i)
            except Exception as exc:  # noqa: BLE001 - reported per file, run goes on
                problem(i, f"encoder failed: {exc}")
        if not keep:
            return [], np.empty((0, 0), np.float32)
        vecs = np.concatenate(rows)
    return keep, np.ascontiguousarray(vecs, dtype=np.float32)


@dataclass
class Result:
    """What the encoder stage made of a job: the positions that encoded and their vectors,
    problems as ``(position, text, stage)`` (stage ``decode`` or ``encode``), seconds per
    stage, and whether the vectors were already written to the index (``indexed``)."""

    index: int
    keep: list[int]
    vectors: np.ndarray
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    indexed: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields (the vectors travel separately, as float32 bytes)."""
        return {
            "index": self.index,
            "keep": self.keep,
            "dim": int(self.vectors.shape[1]) if self.vectors.size else 0,
            "problems": [list(p) for p in self.problems],
            "seconds": self.seconds,
            "indexed": self.indexed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], vectors: bytes) -> Result:
        vecs = np.frombuffer(vectors, dtype=np.float32)
        vecs = vecs.reshape(len(d["keep"]), d["dim"]) if d["keep"] else np.empty((0, 0), np.float32)
        return cls(
            index=d["index"],
            keep=list(d["keep"]),
            vectors=vecs,
            problems=[(int(p[0]), str(p[1]), str(p[2])) for p in d["problems"]],
            seconds=dict(d["seconds"]),
            indexed=bool(d["indexed"]),
        )


class EncodeStage:
    """Decode and encode jobs with ``sp`` (a loaded :class:`~spaner.pipeline.Spaner`)."""

    def __init__(self, sp: Any, cache: Any = None) -> None:
        self.sp = sp
        self.cache = cache  # a FeatureCache, or None

    def __call__(self, job: Job) -> Result:
        from spaner.index import content_sha256
        from spaner.training.features import content_key

        t0 = time.perf_counter()
        enc = self.sp.encoders[job.modality]
        raws, where, problems, keys = [], [], [], []
        for i, source in enumerate(job.sources):
            try:
                content = job.contents[i]
                if content is None:  # left for this stage: read again, it must be the same
                    content = read_content(job.paths[i], job.texts[i], enc, source)
                    if content_sha256(content) != job.digests[i]:
                        raise InputError(source, "the file changed while it was being ingested")
                raws.append(enc.load(content, source))
                where.append(i)
                if self.cache is not None:
                    keys.append(content_key(enc, content))
            except InputError as exc:
                problems.append((i, exc.problem, "decode"))
            except OSError as exc:
                problems.append((i, f"cannot read: {exc.strerror or exc}", "decode"))
        t1 = time.perf_counter()
        failed: list[tuple[int, str, str]] = []
        keep, vecs = (
            encode_batch(
                self.sp,
                job.modality,
                raws,
                lambda k, text: failed.append((where[k], text, "encode")),
                keys if self.cache is not None else None,
                self.cache,
            )
            if raws
            else ([], np.empty((0, 0), np.float32))
        )
        t2 = time.perf_counter()
        return Result(
            index=job.index,
            keep=[where[k] for k in keep],
            vectors=vecs,
            problems=sorted(problems + failed),
            seconds={"decode": t1 - t0, "encode": t2 - t1},
        )
