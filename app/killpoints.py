"""Test hook: SIGKILL this process at its N-th progress event (crash tests, issue 16).

``SPANER_TEST_KILL_AT=N`` makes the N-th call of :func:`progress_point` (counted from 1 over
the process's life) kill the process with SIGKILL, so a crash test chooses its kill points
from the program's own progress (job progress updates, the steps of a model switch) and a
fast and a slow machine are killed at the same point. ``SPANER_TEST_PROGRESS_LOG=FILE``
appends one line per event (``N name``) so a probe run can count and name them. Without
these variables a call costs one comparison.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["progress_point"]

_KILL_AT = int(os.environ.get("SPANER_TEST_KILL_AT", "0") or 0)
_LOG = os.environ.get("SPANER_TEST_PROGRESS_LOG") or None
_ACTIVE = bool(_KILL_AT or _LOG)
_count = 0
_guard = threading.Lock()


def progress_point(name: str) -> None:
    """Count one progress event named ``name`` (see the module doc)."""
    global _count
    if not _ACTIVE:
        return
    with _guard:
        _count += 1
        n = _count
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as fh:
                fh.write(f"{n} {name}\n")
        if n == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
