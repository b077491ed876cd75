"""A toy third-party encoder plugin: a 'sensor' modality read from small CSV files.

Each CSV row (4 floats) is one token. It is registered only through the ``spaner.encoders``
entry-point group (see tests/encoders/test_plugins.py), exactly as an external package would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from spaner.encoders import Encoder, EncoderSpec, TokenBatch
from spaner.encoders.decode import read_bytes

from spaner.errors import InputError


class SensorEncoder(Encoder):
    modality = "sensor"
    input_kind = "file"
    width = 4

    def __init__(
        self, name: str = "toy-sensor", device: str = "cpu", weights: str | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.weights = "none"

    def config(self) -> dict[str, Any]:
        return {}

    def load(self, source, name=None) -> np.ndarray:
        label = name or str(source)
        text = read_bytes(source, self.limits, label).decode("utf-8", "replace")
        try:
            rows = [[float(x) for x in line.split(",")] for line in text.strip().splitlines()]
            arr = np.asarray(rows, dtype=np.float32)
        except ValueError as exc:
            raise InputError(label, f"not a CSV of numbers: {exc}") from None
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise InputError(label, "expected rows of 4 comma-separated numbers")
        return arr

    def preprocess(self, raws: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(r) for r in raws]

    def _forward(self, batch: list[torch.Tensor]) -> TokenBatch:
        longest = max(t.shape[0] for t in batch)
        tokens = torch.zeros(len(batch), longest, 4)
        mask = torch.zeros(len(batch), longest, dtype=torch.bool)
        for i, t in enumerate(batch):
            tokens[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return TokenBatch(tokens, mask)


def specs() -> list[EncoderSpec]:
    return [
        EncoderSpec(
            name="toy-sensor",
            modality="sensor",
            width=4,
            weights="none",
            factory=SensorEncoder,
            description="toy CSV sensor encoder (test plugin)",
        )
    ]
