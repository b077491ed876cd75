"""Choosing an exact engine: by measurement (:class:`AdaptiveChoice`, per batch-size bucket,
re-timing the others now and then), or by a fixed table (:func:`choose_exact_engine`,
:func:`calibrate`: torch vs FAISS); and the device a store's exact search runs on
(:func:`resolve_search_device`)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .float32 import topk_inner_product

__all__ = [
    "AdaptiveChoice",
    "batch_bucket",
    "calibrate",
    "choose_exact_engine",
    "resolve_search_device",
    "SEARCH_DEVICE_ENV",
]

log = logging.getLogger(__name__)
#: environment variable that overrides a store's ``search_device`` on this machine
SEARCH_DEVICE_ENV = "SPANER_SEARCH_DEVICE"

_ENGINE_BY_DEVICE: dict[str, str] = {"cpu": "torch", "cuda": "faiss"}


def choose_exact_engine(
    batch: int, device: str = "cpu", table: dict[str, str] | None = None
) -> str:
    """Which exact engine answers a batch of ``batch`` queries on ``device``.

    ``table`` maps ``"<device>"`` or ``"<device>:<batch>"`` to ``"torch"`` or ``"faiss"``
    (as produced by :func:`calibrate`); the measured default is torch on CPU.
    """
    table = table or {}
    chosen = table.get(f"{device}:{batch}") or table.get(device)
    return chosen or _ENGINE_BY_DEVICE.get(device, "torch")


def resolve_search_device(
    requested: str | None, *, faiss_gpu: bool, use_gpu: bool | None = None
) -> str | None:
    """The torch device exact (Flat) searches run on, or None for the CPU engines.

    ``requested`` (a store's ``search_device``; the environment variable
    ``SPANER_SEARCH_DEVICE`` overrides it): ``"cpu"`` keeps the CPU engines, ``"cuda"`` or
    ``"cuda:N"`` asks for :class:`.device.DeviceExactSearcher` there (the CPU engines, with a
    warning, when torch sees no CUDA device; other device types are not supported: the
    rescoring runs in float64). None: FAISS' GPU build when it sees a GPU (``faiss_gpu``),
    else CUDA through the device engine when torch sees a device, unless ``use_gpu`` is
    False."""
    requested = os.environ.get(SEARCH_DEVICE_ENV) or requested
    if requested is None:
        if faiss_gpu or use_gpu is False or not torch.cuda.is_available():
            return None
        return "cuda"
    dev = torch.device(requested)
    if dev.type == "cuda" and torch.cuda.is_available():
        return str(dev)
    if dev.type != "cpu":
        why = (
            "torch sees no CUDA device" if dev.type == "cuda" else "only cpu and cuda are supported"
        )
        log.warning("search_device %r: %s; searching on the CPU", requested, why)
    return None


def calibrate(
    matrix: np.ndarray,
    faiss_search: Callable[[np.ndarray, int], object],
    batches: tuple[int, ...] = (1, 16, 64),
    repeats: int = 3,
) -> dict[str, str]:
    """Time torch and FAISS exact search on ``matrix`` per batch size; return the faster map."""
    rng = np.random.default_rng(0)
    table: dict[str, str] = {}
    for b in batches:
        q = matrix[rng.integers(0, len(matrix), b)]
        times = {}
        for name, fn in (
            ("torch", lambda q: topk_inner_product(matrix, q, 10)),
            ("faiss", lambda q: faiss_search(q, 10)),
        ):
            fn(q)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(q)
            times[name] = time.perf_counter() - t0
        table[f"cpu:{b}"] = min(times, key=times.__getitem__)
    return table


class _KeyState:
    """What :class:`AdaptiveChoice` knows about one key."""

    __slots__ = ("names", "times", "medians", "warm", "calls", "next", "explored", "best")

    def __init__(self, names: tuple[str, ...], window: int, explore_every: int) -> None:
        self.names = names
        self.times: dict[str, deque[float]] = {n: deque(maxlen=window) for n in names}
        self.medians: dict[str, float] = dict.fromkeys(names, math.inf)
        self.warm: set[str] = set()
        self.calls = 0
        self.next = explore_every  # call number of the next exploration
        self.explored = 0
        self.best: str | None = None  # set once every option has its samples


class AdaptiveChoice:
    """Pick, per key (a batch-size bucket), the fastest of a few interchangeable ways of doing
    the same call, by measurement, and keep measuring.

    The first calls of a key take the options in turn, each once untimed (a first call may
    build what the option keeps) and then until each has ``min_samples`` timings
    (real calls, so the timings include what a call pays on this machine between other work,
    such as waking idle OpenMP threads); afterwards the option with the best recent time per query
    (median of its last ``window`` timings) runs, and about every ``explore_every``-th call
    another option runs instead (round robin; an option r times slower than the best only
    every ``r * explore_every`` calls), so the choice follows load changes on a shared
    machine. Options must return the same results: only their speed differs.

    :meth:`run` takes thunks, :meth:`run_made` a function that makes only the option it
    runs; both are :meth:`pick`, the call, and :meth:`record`.
    """

    def __init__(self, window: int = 5, explore_every: int = 32, min_samples: int = 2) -> None:
        self.window = window
        self.explore_every = explore_every
        self.min_samples = min_samples
        self._state: dict[int, _KeyState] = {}

    @property
    def choices(self) -> dict[int, str]:
        """Key -> the option currently preferred there."""
        return {key: min(st.medians, key=st.medians.__getitem__) for key, st in self._state.items()}

    def timings(self, key: int) -> dict[str, list[float]]:
        """Recent seconds-per-query timings of each option for ``key``."""
        st = self._state.get(key)
        return {n: list(t) for n, t in st.times.items()} if st else {}

    def clear(self) -> None:
        self._state.clear()

    def pick(self, key: int, names: tuple[str, ...]) -> tuple[str, bool]:
        """The option to run for ``key`` now, and whether to time it (then pass the time to
        :meth:`record`)."""
        st = self._state.get(key)
        if st is None or st.names != names:
            st = self._state[key] = _KeyState(names, self.window, self.explore_every)
        st.calls += 1
        best = st.best
        if best is not None:
            if not self.explore_every or st.calls < st.next or len(names) < 2:
                return best, True  # the steady state: nothing else to decide
            others = [e for e in names if e != best]
            name = others[st.explored % len(others)]
            st.explored += 1
            # an option r times slower is re-timed r times less often (at most 16x less):
            # exploring then costs under 1/explore_every of the best option's time
            ratio = st.medians[name] / max(st.medians[best], 1e-12)
            st.next = st.calls + int(self.explore_every * min(max(ratio, 1.0), 16.0))
            return name, True
        fewest = min(names, key=lambda e: (e in st.warm, len(st.times[e])))
        if fewest not in st.warm:
            # an option's first call is not timed: it may build what it keeps (a copy of the
            # matrix, a thread pool), which later calls do not pay
            st.warm.add(fewest)
            return fewest, False
        # still sampling: one option per call, in turn, timed in real calls (a loop of
        # back-to-back runs would hide what a call pays to wake idle OpenMP threads)
        st.next = st.calls + self.explore_every
        return fewest, True

    def record(self, key: int, name: str, seconds_per_query: float) -> None:
        st = self._state[key]
        t = st.times[name]
        t.append(seconds_per_query)
        srt = sorted(t)  # the median of at most ``window`` values, without statistics' overhead
        m = len(srt) // 2
        st.medians[name] = srt[m] if len(srt) % 2 else (srt[m - 1] + srt[m]) / 2
        if st.best is not None or all(len(v) >= self.min_samples for v in st.times.values()):
            st.best = min(st.medians, key=st.medians.__getitem__)

    def run(self, key: int, runs: dict[str, Callable[[], Any]], per: int = 1) -> Any:
        """Run one of ``runs`` (name -> thunk) for ``key``; ``per`` = queries in the call."""
        return self.run_made(key, tuple(runs), runs.__getitem__, per)

    def run_made(
        self, key: int, names: tuple[str, ...], make: Callable[[str], Callable[[], Any]], per: int
    ) -> Any:
        """Run the option of ``names`` that :meth:`pick` chooses, as ``make(name)()``."""
        name, timed = self.pick(key, names)
        run = make(name)
        if not timed or per <= 0:
            return run()
        t0 = time.perf_counter()
        out = run()
        self.record(key, name, (time.perf_counter() - t0) / per)
        return out


def batch_bucket(batch: int) -> int:
    return min(1 << (batch - 1).bit_length(), 1024)
