"""The streaming embed path: raw inputs to unit vectors with the device kept busy.

Three things overlap, so that neither the CPU nor the device waits on the other:

* **reading and decoding** run on a pool of worker threads (Pillow, libsndfile and file I/O
  release the GIL), ``prefetch`` batches ahead of the device;
* **assembling a batch** (stacking, pinning, the copy to the device, resize and normalise as
  tensor operations, JPEG decoding on a CUDA device: :mod:`spaner.encoders.pixels`) runs on a
  producer thread, on its own CUDA stream;
* **encoding** (the frozen tower and the aligner, both on the device) runs on the calling
  thread, which takes the vectors back to the CPU batch by batch.

Inputs are consumed lazily and at most ``prefetch + 1`` batches are held, so a million files
stream through in bounded memory. One bad input never drops the others: an input that fails to
decode is reported with its position, and when a whole batch fails in the encoder, each of its
inputs is encoded alone. :meth:`spaner.Spaner.embed`, ``spaner ingest``/``embed`` and the Ray
actors (through :class:`spaner.ingest.encoder.EncodeStage`) all run this path.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spaner.encoders.base import Encoder, TokenBatch
from spaner.encoders.decode import RawInput, load_image, read_bytes
from spaner.encoders.pixels import (
    decode_jpegs,
    gpu_jpeg_available,
    jpeg_header,
    to_uint8,
    transform,
)
from spaner.errors import InputError, SpanerError

__all__ = [
    "StreamingEmbedder",
    "Embedded",
    "Loaded",
    "load_item",
    "assemble",
    "encode_assembled",
    "encode_or_isolate",
    "auto_batch_size",
    "default_workers",
]

log = logging.getLogger(__name__)

#: the largest batch :func:`auto_batch_size` picks (beyond it throughput no longer grows)
MAX_AUTO_BATCH = 1024
#: the batch :func:`auto_batch_size` measured, per (encoder, model) object
_AUTO_BATCH: dict[tuple[int, int], int] = {}


@dataclass
class Loaded:
    """One input ready for assembly: ``kind`` ``jpeg`` (bytes for the device decoder),
    ``pixels`` (``[3, H, W]`` uint8), ``tensor`` (the encoder's own preprocessing of this one
    input, ``[1, ...]``) or ``raw`` (what :meth:`Encoder.load` returned)."""

    kind: str
    value: Any
    name: str


@dataclass
class Embedded:
    """One batch out of the stream: the input positions that embedded, their unit vectors
    (``[len(positions), dim]`` float32) and the inputs that failed, as ``(position, error)``."""

    positions: list[int]
    vectors: np.ndarray
    problems: list[tuple[int, Exception]] = field(default_factory=list)


def _done(fn: Any, *args: Any) -> Future:
    """``fn(*args)`` run now, as a finished future (its result or its exception)."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - read back through fut.result()
        fut.set_exception(exc)
    return fut


def default_workers(device: torch.device) -> int:
    """Decoding threads: every core (their time goes to file reads and C code that releases
    the GIL; on a CUDA device they read files and headers for nvJPEG)."""
    return max(1, min(32, os.cpu_count() or 1))


def _label(source: RawInput, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, bytes) else str(source)


def jpeg_decoder(device: torch.device) -> str:
    """Where JPEG files are decoded for a device-side pixel plan: ``device`` (nvJPEG, on the
    producer thread) or ``cpu`` (libjpeg-turbo through torchvision, on the worker threads,
    without Pillow's copies). ``SPANER_JPEG_DECODE`` chooses; the default is the one that
    measured faster (BENCHMARKS.md, "GPU")."""
    choice = os.environ.get("SPANER_JPEG_DECODE", "device").strip().lower()
    if choice not in ("cpu", "device"):
        raise ValueError(f"SPANER_JPEG_DECODE must be cpu or device, got {choice!r}")
    return "device" if choice == "device" and gpu_jpeg_available(device) else "cpu"


def _cpu_jpeg(data: bytes) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
        )
    except Exception:  # noqa: BLE001 - Pillow decodes it and names the problem
        return None


