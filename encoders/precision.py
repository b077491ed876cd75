"""Encoder precision: which precision runs where, and one bf16 copy of a frozen module's weights.

Why a copy: ``torch.autocast`` keeps its bf16 cast of a weight between calls only for leaf
tensors that require grad. Frozen encoders set ``requires_grad_(False)``, so under plain
autocast every weight was cast again on every call (and some 3-D ``linear`` calls fell onto a
``bmm`` path that copied the weight once per batch item): bf16 ran slower than fp32.
:class:`FrozenWeights` instead converts a module's floating-point parameters and buffers to
bf16 once and keeps them there while bf16 runs. The original tensors are kept beside them only
while some encoder sharing the module still runs fp32, or when the encoder cannot rebuild them
(see :meth:`spaner.encoders.Encoder.fresh_module`); otherwise they are released and rebuilt
exactly when fp32 is asked for again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "FrozenWeights",
    "bf16_faster",
    "bf16_supported",
    "cast_floats",
    "resolve_precision",
]

log = logging.getLogger(__name__)

#: ``auto``: bf16 where it is faster than fp32 (see :func:`bf16_faster`), else fp32;
#: ``SPANER_PRECISION`` overrides ``auto``. ``bf16``/``fp32`` force a precision.
PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(vendor_id, flags) of the first CPU in /proc/cpuinfo; empty where there is none."""
    vendor, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return vendor, flags


