"""Typed errors. Every error a user can cause is a :class:`SpanerError` with a message
that names the input and says what to do; the CLI and the API turn them into clean
messages instead of tracebacks."""

from __future__ import annotations

__all__ = [
    "SpanerError",
    "InputError",
    "ManifestError",
    "EncoderLoadError",
    "CheckpointError",
    "ConfigError",
    "DiskFullError",
    "is_disk_full",
]


class SpanerError(Exception):
    """Base class of every error SPANER raises on purpose."""


class InputError(SpanerError, ValueError):
    """A raw input (text, image or audio) is empty, truncated, of the wrong format or over a limit.

    ``source`` names the input (a path, an upload name or ``"<bytes>"``).
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ManifestError(SpanerError, ValueError):
    """A manifest line is malformed; the message names the file and line."""


class EncoderLoadError(SpanerError, RuntimeError):
    """An encoder's weights could not be loaded; the message says which and how to pass a local path."""


class CheckpointError(SpanerError, RuntimeError):
    """A checkpoint is missing, corrupt, or incompatible."""


class ConfigError(SpanerError, ValueError):
    """A configuration value is invalid."""


class DiskFullError(SpanerError, OSError):
    """A write failed for lack of space (ENOSPC, a quota, SQLite's "database or disk is full").

    Raised by the store and checkpoint writers with a message naming what was being written;
    whatever was stored before stays intact (every write is atomic or transactional)."""


_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT (Linux)


def is_disk_full(exc: BaseException) -> bool:
    """True for an out-of-space failure, however the library reported it."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc)
    return (
        "database or disk is full" in text
        or "No space left on device" in text
        or ("os error 28" in text)
    )
