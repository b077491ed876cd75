"""What machine a study ran on: the benchmarks' ``machine`` module, loaded from its one copy.

The studies run as scripts (``.venv/bin/python studies/X.py``), so their folder is first on
``sys.path`` and ``from machine import cpu_model`` finds this file, which loads
``benchmarks/machine.py`` by path instead of keeping a second copy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["cpu_model"]

_SOURCE = Path(__file__).resolve().parents[1] / "benchmarks" / "machine.py"
_spec = importlib.util.spec_from_file_location("_benchmarks_machine", _SOURCE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

cpu_model = _module.cpu_model
