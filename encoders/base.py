"""The encoder plugin contract.

An encoder turns raw inputs of one modality into a frozen token sequence ``[B, T, width]``
with a validity mask ``[B, T]``, and, where it has one, a vector in its own native shared
space (CLIP's image and text towers share one). Encoders never train: ``forward`` runs
under ``torch.no_grad()`` with the backbone in eval mode.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .decode import DEFAULT_LIMITS, Limits, RawInput

__all__ = [
    "TokenBatch",
    "ItemTokens",
    "Encoder",
    "EncoderSpec",
    "InputKind",
    "PRECISIONS",
    "resolve_precision",
    "bf16_supported",
]

InputKind = Literal["text", "file"]
#: ``auto``: bf16 where the hardware runs it natively (CPUs with AMX or AVX-512-BF16, CUDA GPUs with bf16),
#: else fp32; ``SPANER_PRECISION`` overrides ``auto``. ``bf16``/``fp32`` force a precision.
PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


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
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


@dataclass
class ItemTokens:
    """One item's frozen features: unpadded tokens ``[T, width]`` and an optional native vector."""

    tokens: torch.Tensor
    native: torch.Tensor | None = None


@dataclass
class TokenBatch:
    """A padded batch of frozen features.

    ``mask`` is True where a token is real. ``native`` is ``[B, native_dim]`` when the encoder
    has a native shared space, else None.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    native: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be [B, T, width], got {tuple(self.tokens.shape)}")
        if self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"mask {tuple(self.mask.shape)} does not match tokens {tuple(self.tokens.shape)}"
            )

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def split(self) -> list[ItemTokens]:
        """Unpad into one :class:`ItemTokens` per item."""
        out = []
        for i in range(len(self)):
            t = self.tokens[i][self.mask[i]].contiguous()
            n = self.native[i].contiguous() if self.native is not None else None
            out.append(ItemTokens(t, n))
        return out

    @classmethod
    def collate(cls, items: Sequence[ItemTokens]) -> TokenBatch:
        """Pad per-item features back into a batch (inverse of :meth:`split`)."""
        if not items:
            raise ValueError("cannot collate an empty list")
        width = items[0].tokens.shape[-1]
        longest = max(max(it.tokens.shape[0] for it in items), 1)
        tokens = items[0].tokens.new_zeros(len(items), longest, width)
        mask = torch.zeros(len(items), longest, dtype=torch.bool)
        for i, it in enumerate(items):
            n = it.tokens.shape[0]
            tokens[i, :n] = it.tokens
            mask[i, :n] = True
        native = None
        if all(it.native is not None for it in items):
            native = torch.stack([it.native for it in items])  # type: ignore[misc]
        return cls(tokens, mask, native)


class Encoder(ABC):
    """Base class for frozen modality encoders.

    Subclasses set :attr:`name`, :attr:`modality`, :attr:`width`, :attr:`input_kind` and,
    when the backbone has a shared space with other encoders, :attr:`native_space` (an id
    equal across the encoders that share it) and :attr:`native_dim`.
    """

    name: str = ""
    modality: str = ""
    width: int = 0
    input_kind: InputKind = "file"
    native_space: str | None = None
    native_dim: int | None = None
    #: Human-readable description of where weights came from (tag, bundle, path, or "random (seed N)").
    weights: str = ""
    #: False for fixed transforms (FFT front ends, tiny nets) that gain nothing from bf16: they always run fp32.
    bf16_capable: bool = True
    #: The requested precision (``auto``/``bf16``/``fp32``); :func:`spaner.encoders.build_encoder` sets it
    #: from the ``precision`` option. See :attr:`compute_precision` for what actually runs.
    precision: str = "auto"

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.limits: Limits = DEFAULT_LIMITS

    # -- the contract -------------------------------------------------------------------
    @abstractmethod
    def load(self, source: RawInput, name: str | None = None) -> Any:
        """Validate and decode one raw input (path, bytes, or text). Raises InputError."""

    @abstractmethod
    def preprocess(self, raws: Sequence[Any]) -> Any:
        """Turn decoded inputs into the backbone's batch (tensors on :attr:`device`)."""

    @abstractmethod
    def _forward(self, batch: Any) -> TokenBatch:
        """Run the frozen backbone on a preprocessed batch."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild this encoder through its spec's factory."""

    # -- provided -----------------------------------------------------------------------
    @property
    def compute_precision(self) -> str:
        """``"bf16"`` (autocast) or ``"fp32"``: :attr:`precision` resolved for this device and encoder."""
        if not self.bf16_capable:
            return "fp32"
        return resolve_precision(self.precision, self.device)

    def set_precision(self, precision: str) -> Encoder:
        resolve_precision(precision, self.device)  # validates
        self.precision = precision
        return self

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.compute_precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, batch: Any) -> TokenBatch:
        """Frozen forward: no gradients, bf16 autocast when :attr:`compute_precision` says so,
        float32 features on CPU."""
        with torch.no_grad(), self._autocast():
            out = self._forward(batch)
        native = out.native.float().cpu() if out.native is not None else None
        return TokenBatch(out.tokens.float().cpu(), out.mask.cpu(), native)

    def encode(self, sources: Sequence[RawInput], names: Sequence[str] | None = None) -> TokenBatch:
        """Load, preprocess and run a batch of raw inputs."""
        names = list(names) if names is not None else [None] * len(sources)  # type: ignore[list-item]
        raws = [self.load(s, n) for s, n in zip(sources, names, strict=True)]
        return self.forward(self.preprocess(raws))

    def to(self, device: str | torch.device) -> Encoder:
        self.device = torch.device(device)
        for module in self.modules():
            module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules this encoder owns (moved by :meth:`to`)."""
        return []

    def fingerprint(self) -> str:
        """Stable id of encoder + weights + preprocessing; keys the feature cache."""
        payload = {"name": self.name, "config": self.config(), "v": 1}
        if (
            self.compute_precision != "fp32"
        ):  # fp32 keys are unchanged, so existing caches stay valid
            payload["precision"] = self.compute_precision
        payload = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, width={self.width})"


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder: what ``spaner encoders`` lists and how to build it.

    ``factory(**kwargs)`` returns an :class:`Encoder`; ``kwargs`` may include ``weights`` (a local
    path overriding the default source) and ``device``.
    """

    name: str
    modality: str
    width: int
    weights: str
    factory: Callable[..., Encoder] = field(repr=False)
    description: str = ""
    native_space: str | None = None
    source: str = "builtin"
