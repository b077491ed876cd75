"""Device copies of the float32 matrix for :mod:`.device`: kept between searches and
extended on appends (converted in steps of rows, with spare capacity)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["DeviceRows", "take"]

_UPLOAD_ROWS = 65536  # rows converted per step when a copy is built or extended


def take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t[rows]`` through ``index_select`` (torch's advanced indexing costs milliseconds on
    the CPU)."""
    return t.index_select(0, rows.reshape(-1)).reshape(*rows.shape, *t.shape[1:])


class DeviceRows:
    """A device copy (in ``dtype``) of a float32 matrix's first rows, with spare capacity so
    appended rows are converted without copying the rest again (grows 1.5x)."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.buf: torch.Tensor | None = None
        self.n = 0

    def sync(self, matrix: np.ndarray) -> torch.Tensor:
        n, d = matrix.shape
        if self.buf is not None and (self.n > n or self.buf.shape[1] != d):
            self.buf, self.n = None, 0
        if self.buf is None or self.buf.shape[0] < n:
            cap = max(n, int(1.5 * (self.buf.shape[0] if self.buf is not None else 0)))
            buf = torch.empty((cap, d), dtype=self.dtype, device=self.device)
            if self.buf is not None:
                buf[: self.n] = self.buf[: self.n]
            self.buf = buf
        for lo in range(self.n, n, _UPLOAD_ROWS):
            hi = min(n, lo + _UPLOAD_ROWS)
            self.buf[lo:hi] = torch.from_numpy(matrix[lo:hi]).to(self.device).to(self.dtype)
        self.n = n
        return self.buf[:n]
