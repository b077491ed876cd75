"""Modality names: constants for the built-ins, open to plugins.

A modality is a plain string (it is stored in manifests, checkpoints, store metadata and API
requests), so a plugin adds one by registering an encoder whose ``modality`` is a new name
(``"video"``, ``"depth"``); nothing here has to change. The built-ins have constants, like
ImageBind's ``ModalityType``, so code says ``Modality.IMAGE`` instead of a bare ``"image"``::

    from spaner.modality import Modality

    sp.embed(Modality.TEXT, ["a frog"])
"""

from __future__ import annotations

from typing import Final

__all__ = ["Modality", "BUILTIN_MODALITIES", "is_builtin"]


class Modality:
    """The built-in modality names (a namespace of ``str`` constants, not an enum: plugins
    bring names of their own)."""

    TEXT: Final = "text"
    IMAGE: Final = "image"
    AUDIO: Final = "audio"


#: the built-in modalities, in the order the CLI and the UI list them
BUILTIN_MODALITIES: Final[tuple[str, ...]] = (Modality.TEXT, Modality.IMAGE, Modality.AUDIO)


def is_builtin(modality: str) -> bool:
    """Whether ``modality`` is one of SPANER's own (a plugin's modality is not)."""
    return modality in BUILTIN_MODALITIES
