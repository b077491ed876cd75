"""The encoder plugin contract.

An encoder turns raw inputs of one modality into a frozen token sequence ``[B, T, width]``
with a validity mask ``[B, T]``, and, where it has one, a vector in its own native shared
space (CLIP's image and text towers share one). Encoders never train: ``forward`` runs
under ``torch.no_grad()`` with the backbone in eval mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .decode import DEFAULT_LIMITS, Limits, RawInput
from .pixels import PixelPlan
from .precision import (
    PRECISIONS,
    FrozenWeights,
    bf16_faster,
    bf16_supported,
    cast_floats,
    resolve_precision,
)

__all__ = [
    "TokenBatch",
    "ItemTokens",
    "Encoder",
    "EncoderSpec",
    "InputKind",
    "PRECISIONS",
    "resolve_precision",
    "bf16_supported",
    "bf16_faster",
]

InputKind = Literal["text", "file"]


@dataclass
class ItemTokens:
    """One item's frozen features: unpadded tokens ``[T, width]`` and an optional native vector."""

    tokens: torch.Tensor
    native: torch.Tensor | None = None


@dataclass
class TokenBatch:
    """A padded batch of frozen features.

    ``mask`` is True where a token is real. ``native`` is ``[B, native_dim]`` when the encoder
    has a native shared space, else None. ``normalized`` marks tokens already layer-normalised
    without affine (each real token to zero mean, unit variance; set by the training batcher,
    :mod:`spaner.training.batching`): an aligner that starts with a LayerNorm then applies only its affine.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    native: torch.Tensor | None = None
    normalized: bool = False

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be [B, T, width], got {tuple(self.tokens.shape)}")
        if self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"mask {tuple(self.mask.shape)} does not match tokens {tuple(self.tokens.shape)}"
            )

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TokenBatch:
        """This batch on ``device`` (itself when it is there already)."""
        device = torch.device(device)
        if self.tokens.device == device:
            return self
        native = (
            self.native.to(device, non_blocking=non_blocking) if self.native is not None else None
        )
        return TokenBatch(
            self.tokens.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
            native,
            self.normalized,
        )

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

    **Precision (bf16).** :meth:`forward` runs the backbone in :attr:`compute_precision`. For
    bf16 it does not rely on ``torch.autocast`` alone (autocast re-casts frozen weights, which
    do not require grad, on every call, which made bf16 slower than fp32): every torch module
    listed by :meth:`modules` is switched to bf16 *once* (all its floating-point parameters
    and buffers, through :class:`~spaner.encoders.precision.FrozenWeights`), the floating
    tensors of the preprocessed batch are cast to bf16 (:meth:`cast_input`), the forward runs
    under bf16 autocast (so tensors an encoder makes in fp32 inside ``_forward`` still meet
    the bf16 weights), and the features leave as float32. The fp32 path is untouched: no
    autocast, no cast, the weights as loaded. So an encoder gets fast bf16 by

    * listing its torch modules in :meth:`modules` (also what :meth:`to` moves), frozen
      (``eval()``, ``requires_grad_(False)``) and loaded in float32;
    * overriding :meth:`fresh_module` when it can rebuild a module with its original weights
      (same architecture, same parameter names): then only one copy of the weights is kept
      in memory while bf16 runs, and the originals are rebuilt if fp32 is asked for again.
      Without it the float32 originals stay in memory beside the bf16 copy;
    * overriding :meth:`cast_input` if its batch holds floating tensors that must stay float32,
      and making sure ``_forward`` works on bf16 module outputs (the tiny-preset checks in
      ``tests/encoders/test_precision.py`` show the pattern: bf16 weights used, fp32 bit-identical,
      cosine to fp32 >= 0.999);
    * setting :attr:`bf16_capable` False when bf16 buys nothing (fixed transforms, tiny nets).

    A backbone that is not a torch module and has its own compute type (e.g. a CTranslate2
    model) lists no modules here and reads :attr:`compute_precision` to choose that type
    (``"bf16"`` -> ``"bfloat16"``, ``"fp32"`` -> ``"float32"``) when it loads or runs;
    :meth:`forward` then only adds bf16 autocast, which touches no CTranslate2 call.

    ``precision="auto"`` resolves to bf16 only where bf16 is faster
    (:func:`~spaner.encoders.precision.bf16_faster`).
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
    #: Image encoders whose preprocessing is a :class:`~spaner.encoders.pixels.PixelPlan` (resize,
    #: crop, normalise) set it: the streaming path (:mod:`spaner.model.streaming`) then runs that
    #: preprocessing as tensor operations on the device, and decodes JPEG there on CUDA.
    pixel_plan: PixelPlan | None = None
    #: True when :meth:`preprocess` treats each input alone and returns one ``[B, ...]`` tensor:
    #: the streaming path then preprocesses inputs on its worker threads and concatenates them.
    item_preprocess: bool = False
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
        """``"bf16"`` or ``"fp32"``: :attr:`precision` resolved for this device and encoder."""
        if not self.bf16_capable:
            return "fp32"
        return resolve_precision(self.precision, self.device)

    def set_precision(self, precision: str) -> Encoder:
        resolve_precision(precision, self.device)  # validates
        self.precision = precision
        return self

    def _weights(self) -> list[FrozenWeights]:
        stores = []
        for module in self.modules():
            fw = FrozenWeights.of(module)
            assert fw is not None
            fw.attach(self)
            stores.append(fw)
        return stores

    def forward(self, batch: Any, to_cpu: bool = True) -> TokenBatch:
        """Frozen forward: no gradients, the modules' weights in :attr:`compute_precision` (see the
        class docstring), float32 features on CPU; with ``to_cpu`` False they stay on
        :attr:`device` (the streaming path hands them to the aligner there)."""
        bf16 = self.compute_precision == "bf16"
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if bf16:
                for fw in self._weights():
                    stack.enter_context(fw.use(torch.bfloat16, self))
                batch = self.cast_input(batch, torch.bfloat16)
                stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
            else:
                for module in self.modules():
                    fw = FrozenWeights.of(module, create=False)
                    if fw is not None:  # the module has been switched before: hold it as loaded
                        fw.attach(self)
                        stack.enter_context(fw.use(None, self))
            out = self._forward(batch)
        if not to_cpu:
            native = out.native.float() if out.native is not None else None
            return TokenBatch(out.tokens.float(), out.mask, native)
        native = out.native.float().cpu() if out.native is not None else None
        return TokenBatch(out.tokens.float().cpu(), out.mask.cpu(), native)

    def cast_input(self, batch: Any, dtype: torch.dtype) -> Any:
        """The preprocessed ``batch`` for weights in ``dtype``: every floating tensor in it (through
        tuples, lists and dicts) cast to ``dtype``; integer tensors and anything else unchanged."""
        return cast_floats(batch, dtype)

    def fresh_module(self, module: torch.nn.Module) -> torch.nn.Module | None:
        """A newly built copy of ``module`` (one of :meth:`modules`) with its original float32
        weights, or None when this encoder cannot rebuild it (then the originals are kept in
        memory while bf16 runs). Called only when fp32 is asked for after bf16 released them."""
        return None

    def text_tower(self) -> Encoder | None:
        """A text encoder whose native vectors share this encoder's :attr:`native_space` (CLAP's
        text tower beside its audio tower), or None. With one, a model can align this encoder's
        modality through text alone (:mod:`spaner.training.text_bridge`)."""
        return None

    @property
    def can_rebuild(self) -> bool:
        """True when this encoder's class overrides :meth:`fresh_module`."""
        return type(self).fresh_module is not Encoder.fresh_module

    def encode(self, sources: Sequence[RawInput], names: Sequence[str] | None = None) -> TokenBatch:
        """Load, preprocess and run a batch of raw inputs."""
        names = list(names) if names is not None else [None] * len(sources)  # type: ignore[list-item]
        raws = [self.load(s, n) for s, n in zip(sources, names, strict=True)]
        return self.forward(self.preprocess(raws))

    def to(self, device: str | torch.device) -> Encoder:
        self.device = torch.device(device)
        for module in self.modules():
            fw = FrozenWeights.of(module, create=False)
            if fw is not None:  # moves the copies kept beside the module too
                fw.to(self.device)
            else:
                module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The frozen torch modules this encoder owns: moved by :meth:`to`, switched to bf16 by
        :meth:`forward` (see the class docstring)."""
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
