"""Spoken audio made findable by its words: at ingest, an audio item that is speech gets
Whisper's transcript in ``extra["transcript"]``, which the store's full-text index holds
(:mod:`spaner.index.lexical`), so typing "frog" finds a recording of someone saying "frog"
(the hybrid search's full-text channel, :mod:`spaner.search.hybrid`).

``transcribe`` (``spaner ingest --transcribe``; default ``auto``, or ``SPANER_TRANSCRIBE``):

* ``auto``: speech only. Spoken queries' rule decides (:class:`~spaner.search.spoken_policy.
  SpeechPolicy` with the text encoder's words): sound annotations, Whisper's stock
  hallucinations and bare interjections are dropped, then every word must be known, the
  decoder confident and the no-speech probability low. Sounds and music get no transcript.
* ``always``: every clip whose transcript survives that cleaning (hallucinations dropped).
* ``never``: nothing is transcribed.

The transcriber is the model's own Whisper audio encoder (the ``offline`` and ``digits``
profiles), else the shipped Whisper tiny.en (:func:`spaner.search.spoken.transcriber_for`),
loaded with the first audio job; with neither, the run goes on without transcripts and logs why
once. A transcript the item already carries (a manifest's ``extra``) is kept and its clip not
transcribed. Each clip costs one 30-s window through Whisper's encoder and a beam-5 decode
(the README gives the seconds); the transcript is written with its item in the same
``store.add``, and a re-run skips stored items before they reach this stage.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from spaner.errors import ConfigError

__all__ = [
    "TRANSCRIBE_MODES",
    "TRANSCRIBE_ENV",
    "TRANSCRIPT_KEY",
    "resolve_mode",
    "Transcriber",
    "with_transcript",
]

log = logging.getLogger(__name__)

TRANSCRIBE_MODES = ("auto", "always", "never")
#: environment variable giving the default mode (``auto`` when unset)
TRANSCRIBE_ENV = "SPANER_TRANSCRIBE"
#: the ``extra`` key the full-text index reads (:data:`spaner.index.lexical.TRANSCRIPT_KEY`)
TRANSCRIPT_KEY = "transcript"
#: spoken queries' decider mode for each ingest mode
_DECIDER = {"auto": "auto", "always": "transcript"}


def resolve_mode(mode: str | None) -> str:
    """``mode``, or when ``None`` the ``SPANER_TRANSCRIBE`` environment variable, else
    ``auto``; a ConfigError names the choices when it is none of them."""
    if mode is None:
        mode = os.environ.get(TRANSCRIBE_ENV, "").strip() or "auto"
    if mode not in TRANSCRIBE_MODES:
        raise ConfigError(f"transcribe must be one of {', '.join(TRANSCRIBE_MODES)}, got {mode!r}")
    return mode


def with_transcript(extra: Mapping[str, Any], transcript: str | None) -> dict[str, Any]:
    """``extra`` with ``transcript`` under :data:`TRANSCRIPT_KEY` (one already there is kept)."""
    out = dict(extra)
    if transcript and not isinstance(out.get(TRANSCRIPT_KEY), str):
        out[TRANSCRIPT_KEY] = transcript
    return out


class Transcriber:
    """The transcripts of one run's audio items for ``sp`` (a loaded
    :class:`~spaner.pipeline.Spaner`); ``mode`` ``auto`` or ``always`` (module doc)."""

    def __init__(self, sp: Any, mode: str = "auto", policy: Any = None) -> None:
        if mode not in _DECIDER:
            raise ConfigError(f"a Transcriber's mode is auto or always, got {mode!r}")
        self.sp, self.mode, self.policy = sp, mode, policy
        self._whisper: Any = None
        self._resolved = False
        self._lock = threading.Lock()

    def wants(self, modality: str, extra: Mapping[str, Any]) -> bool:
        """Whether an item of ``modality`` with ``extra`` is to be transcribed."""
        return modality == "audio" and not isinstance(extra.get(TRANSCRIPT_KEY), str)

    def whisper(self) -> Any | None:
        """The Whisper that transcribes (loaded on first use), or ``None``, said once."""
        with self._lock:
            if not self._resolved:
                from spaner.search.spoken import no_transcriber_reason, transcriber_for

                self._whisper = transcriber_for(self.sp)
                self._resolved = True
                if self._whisper is None:
                    log.warning(
                        "audio items are stored without transcripts: %s",
                        no_transcriber_reason(self.sp),
                    )
                else:
                    what = "speech" if self.mode == "auto" else "every clip"
                    by = getattr(self._whisper, "weights", None) or self._whisper.name
                    log.info("audio items: transcripts of %s by %s", what, by)
            return self._whisper

    def wave(self, content: bytes | str, source: str, decoded: Any = None) -> Any | None:
        """One clip as Whisper hears it (a conditioned 16-kHz waveform): ``decoded`` (what the
        model's audio encoder's ``load`` gave) when that encoder is the Whisper that transcribes,
        else decoded again from ``content``; ``None`` without a transcriber or when it cannot
        decode."""
        whisper = self.whisper()
        if whisper is None:
            return None
        if decoded is not None and whisper is self.sp.encoders.get("audio"):
            return decoded
        try:
            return whisper.load(content, source)
        except Exception as exc:  # noqa: BLE001 - the item is stored all the same
            log.info("%s: not transcribed (%s)", source, exc)
            return None

    def __call__(self, waves: Sequence[Any]) -> list[str | None]:
        """The transcript to store for each clip (``None``: not speech, or nothing left)."""
        whisper = self.whisper()
        if whisper is None or not waves:
            return [None] * len(waves)
        from spaner.search.spoken import BEAM_SIZE, hear_clips, speech_decider
        from spaner.search.spoken_policy import DEFAULT_POLICY

        decide = speech_decider(self.sp, _DECIDER[self.mode], self.policy or DEFAULT_POLICY)
        heard = hear_clips(whisper, list(waves), decide, None, BEAM_SIZE)
        return [d.transcript if d.use_transcript else None for _, d, _ in heard]
