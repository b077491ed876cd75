"""Test hook: SIGKILL this process at its N-th progress event (crash tests, issue 16).

``SPANER_TEST_KILL_AT=N`` makes the N-th call of :func:`progress_point` (counted from 1 over
the process's life) kill the process with SIGKILL; ``SPANER_TEST_KILL_AT=NAME`` kills it at the
first event whose name starts with NAME (e.g. ``activate:swap:parked``). A crash test thus
chooses its kill points from the program's own progress (job progress updates, the steps of a
model switch), and a fast and a slow machine are killed at the same point. ``SPANER_TEST_PROGRESS_LOG=FILE``
appends one line per event (``N name``) so a probe run can count and name them. Without
these variables a call costs one comparison.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["progress_point"]

_KILL_SPEC = os.environ.get("SPANER_TEST_KILL_AT", "").strip()
_KILL_AT = int(_KILL_SPEC) if _KILL_SPEC.isdigit() else 0
_KILL_NAME = "" if _KILL_SPEC.isdigit() else _KILL_SPEC
_LOG = os.environ.get("SPANER_TEST_PROGRESS_LOG") or None
_ACTIVE = bool(_KILL_SPEC or _LOG)
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
        if n == _KILL_AT or (_KILL_NAME and name.startswith(_KILL_NAME)):
            os.kill(os.getpid(), signal.SIGKILL)
