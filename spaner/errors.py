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
