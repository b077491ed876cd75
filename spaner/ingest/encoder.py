"""Ingest stage 3 (encoder, clip-retrieval's mapper): a job of one modality is decoded
(``Encoder.load``, with the encoder's limits; files the reader left behind are read again
and must still hash the same) and run through the frozen encoder and the SPANER model into
unit vectors. When the batch fails, each input is encoded alone so that one bad input is
reported and the rest go on. With a :class:`~spaner.ingest.transcripts.Transcriber`, the audio
items that encoded are then transcribed (speech only by default) and the transcripts travel
with the vectors to the writer. :class:`EncodeStage` is what runs in this process or in each
Ray actor (the model loaded once per actor)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spaner.errors import InputError, SpanerError
from spaner.model.streaming import (
    Loaded,
    assemble,
    default_workers,
    encode_or_isolate,
    failed_items,
    load_item,
)

from .reader import Job, read_content

log = logging.getLogger(__name__)

__all__ = ["embed", "encode_batch", "EncodeStage", "Prepared", "Result"]


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
    stage, whether the vectors were already written to the index (``indexed``), and the
    transcripts of spoken audio by position (:mod:`.transcripts`)."""

    index: int
    keep: list[int]
    vectors: np.ndarray
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    indexed: bool = False
    transcripts: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields (the vectors travel separately, as float32 bytes)."""
        return {
            "index": self.index,
            "keep": self.keep,
            "dim": int(self.vectors.shape[1]) if self.vectors.size else 0,
            "problems": [list(p) for p in self.problems],
            "seconds": self.seconds,
            "indexed": self.indexed,
            "transcripts": [[i, t] for i, t in sorted(self.transcripts.items())],
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
            transcripts={int(i): str(t) for i, t in d.get("transcripts", [])},
        )


@dataclass
class Prepared:
    """A job decoded (and, without a feature cache, assembled into a batch on the device)."""

    job: Job
    where: list[int]
    loaded: list[Any]
    keys: list[str]
    problems: list[tuple[int, str, str]]
    batch: Any = None
    held: list[int] = field(default_factory=list)  # positions in ``loaded`` that ``batch`` holds
    seconds: float = 0.0
    waves: dict[int, Any] = field(default_factory=dict)  # job position -> clip to transcribe


class EncodeStage:
    """Decode and encode jobs with ``sp`` (a loaded :class:`~spaner.pipeline.Spaner`).

    :meth:`prepare` reads and decodes a job's inputs on a pool of threads and assembles the
    batch on the encoder's device (:mod:`spaner.model.streaming`); :meth:`finish` runs the
    encoder and the aligner. Calling the stage does both; :class:`~spaner.ingest.driver.
    LocalEngine` prepares the next job while this one encodes. ``transcriber`` (a
    :class:`~spaner.ingest.transcripts.Transcriber`, or None) transcribes audio items."""

    def __init__(
        self, sp: Any, cache: Any = None, workers: int | None = None, transcriber: Any = None
    ) -> None:
        self.sp = sp
        self.cache = cache  # a FeatureCache, or None
        self.workers = workers
        self.transcriber = transcriber
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self, device: torch.device) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.workers or default_workers(device), thread_name_prefix="spaner-decode"
                )
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _decode(self, job: Job, i: int, enc: Any) -> tuple[Any, str | None, Any]:
        """``(decoded input, feature-cache key or None, clip to transcribe or None)``."""
        from spaner.index import content_sha256

        source = job.sources[i]
        content = job.contents[i]
        if content is None:  # left for this stage: read again, it must be the same
            content = read_content(job.paths[i], job.texts[i], enc, source)
            if content_sha256(content) != job.digests[i]:
                raise InputError(source, "the file changed while it was being ingested")
        if self.cache is not None:
            from spaner.training.features import content_key

            raw = enc.load(content, source)
            return raw, content_key(enc, content), self._wave(job, i, content, raw)
        loaded = load_item(enc, content, source)
        raw = loaded.value if isinstance(loaded, Loaded) and loaded.kind == "raw" else None
        return loaded, None, self._wave(job, i, content, raw)

    def _wave(self, job: Job, i: int, content: bytes | str, decoded: Any) -> Any:
        t = self.transcriber
        if t is None or not t.wants(job.modality, job.extras[i] if job.extras else {}):
            return None
        return t.wave(content, job.sources[i], decoded)

    def prepare(self, job: Job) -> Prepared:
        t0 = time.perf_counter()
        enc = self.sp.encoders[job.modality]
        pool = self._executor(enc.device)
        futures = [pool.submit(self._decode, job, i, enc) for i in range(len(job.sources))]
        prep = Prepared(job, [], [], [], [])
        for i, fut in enumerate(futures):
            try:
                loaded, key, wave = fut.result()
            except InputError as exc:
                prep.problems.append((i, exc.problem, "decode"))
                continue
            except OSError as exc:
                prep.problems.append((i, f"cannot read: {exc.strerror or exc}", "decode"))
                continue
            prep.where.append(i)
            prep.loaded.append(loaded)
            if wave is not None:
                prep.waves[i] = wave
            if key is not None:
                prep.keys.append(key)
        if self.cache is None and prep.loaded:
            prep.batch, prep.held = assemble(enc, prep.loaded)
            if len(prep.held) < len(prep.loaded):
                for k, exc in failed_items(enc, prep.loaded, prep.held).items():
                    text = exc.problem if isinstance(exc, InputError) else str(exc)
                    prep.problems.append((prep.where[k], text, "decode"))
        prep.seconds = time.perf_counter() - t0
        return prep

    def finish(self, prep: Prepared) -> Result:
        t1 = time.perf_counter()
        failed: list[tuple[int, str, str]] = []
        if self.cache is not None:
            keep, vecs = (
                encode_batch(
                    self.sp,
                    prep.job.modality,
                    prep.loaded,
                    lambda k, text: failed.append((prep.where[k], text, "encode")),
                    prep.keys,
                    self.cache,
                )
                if prep.loaded
                else ([], np.empty((0, 0), np.float32))
            )
            kept = [prep.where[k] for k in keep]
        else:
            kept, vecs = self._encode_held(prep, failed)
        t2 = time.perf_counter()
        seconds = {"decode": prep.seconds, "encode": t2 - t1}
        transcripts = self._transcripts(prep, kept)
        if prep.waves:
            seconds["transcribe"] = time.perf_counter() - t2
        return Result(
            index=prep.job.index,
            keep=kept,
            vectors=vecs,
            problems=sorted(prep.problems + failed),
            seconds=seconds,
            transcripts=transcripts,
        )

    def _transcripts(self, prep: Prepared, kept: list[int]) -> dict[int, str]:
        """The transcripts of the kept clips the transcriber wants (by job position). A failure
        is logged and the items are stored without them."""
        todo = [i for i in kept if i in prep.waves]
        if not todo or self.transcriber is None:
            return {}
        try:
            said = self.transcriber([prep.waves[i] for i in todo])
        except Exception as exc:  # noqa: BLE001 - the items are stored all the same
            log.warning("%d audio items stored without transcripts: %s", len(todo), exc)
            return {}
        return {i: t for i, t in zip(todo, said, strict=True) if t}

    def _encode_held(
        self, prep: Prepared, failed: list[tuple[int, str, str]]
    ) -> tuple[list[int], np.ndarray]:
        if not prep.held:
            return [], np.empty((0, 0), np.float32)
        modality = prep.job.modality
        items = [prep.loaded[k] for k in prep.held]
        where = [prep.where[k] for k in prep.held]
        keep, vecs, errors = encode_or_isolate(
            self.sp.model, modality, self.sp.encoders[modality], prep.batch, items
        )
        failed.extend((where[k], f"encoder failed: {exc}", "encode") for k, exc in errors)
        if vecs is None:
            return [], np.empty((0, 0), np.float32)
        return [where[k] for k in keep], np.ascontiguousarray(vecs, dtype=np.float32)

    def __call__(self, job: Job) -> Result:
        return self.finish(self.prepare(job))
