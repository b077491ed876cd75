"""Encoder registry: built-ins register themselves on import; third-party packages add
encoders through the ``spaner.encoders`` entry-point group.

An entry point may resolve to an :class:`EncoderSpec`, an iterable of them, or a callable
returning either. A plugin that fails to load is logged and reported by
:func:`plugin_errors`; it never breaks the built-ins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from spaner.errors import ConfigError

from .base import Encoder, EncoderSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "register_encoder",
    "unregister_encoder",
    "get_spec",
    "list_encoders",
    "build_encoder",
    "plugin_errors",
    "reload_plugins",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "spaner.encoders"

_REGISTRY: dict[str, EncoderSpec] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def register_encoder(spec: EncoderSpec, *, overwrite: bool = False) -> EncoderSpec:
    """Add ``spec`` to the registry. Registering a taken name raises unless ``overwrite``."""
    if not isinstance(spec, EncoderSpec):
        raise TypeError(f"expected an EncoderSpec, got {type(spec).__name__}")
    if not spec.name or not spec.modality:
        raise ConfigError("an encoder spec needs a non-empty name and modality")
    existing = _REGISTRY.get(spec.name)
    if existing is not None and not overwrite and existing is not spec:
        raise ConfigError(
            f"encoder name {spec.name!r} is already registered (by {existing.source}); "
            "choose another name or pass overwrite=True"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_encoder(name: str) -> None:
    _REGISTRY.pop(name, None)


def _specs_from(obj: Any) -> list[EncoderSpec]:
    if isinstance(obj, EncoderSpec):
        return [obj]
    if callable(obj) and not isinstance(obj, type):
        return _specs_from(obj())
    if isinstance(obj, Iterable):
        specs = list(obj)
        bad = [s for s in specs if not isinstance(s, EncoderSpec)]
        if bad:
            raise TypeError(f"entry point yielded non-EncoderSpec objects: {bad!r}")
        return specs
    raise TypeError(
        f"entry point must give EncoderSpec(s) or a callable returning them, got {type(obj).__name__}"
    )


def reload_plugins() -> None:
    """(Re)scan the ``spaner.encoders`` entry points."""
    global _plugins_loaded
    _plugins_loaded = True
    _PLUGIN_ERRORS.clear()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            specs = _specs_from(ep.load())
            for spec in specs:
                if spec.source == "builtin":
                    object.__setattr__(spec, "source", f"plugin:{ep.value}")
                register_encoder(
                    spec, overwrite=_REGISTRY.get(spec.name, spec).source == spec.source
                )
        except Exception as exc:  # a broken plugin must not break the built-ins
            _PLUGIN_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("encoder plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)


def _ensure_loaded() -> None:
    from . import builtin  # noqa: F401  (registers the built-in specs)

    if not _plugins_loaded:
        reload_plugins()


def plugin_errors() -> dict[str, str]:
    """Entry points that failed to load, by name, with the error."""
    _ensure_loaded()
    return dict(_PLUGIN_ERRORS)


def list_encoders(modality: str | None = None) -> list[EncoderSpec]:
    """All registered encoders (built-ins and plugins), sorted by modality then name."""
    _ensure_loaded()
    specs = [s for s in _REGISTRY.values() if modality is None or s.modality == modality]
    return sorted(specs, key=lambda s: (s.modality, s.name))


def get_spec(name: str) -> EncoderSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ConfigError(f"unknown encoder {name!r}; registered encoders: {known}") from None


def build_encoder(name: str, **kwargs: Any) -> Encoder:
    """Instantiate a registered encoder. ``kwargs`` go to its factory (e.g. ``weights=PATH``), except
    ``precision`` (``auto``/``bf16``/``fp32``, default ``auto``: bf16 where it is faster than fp32, see
    :func:`spaner.encoders.precision.bf16_faster`; overridable with ``SPANER_PRECISION``), which
    every encoder takes."""
    spec = get_spec(name)
    precision = kwargs.pop("precision", "auto")
    encoder = spec.factory(**kwargs)
    encoder.set_precision(precision)
    if encoder.modality != spec.modality:
        raise ConfigError(
            f"encoder {name!r} declared modality {spec.modality!r} but built {encoder.modality!r}"
        )
    return encoder
