"""JSONL manifests: one item per line.

Each line is an object with ``id`` (unique string), optional ``concept`` (label),
optional ``split`` (``train``/``val``/``test``), optional ``meta`` (free JSON), and one or
more modality fields: ``text`` holds the text itself, every other modality a file path
relative to the manifest's directory. A line with several modalities is a *pair* (its
items are each other's positives); lines sharing a ``concept`` are positives too.

Paths may not be absolute or escape the manifest's directory (``..``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaner.errors import ManifestError

__all__ = ["ManifestItem", "Manifest", "load_manifest", "RESERVED_KEYS", "SPLITS"]

RESERVED_KEYS = frozenset({"id", "concept", "split", "meta"})
SPLITS = ("train", "val", "test")


@dataclass
class ManifestItem:
    id: str
    fields: dict[str, str]  # modality -> text or resolved absolute path
    concept: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def modalities(self) -> list[str]:
        return list(self.fields)


@dataclass
class Manifest:
    path: Path
    items: list[ManifestItem]

    @property
    def modalities(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in self.items:
            for m in item.fields:
                seen.setdefault(m, None)
        return list(seen)

    @property
    def has_concepts(self) -> bool:
        return any(i.concept is not None for i in self.items)

    @property
    def has_splits(self) -> bool:
        return any(i.split is not None for i in self.items)

    def count(self, modality: str) -> int:
        return sum(1 for i in self.items if modality in i.fields)


def _resolve(root: Path, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: expected a non-empty relative path string, got {value!r}")
    rel = Path(value)
    if rel.is_absolute():
        raise ManifestError(
            f"{where}: absolute path {value!r} refused; paths are relative to the manifest"
        )
    full = (root / rel).resolve()
    if not full.is_relative_to(root.resolve()):
        raise ManifestError(f"{where}: path {value!r} escapes the manifest's directory")
    return str(full)


def load_manifest(
    path: str | Path, modalities: Iterable[str] | None = None, check_files: bool = True
) -> Manifest:
    """Parse and validate a manifest. Errors name the file and line.

    ``modalities`` restricts the accepted modality keys (unknown keys are errors then).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    allowed = set(modalities) if modalities is not None else None
    root = path.parent
    items: list[ManifestItem] = []
    ids: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"{where}: each line must be a JSON object")
            item_id = obj.get("id")
            if not isinstance(item_id, (str, int)) or str(item_id) == "":
                raise ManifestError(f"{where}: missing or invalid 'id'")
            item_id = str(item_id)
            if item_id in ids:
                raise ManifestError(f"{where}: duplicate id {item_id!r}")
            ids.add(item_id)
            concept = obj.get("concept")
            if concept is not None and not isinstance(concept, (str, int)):
                raise ManifestError(f"{where}: 'concept' must be a string")
            split = obj.get("split")
            if split is not None and split not in SPLITS:
                raise ManifestError(
                    f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {split!r}"
                )
            meta = obj.get("meta", {})
            if not isinstance(meta, dict):
                raise ManifestError(f"{where}: 'meta' must be an object")
            fields: dict[str, str] = {}
            for key, value in obj.items():
                if key in RESERVED_KEYS:
                    continue
                if allowed is not None and key not in allowed:
                    raise ManifestError(
                        f"{where}: unknown modality {key!r} (known: {', '.join(sorted(allowed))})"
                    )
                if key == "text":
                    if not isinstance(value, str) or not value.strip():
                        raise ManifestError(f"{where}: 'text' must be a non-empty string")
                    fields[key] = value
                else:
                    fields[key] = _resolve(root, value, f"{where}: {key}")
                    if check_files and not Path(fields[key]).is_file():
                        raise ManifestError(f"{where}: {key} file not found: {value}")
            if not fields:
                raise ManifestError(
                    f"{where}: the item has no modality field (text, image, audio, ...)"
                )
            items.append(
                ManifestItem(
                    item_id, fields, None if concept is None else str(concept), split, meta, lineno
                )
            )
    if not items:
        raise ManifestError(f"{path}: manifest has no items")
    return Manifest(path, items)
