"""What this machine's CPU offers the exact engines: its feature flags (read once), and the
seeded unit rows the engines' once-per-dimension kernel checks use."""

from __future__ import annotations

import torch

__all__ = ["bf16_matmul_is_native", "cpu_flags"]


def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            return frozenset(next((ln for ln in fh if ln.startswith("flags")), "").split())
    except OSError:
        return frozenset()


_FLAGS = _cpu_flags()


def bf16_matmul_is_native() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    return "amx_bf16" in _FLAGS or "avx512_bf16" in _FLAGS


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, as read at import."""
    return _FLAGS


def _bound_check_rows(dim: int, samples: int) -> torch.Tensor:
    """Seeded unit rows for the error-bound checks: random, and near-duplicates of row 0
    (large scores, the worst case for output rounding)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, dim, generator=g)
    x[: samples // 2] = x[0] + 0.01 * x[: samples // 2]
    return x / x.norm(dim=1, keepdim=True)
