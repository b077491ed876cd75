"""Class-label vectors: an ImageNet classifier's belief about a photo, as a point in a text space.

ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings", 2014):
the vector of an image is the probability-weighted mean of the sentence embeddings of its top-k
ImageNet class names. A photo the classifier calls "tailed frog" (p=.76) / "tree frog" lands
beside the words "a frog" in MiniLM's space, even when "frog" was never in a few-shot set, so an
image encoder with a classifier head gets a native vector in the text encoder's own space, and
the unified space can be anchored on it (:class:`spaner.model.config.AlignerConfig`).

Each class is embedded either as its bare name (``label_text="names"``) or with its WordNet
synonyms and everyday hypernyms (``"wordnet"``: "Labrador retriever, dog, domestic animal"), read
from ``configs/imagenet-classes-wordnet.txt``, which :mod:`spaner.concepts.imagenet_labels`
derives from WordNet 3.0 and which ships, so the vectors never depend on whether the machine has
WordNet.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "imagenet_classes",
    "class_texts",
    "label_matrix",
    "label_vectors",
    "LABEL_TEXTS",
    "DEFAULT_LABEL_TEXT",
]

log = logging.getLogger(__name__)

_CLASSES = Path(__file__).parent / "configs" / "imagenet-classes.txt"
_WORDNET = Path(__file__).parent / "configs" / "imagenet-classes-wordnet.txt"
#: how a class is put into words: its bare name, or with WordNet synonyms and hypernyms
LABEL_TEXTS = ("names", "wordnet")
DEFAULT_LABEL_TEXT = "wordnet"


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the classifier's index order (105 = koala)."""
    names = _CLASSES.read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise RuntimeError(f"{_CLASSES} should list 1000 class names, found {len(names)}")
    return names


def class_texts(label_text: str = DEFAULT_LABEL_TEXT) -> list[str]:
    """The text embedded for each class, in index order (see :data:`LABEL_TEXTS`)."""
    names = imagenet_classes()
    if label_text == "names":
        return names
    if label_text != "wordnet":
        raise ValueError(f"label_text must be one of {', '.join(LABEL_TEXTS)}, got {label_text!r}")
    texts = _WORDNET.read_text(encoding="utf-8").splitlines()
    if len(texts) != 1000 or any(not t.startswith(n) for t, n in zip(texts, names, strict=True)):
        raise RuntimeError(f"{_WORDNET} should hold 1000 lines, each starting with its class name")
    return texts


@lru_cache(maxsize=4)
def label_matrix(text_model: str, label_text: str = DEFAULT_LABEL_TEXT) -> tuple[torch.Tensor, str]:
    """Sentence embeddings ``[1000, dim]`` of the class texts (:func:`class_texts`) by the transformers model at
    ``text_model`` (mean-pooled, as :class:`HFTextEncoder` computes its native vector), and that
    encoder's ``native_space`` id. Computed once per model: kept in memory for the process and,
    for a local model directory, on disk under ``$SPANER_CACHE/labels`` (embedding the 1000 names
    took 6-7 s on one core, paid by every process that built the image encoder: training,
    ingest, the server)."""
    names = class_texts(label_text)
    path = _disk_path(text_model, names)
    if path is not None and path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                space = (fh.metadata() or {})["native_space"]
                matrix = fh.get_tensor("matrix")
            if matrix.shape[0] == len(names):
                return matrix, space
        except Exception as exc:  # unreadable: computed again and rewritten
            log.warning("class-label cache %s is unreadable (%s); recomputing", path, exc)
    from .hf_text_encoder import HFTextEncoder

    encoder = HFTextEncoder("class-labels", model=text_model, tokenizer=text_model)
    rows = []
    for start in range(0, len(names), 250):
        batch = encoder.encode(names[start : start + 250])
        assert batch.native is not None
        rows.append(batch.native.float())
    log.info("embedded %d ImageNet class texts (%s) with %s", len(names), label_text, text_model)
    matrix, space = torch.cat(rows), str(encoder.native_space)
    if path is not None:
        _save(path, matrix, space)
    return matrix, space


def _disk_path(text_model: str, names: list[str]) -> Path | None:
    """Where the matrix of a local model directory is kept: keyed by the directory, its files'
    names, sizes and modification times, and the class texts, so the bare names and the
    WordNet-enriched texts never share a file (None for a hub id)."""
    root = Path(text_model)
    if not root.is_dir():
        return None
    h = hashlib.sha256(str(root.resolve()).encode("utf-8"))
    for f in sorted(root.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"\0{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update("\n".join(names).encode("utf-8"))
    from spaner.training.features import cache_root

    return cache_root() / "labels" / f"{h.hexdigest()[:32]}.safetensors"


def _save(path: Path, matrix: torch.Tensor, space: str) -> None:
    """Write atomically; a cache that cannot be written is only slower."""
    from safetensors.torch import save_file
    from spaner.index.atomic_io import atomic_write_with

    try:
        atomic_write_with(
            path,
            lambda tmp: save_file(
                {"matrix": matrix.contiguous()}, tmp, metadata={"native_space": space}
            ),
        )
    except OSError as exc:
        log.warning("could not cache the class-label vectors at %s: %s", path, exc)


def label_vectors(logits: torch.Tensor, matrix: torch.Tensor, top_k: int) -> torch.Tensor:
    """``[B, dim]``: the softmax over ``logits`` kept on its ``top_k`` classes, renormalised,
    times the class embeddings ``matrix``."""
    probs = logits.float().softmax(dim=-1)
    top, idx = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    top = top / top.sum(dim=-1, keepdim=True)
    vectors = torch.einsum("bk,bkd->bd", top, matrix.to(logits.device)[idx])
    return F.normalize(vectors, dim=-1)