def _cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """True when ``device`` runs bf16 matmuls natively (AMX / AVX-512-BF16 CPUs, bf16-capable GPUs)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if _cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        return True
    try:  # no /proc/cpuinfo (macOS, Windows): ask oneDNN through torch
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except Exception:
        return False


def bf16_faster(device: str | torch.device = "cpu") -> bool:
    """True where bf16 encoders run faster than fp32, so ``auto`` picks bf16.

    * CUDA devices with bf16: yes.
    * CPUs with AMX (``amx_bf16``): yes, the tile unit multiplies bf16 many times faster than fp32.
    * AMD CPUs with AVX-512-BF16 (Zen 4 and later): yes; issue 14 measured 3.2x for ViT-B-32
      with bf16 weights.
    * Intel CPUs with AVX-512-BF16 but no AMX (Cooper Lake, or a VM that hides AMX): no.
      ``VDPBF16PS`` issues on one port where fp32 FMAs issue on two, so the peak is the same
      and oneDNN's bf16 GEMM measured 0.5x MKL's fp32 GEMM (Xeon family 6 model 207 VM).
    * Anything else: no.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bf16_supported(device)
    if device.type != "cpu":
        return False
    vendor, flags = _cpuinfo()
    if "amx_bf16" in flags:
        return True
    return vendor == "AuthenticAMD" and "avx512_bf16" in flags


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """``"bf16"`` or ``"fp32"`` for an encoder option value (see :data:`PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        env = os.environ.get("SPANER_PRECISION", "auto").strip().lower() or "auto"
        if env not in PRECISIONS:
            raise ValueError(
                f"SPANER_PRECISION must be one of {', '.join(PRECISIONS)}, got {env!r}"
            )
        precision = env
    if precision == "auto":
        return "bf16" if bf16_faster(device) else "fp32"
    return precision


def cast_floats(batch: Any, dtype: torch.dtype) -> Any:
    """``batch`` with every floating-point tensor in it (through tuples, lists, dicts) cast to ``dtype``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, tuple):
        items = [cast_floats(b, dtype) for b in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    if isinstance(batch, list):
        return [cast_floats(b, dtype) for b in batch]
    if isinstance(batch, dict):
        return type(batch)((k, cast_floats(v, dtype)) for k, v in batch.items())
    return batch


#: Where a floating tensor lives: (qualified name, owning module, key, is_parameter).
_Slot = tuple[str, torch.nn.Module, str, bool]
#: ``None`` stands for the module's own dtypes (as loaded, normally float32).
_Key = torch.dtype | None


def _float_slots(module: torch.nn.Module) -> list[_Slot]:
    """Every floating-point parameter and buffer of ``module``, each tensor once (tied ones too)."""
    slots: list[_Slot] = []
    seen: set[int] = set()
    for prefix, mod in module.named_modules():
        for is_param, table in ((True, mod._parameters), (False, mod._buffers)):
            for key, t in table.items():
                if t is None or not t.is_floating_point() or id(t) in seen:
                    continue
                seen.add(id(t))
                slots.append((f"{prefix}.{key}" if prefix else key, mod, key, is_param))
    return slots


def _get(slot: _Slot) -> torch.Tensor:
    _, mod, key, is_param = slot
    return (mod._parameters if is_param else mod._buffers)[key].data  # type: ignore[union-attr]


def _param(slot: _Slot) -> torch.nn.Parameter:
    return slot[1]._parameters[slot[2]]  # type: ignore[return-value]


def _put(slot: _Slot, t: torch.Tensor) -> None:
    _, mod, key, is_param = slot
    if is_param:
        mod._parameters[key].data = t  # type: ignore[union-attr]
    else:
        mod._buffers[key] = t


class FrozenWeights:
    """The floating-point weights of one frozen module, held in one dtype at a time.

    One instance per module (:meth:`of`), shared by every encoder that runs the module (the
    open_clip image and text towers share one model). :meth:`use` switches the module to the
    dtype a forward needs and keeps it there while the forward runs; forwards in the same dtype
    run concurrently, a switch waits for the running ones to finish. A copy is made once per
    dtype and kept only while a live encoder of the module resolves to that dtype.
    """

    _registry: weakref.WeakKeyDictionary[torch.nn.Module, FrozenWeights] = (
        weakref.WeakKeyDictionary()
    )
    _registry_lock = threading.Lock()

    def __init__(self, module: torch.nn.Module) -> None:
        self._module = weakref.ref(module)
        self._slots = _float_slots(module)
        self._grad_flags = [_param(s).requires_grad if s[3] else False for s in self._slots]
        self.current: _Key = None
        #: Copies not in the module now, by dtype key, aligned with the slots.
        self._copies: dict[_Key, list[torch.Tensor]] = {}
        self._users: weakref.WeakSet[Any] = weakref.WeakSet()
        self._active = 0
        self._cond = threading.Condition()

    @classmethod
    def of(cls, module: torch.nn.Module, create: bool = True) -> FrozenWeights | None:
        """The instance for ``module`` (made on first use unless ``create`` is False)."""
        with cls._registry_lock:
            fw = cls._registry.get(module)
            if fw is None and create:
                fw = cls._registry[module] = cls(module)
            return fw

    def attach(self, user: Any) -> None:
        """Register an encoder that runs this module (held weakly). The originals are released
        only while some registered encoder can rebuild them (its ``can_rebuild`` is True and
        its ``fresh_module(module)`` returns the module rebuilt with its original weights)."""
        with self._cond:
            self._users.add(user)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the weights are in now (None: as loaded)."""
        return self.current

    def stored(self) -> list[_Key]:
        """The dtype keys held in memory: the module's own and the copies beside it."""
        with self._cond:
            return [self.current, *self._copies]

    @contextlib.contextmanager
    def use(self, dtype: torch.dtype | None, user: Any = None) -> Iterator[torch.nn.Module]:
        """Hold the module in ``dtype`` (None: as loaded) for the duration of the block."""
        module = self._module()
        if module is None:  # pragma: no cover - the caller holds the module
            raise RuntimeError("module was garbage-collected")
        with self._cond:
            while self._active and self.current != dtype:
                self._cond.wait()
            if self.current != dtype:
                self._switch(dtype, user)
            self._active += 1
        try:
            yield module
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def to(self, device: torch.device) -> None:
        """Move the module and every copy kept beside it to ``device``."""
        module = self._module()
        with self._cond:
            while self._active:
                self._cond.wait()
            if module is not None:
                module.to(device)
            for key, tensors in self._copies.items():
                self._copies[key] = [t.to(device) for t in tensors]

    # -- internals (called with the condition held) ---------------------------------------
    def _needed(self, user: Any) -> set[_Key]:
        keys: set[_Key] = set()
        users = [u for u in [*self._users, user] if u is not None]
        for u in users:
            keys.add(torch.bfloat16 if u.compute_precision == "bf16" else None)
        if not any(getattr(u, "can_rebuild", False) for u in users):
            keys.add(None)  # the originals cannot be rebuilt: keep them
        return keys

    def _switch(self, target: _Key, user: Any) -> None:
        old = self.current
        now = [_get(s) for s in self._slots]
        if target in self._copies:
            tensors = self._copies.pop(target)
        elif target is None:
            tensors = self._rebuilt()
        else:
            if old is not None:  # make the copy from the originals, never from another copy
                raise RuntimeError(f"no original weights to cast to {target}")  # pragma: no cover
            tensors = [t.to(target) for t in now]
        for slot, t, flag in zip(self._slots, tensors, self._grad_flags, strict=True):
            _put(slot, t)
            if slot[3]:
                # aten's matmul folds a non-contiguous 3-D input into one GEMM only when the
                # weight requires grad; for a frozen weight it runs a batched GEMM over the weight
                # expanded per row, which bf16 copies per row (nn.MultiheadAttention's slow path,
                # e.g. CLIP's masked text tower: 4x slower). Forwards run under no_grad, so the
                # flag records nothing; the originals get their own flag back.
                _param(slot).requires_grad_(True if target is not None else flag)
        self.current = target
        needed = self._needed(user)
        if old in needed:
            self._copies[old] = now
        for key in [k for k in self._copies if k not in needed and k is not None]:
            del self._copies[key]
        log.debug(
            "%s weights -> %s (kept: %s)",
            type(self._module()).__name__,
            target or "as loaded",
            [str(k or "as loaded") for k in self._copies],
        )

    def _rebuilt(self) -> list[torch.Tensor]:
        """The original tensors, rebuilt through the encoder's ``fresh_module``."""
        module = self._module()
        fresh = None
        for u in list(self._users):
            if module is not None and getattr(u, "can_rebuild", False):
                fresh = u.fresh_module(module)
                if fresh is not None:
                    break
        if fresh is None:  # pragma: no cover - _needed keeps originals without a rebuild
            raise RuntimeError("the original weights were released and cannot be rebuilt")
        log.info("rebuilt the original weights of %s", type(module).__name__)
        by_name = {name: t for name, t in _named_floats(fresh)}
        device = _get(self._slots[0]).device if self._slots else torch.device("cpu")
        try:
            return [by_name[name].to(device) for name, *_ in self._slots]
        except KeyError as exc:
            raise RuntimeError(f"rebuilt module lacks tensor {exc}") from exc


def _named_floats(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for slot in _float_slots(module):
        yield slot[0], _get(slot)