def load_item(enc: Encoder, source: RawInput, name: str | None = None) -> Loaded:
    """Read and decode one input for ``enc`` (a worker thread's part). Raises InputError."""
    label = _label(source, name)
    plan, device = enc.pixel_plan, enc.device
    if plan is not None and device.type != "cpu":
        data = read_bytes(source, enc.limits, label)
        if jpeg_header(data, enc.limits, label):
            if jpeg_decoder(device) == "device":
                return Loaded("jpeg", data, label)
            pixels = _cpu_jpeg(data)
            if pixels is not None:
                return Loaded("pixels", pixels, label)
        return Loaded("pixels", to_uint8(load_image(data, enc.limits, label)), label)
    raw = enc.load(source, name)
    if enc.item_preprocess:
        return Loaded("tensor", enc.preprocess([raw]).cpu(), label)
    return Loaded("raw", raw, label)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _pixels_to_device(pixels: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``[3, H, W]`` uint8 images on ``device``: images of one shape go as one pinned stack
    (one copy), others one by one."""
    if device.type != "cuda":
        return [p.to(device) for p in pixels]
    out: list[torch.Tensor | None] = [None] * len(pixels)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(pixels):
        groups.setdefault(tuple(p.shape), []).append(i)
    for shape, idx in groups.items():
        buf = torch.empty((len(idx), *shape), dtype=torch.uint8, pin_memory=True)
        torch.stack([pixels[i] for i in idx], out=buf)
        moved = buf.to(device, non_blocking=True)
        for k, i in enumerate(idx):
            out[i] = moved[k]
    return out  # type: ignore[return-value]


def assemble(enc: Encoder, items: Sequence[Loaded]) -> tuple[Any, list[int]]:
    """The encoder's batch on its device for ``items``, and the positions (within ``items``)
    it holds: a JPEG the device decoder refused is decoded by Pillow instead, and one that
    Pillow refuses too is left out (its InputError is raised by :func:`failed_items`)."""
    device = enc.device
    kinds = {it.kind for it in items}
    if kinds <= {"jpeg", "pixels"} and enc.pixel_plan is not None:
        jpeg = [i for i, it in enumerate(items) if it.kind == "jpeg"]
        images: list[torch.Tensor | None] = [None] * len(items)
        if jpeg:
            decoded = decode_jpegs([items[i].value for i in jpeg], device)
            for i, img in zip(jpeg, decoded, strict=True):
                images[i] = img
        host: dict[int, torch.Tensor] = {}
        for i, it in enumerate(items):
            if images[i] is not None:
                continue
            try:
                host[i] = it.value if it.kind == "pixels" else _pil_pixels(enc, it)
            except InputError:
                continue
        if host:
            for i, img in zip(host, _pixels_to_device(list(host.values()), device), strict=True):
                images[i] = img
        keep = [i for i, img in enumerate(images) if img is not None]
        if not keep:
            return None, []
        return transform([images[i] for i in keep], enc.pixel_plan), keep  # type: ignore[misc]
    if kinds == {"tensor"}:
        return _to_device(torch.cat([it.value for it in items]), device), list(range(len(items)))
    return enc.preprocess([it.value for it in items]), list(range(len(items)))


def _pil_pixels(enc: Encoder, item: Loaded) -> torch.Tensor:
    return to_uint8(load_image(item.value, enc.limits, item.name))


def failed_items(
    enc: Encoder, items: Sequence[Loaded], keep: Sequence[int]
) -> dict[int, Exception]:
    """The InputError of each item :func:`assemble` left out (Pillow names the problem)."""
    out: dict[int, Exception] = {}
    kept = set(keep)
    for i, it in enumerate(items):
        if i not in kept:
            try:
                _pil_pixels(enc, it)
                out[i] = InputError(it.name, "the image could not be decoded")
            except InputError as exc:
                out[i] = exc
    return out


def encode_assembled(model: Any, modality: str, enc: Encoder, batch: Any) -> torch.Tensor:
    """Unit vectors (float32, on the CPU) of an assembled batch: the frozen tower and the aligner
    on the encoder's device."""
    feats: TokenBatch = enc.forward(batch, to_cpu=False)
    with torch.no_grad():
        return model.embed(modality, feats).float().cpu()


def encode_or_isolate(
    model: Any, modality: str, enc: Encoder, batch: Any, items: Sequence[Loaded]
) -> tuple[list[int], np.ndarray | None, list[tuple[int, Exception]]]:
    """Vectors of ``batch`` (assembled from ``items``); when the batch fails in the encoder,
    each item is assembled and encoded alone so that one bad input drops only itself. Returns
    the indices into ``items`` that encoded, their vectors (None when none did) and the
    failures as ``(index, error)``. Errors of the model itself (SpanerError) propagate."""
    try:
        vecs = encode_assembled(model, modality, enc, batch).numpy()
        return list(range(len(items))), vecs, []
    except SpanerError:
        raise
    except Exception:  # noqa: BLE001 - one input broke the batch: isolate it
        pass
    keep, rows, failed = [], [], []
    for k, item in enumerate(items):
        try:
            one, _ = assemble(enc, [item])
            rows.append(encode_assembled(model, modality, enc, one).numpy())
            keep.append(k)
        except Exception as exc:  # noqa: BLE001 - reported per input, the rest go on
            failed.append((k, exc))
    return keep, (np.concatenate(rows) if rows else None), failed


def auto_batch_size(enc: Encoder, model: Any, modality: str, requested: int | None) -> int:
    """``requested``, or on a CUDA device the batch that fits half the free memory (measured
    with a probe batch; at most :data:`MAX_AUTO_BATCH`), or 32 on the CPU."""
    if requested:
        return int(requested)
    device = enc.device
    if device.type != "cuda" or enc.pixel_plan is None:
        return 256 if device.type == "cuda" else 32
    known = _AUTO_BATCH.get((id(enc), id(model)))
    if known is not None:
        return known
    size, probe = enc.pixel_plan.size, 16
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.zeros(probe, 3, size, size, device=device)
    encode_assembled(model, modality, enc, x)
    per_item = max((torch.cuda.max_memory_allocated(device) - base) / probe, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(0.5 * free / per_item)
    batch = 1 << max(4, min(fits, MAX_AUTO_BATCH).bit_length() - 1)
    log.info(
        "batch size %d (%.1f MiB per image, %.1f GiB free)", batch, per_item / 2**20, free / 2**30
    )
    _AUTO_BATCH[(id(enc), id(model))] = batch
    return batch


class StreamingEmbedder:
    """Embed a stream of raw inputs of one modality with an encoder and a SPANER model."""

    def __init__(
        self,
        enc: Encoder,
        model: Any,
        modality: str,
        batch_size: int | None = None,
        workers: int | None = None,
        prefetch: int = 2,
        assemblers: int | None = None,
        switch_interval: float | None = None,
    ) -> None:
        """``workers`` decoding threads; ``assemblers`` threads that build batches on the
        device in parallel (4 on CUDA, 1 on the CPU); ``prefetch`` batches ready ahead;
        ``switch_interval``: Python's thread switch interval (seconds) while streaming, None to
        leave it as it is. The encoder launches a few hundred kernels per batch, each after
        taking the GIL back from the decoding threads, which at the default 5 ms can wait;
        a shorter interval is an option to measure on your machine (``benchmarks/device.py``
        runs one), not a default."""
        self.enc, self.model, self.modality = enc, model, modality
        self.batch_size = auto_batch_size(enc, model, modality, batch_size)
        self.workers = workers or default_workers(enc.device)
        self.prefetch = max(1, prefetch)
        self.assemblers = assemblers or (4 if enc.device.type == "cuda" else 1)
        self.switch_interval = switch_interval

    def stream(
        self, values: Iterable[RawInput], names: Iterable[str | None] | None = None
    ) -> Iterator[Embedded]:
        """Batches of vectors in input order (see :class:`Embedded`)."""
        named = (
            zip(values, names, strict=True) if names is not None else ((v, None) for v in values)
        )
        if isinstance(values, Sequence) and len(values) <= self.batch_size:
            # one batch (a search query, an upload): no threads to start and hand over to
            self.model.eval()
            pairs = list(named)
            futs = [_done(load_item, self.enc, v, n) for v, n in pairs]
            yield self._encode(*self._assemble(list(range(len(pairs))), futs, None))
            return
        out: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(named, out, stop), name="spaner-stream", daemon=True
        )
        self.model.eval()
        saved_interval = sys.getswitchinterval()
        if self.switch_interval:
            sys.setswitchinterval(self.switch_interval)
        producer.start()
        try:
            while True:
                got = out.get()
                if got is None:
                    break
                if isinstance(got, BaseException):
                    raise got
                yield self._encode(*got)
        finally:
            stop.set()
            if self.switch_interval:
                sys.setswitchinterval(saved_interval)
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    out.get_nowait()
                except queue.Empty:
                    producer.join(timeout=0.05)

    def _chunks(
        self, named: Iterator[tuple[RawInput, str | None]]
    ) -> Iterator[list[tuple[int, RawInput, str | None]]]:
        chunk: list[tuple[int, RawInput, str | None]] = []
        for pos, (value, name) in enumerate(named):
            chunk.append((pos, value, name))
            if len(chunk) == self.batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _produce(
        self, named: Iterator[tuple[RawInput, str | None]], out: queue.Queue, stop: threading.Event
    ) -> None:
        cuda = self.enc.device.type == "cuda"
        streams: queue.Queue[Any] = queue.Queue()
        for _ in range(self.assemblers):
            streams.put(torch.cuda.Stream(self.enc.device) if cuda else None)
        pending: deque[Future] = deque()
        try:
            with (
                ThreadPoolExecutor(self.workers, thread_name_prefix="spaner-decode") as pool,
                ThreadPoolExecutor(self.assemblers, thread_name_prefix="spaner-batch") as batches,
            ):
                chunks = self._chunks(iter(named))
                while not stop.is_set():
                    # keep the decoders and the assemblers busy ahead of the device
                    while len(pending) < self.assemblers + self.prefetch:
                        chunk = next(chunks, None)
                        if chunk is None:
                            break
                        futs = [pool.submit(load_item, self.enc, v, n) for _, v, n in chunk]
                        positions = [p for p, _, _ in chunk]
                        pending.append(batches.submit(self._assemble_on, positions, futs, streams))
                    if not pending:
                        break
                    item = pending.popleft().result()
                    while not stop.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            out.put(exc)
            return
        out.put(None)

    def _assemble_on(self, positions: list[int], futs: list[Future], streams: queue.Queue) -> tuple:
        stream = streams.get()
        try:
            return self._assemble(positions, futs, stream)
        finally:
            streams.put(stream)

    def _assemble(self, positions: list[int], futs: list[Future], stream: Any) -> tuple:
        items, where, problems = [], [], []
        for pos, fut in zip(positions, futs, strict=True):
            try:
                items.append(fut.result())
                where.append(pos)
            except SpanerError as exc:
                if not isinstance(exc, InputError):
                    raise
                problems.append((pos, exc))
            except OSError as exc:
                problems.append((pos, InputError(str(pos), f"cannot read: {exc.strerror or exc}")))
        if not items:
            return None, [], items, problems
        if stream is not None:
            with torch.cuda.stream(stream):
                batch, keep = assemble(self.enc, items)
            stream.synchronize()
        else:
            batch, keep = assemble(self.enc, items)
        if len(keep) < len(items):
            for i, exc in failed_items(self.enc, items, keep).items():
                problems.append((where[i], exc))
        return batch, [where[i] for i in keep], [items[i] for i in keep], problems

    def _encode(
        self, batch: Any, positions: list[int], items: list[Loaded], problems: list
    ) -> Embedded:
        dim = self.model.dim
        if batch is None or not positions:
            return Embedded(
                [], np.zeros((0, dim), np.float32), sorted(problems, key=lambda p: p[0])
            )
        keep, vecs, failed = encode_or_isolate(self.model, self.modality, self.enc, batch, items)
        problems.extend((positions[k], exc) for k, exc in failed)
        vecs = vecs if vecs is not None else np.zeros((0, dim), np.float32)
        return Embedded([positions[k] for k in keep], vecs, sorted(problems, key=lambda p: p[0]))
