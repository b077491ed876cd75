"""Spoken queries: Whisper's transcript of a query clip beside the clip's own audio embedding.

A user who says "a frog" should find the frog's photo even when "frog" was never in the few-shot
set. The audio aligner only knows the concepts it was adapted to; the text encoder knows every
word. So a query clip is also transcribed (Whisper, the shipped tiny.en unless the model's audio
encoder is a Whisper of its own) and the transcript embedded as text. ``mode`` says what the
query vector is made of:

* ``audio``: the clip's audio embedding only (sounds: a croak, a bark);
* ``transcript``: the transcript's text embedding (falls back to audio with no transcript);
* ``both``: the mean of the two unit vectors;
* ``auto`` (default): ``transcript`` when Whisper hears speech (no-speech probability below
  ``threshold`` and a transcript with a letter or digit in it), else ``audio``. The threshold
  (.2) best separates Tux Paint's spoken descriptions (train+val) from its sounds (val):
  balanced accuracy .85 (.76 at the former .1); the route (the transcript alone rather than
  averaged with the audio embedding) ties with ``both`` on the val spoken clips and keeps the
  transcript (``benchmarks/spoken_queries.py``; README, "Spoken queries").
  ``auto`` transcribes only when the model's audio encoder is a Whisper (the ``offline``
  profile); ``transcript`` and ``both`` load the shipped tiny.en for any model.

Transcripts are decoded with a beam of ``BEAM_SIZE`` and, given a ``vocabulary`` (the store's
text items and concept names, see :mod:`spaner.search.speech_bias`) and ``bias``, snapped to the
collection's word Whisper finds nearly as likely as what it heard on its own: "Mark!" becomes
"A lark" when the collection has a lark. What Whisper heard is kept (``heard``) beside the
transcript used (``transcript``) and the entry it matched (``vocabulary_match``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spaner.search.speech_bias import BiasedTranscript, Vocabulary, bias_transcript

__all__ = [
    "SPEECH_MODES",
    "NO_SPEECH_THRESHOLD",
    "BEAM_SIZE",
    "SpokenQuery",
    "spoken_queries",
    "transcriber_for",
]

log = logging.getLogger(__name__)

SPEECH_MODES = ("auto", "audio", "transcript", "both")
#: Whisper's no-speech probability under which ``auto`` treats a clip as speech.
NO_SPEECH_THRESHOLD = 0.2
#: Whisper's beam (and n-best) for spoken queries: the n-best proposes the vocabulary
#: candidates (train+val spoken clips: the transcript is the label for .50 greedy, .52 beam-5
#: top, .80 biased)
BEAM_SIZE = 5
_WORDLIKE = re.compile(r"[^\W_]", re.UNICODE)
_shared: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass
class SpokenQuery:
    """One query clip: its unit query vector and what Whisper heard."""

    vector: np.ndarray
    transcript: str | None
    no_speech_prob: float | None
    used: str
    heard: str | None = None  # Whisper's own transcript, before biasing
    vocabulary_match: str | None = None  # the collection's entry the transcript was snapped to
    bias_margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transcript": self.transcript,
            "heard": self.heard,
            "vocabulary_match": self.vocabulary_match,
            "bias_margin": self.bias_margin,
            "no_speech_prob": self.no_speech_prob,
            "used": self.used,
        }


def transcriber_for(spaner: Any, load_shared: bool = True) -> Any | None:
    """The model's own Whisper audio encoder, else (with ``load_shared``) the shipped Whisper
    tiny.en, loaded once per process; ``None`` when there is none."""
    enc = spaner.encoders.get("audio") if hasattr(spaner, "encoders") else None
    if enc is not None and callable(getattr(enc, "transcribe", None)):
        return enc
    if not load_shared:
        return None
    with _lock:
        if "whisper" not in _shared:
            try:
                from spaner.encoders import build_encoder

                _shared["whisper"] = build_encoder("whisper-tiny-en-audio")
            except Exception as exc:  # noqa: BLE001 - transcription is optional
                log.warning("spoken queries will not be transcribed: %s", exc)
                _shared["whisper"] = None
        return _shared["whisper"]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _heard(
    whisper: Any,
    waves: list[Any],
    vocab: Vocabulary | None,
    beam_size: int,
    speech_below: float | None = None,
) -> list[tuple[dict[str, Any], BiasedTranscript | None]]:
    """Whisper's n-best of each clip and, with a vocabulary, the biased transcript; with
    ``speech_below`` only clips whose no-speech probability is under it are biased (``auto``
    searches the others by their audio, so their transcript is never used)."""
    out: list[tuple[dict[str, Any], BiasedTranscript | None]] = []
    for i in range(0, len(waves), 8):  # 30-s encoder windows: bounded memory per step
        chunk = waves[i : i + 8]
        enc = whisper.encode_window(chunk)
        heard = whisper.transcribe(chunk, beam_size, beam_size, encoded=enc)
        for j, h in enumerate(heard):
            hyps = [t for t, _ in h.get("hypotheses") or [(h.get("text") or "", 0.0)]]
            usable = bool(h.get("text") and _WORDLIKE.search(h["text"]))
            if speech_below is not None:
                usable = usable and float(h.get("no_speech_prob", 1.0)) < speech_below
            biased = bias_transcript(whisper, enc[j], hyps, vocab) if vocab and usable else None
            out.append((h, biased))
    return out


def spoken_queries(
    spaner: Any,
    sources: Sequence[Any],
    names: Sequence[str] | None = None,
    mode: str = "auto",
    threshold: float = NO_SPEECH_THRESHOLD,
    vocabulary: Vocabulary | Sequence[str] | None = None,
    bias: bool = True,
    beam_size: int = BEAM_SIZE,
) -> list[SpokenQuery]:
    """Query vectors for audio clips (paths or bytes), with each clip's transcript.

    ``vocabulary``: the collection's words (a :class:`Vocabulary` or texts) that transcripts
    are biased towards when ``bias``; without one, or with ``bias=False``, the transcript is
    what Whisper heard."""
    if mode not in SPEECH_MODES:
        raise ValueError(f"speech mode must be one of {', '.join(SPEECH_MODES)}, got {mode!r}")
    vocab = None
    if bias and vocabulary is not None:
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary.build(vocabulary)
    audio = spaner.embed("audio", list(sources), names=names)
    heard: list[tuple[dict[str, Any], BiasedTranscript | None]] = [({}, None)] * len(sources)
    # ``auto`` transcribes with the model's own Whisper only; the others load one if needed
    whisper = transcriber_for(spaner, load_shared=mode != "auto") if mode != "audio" else None
    if whisper is not None:
        waves = [
            whisper.load(s, names[i] if names is not None else None) for i, s in enumerate(sources)
        ]
        heard = _heard(whisper, waves, vocab, beam_size, threshold if mode == "auto" else None)
    out = []
    for i, vec in enumerate(audio):
        h, biased = heard[i]
        said = h.get("text") or None
        text = biased.text if biased is not None else said
        p = h.get("no_speech_prob")
        usable = bool(text and _WORDLIKE.search(text))
        if mode == "audio" or not usable:
            used = "audio"
        elif mode == "transcript":
            used = "transcript"
        elif mode == "both":
            used = "both"
        else:
            used = "transcript" if p is not None and p < threshold else "audio"
        if used == "audio":
            q = vec
        else:
            t = spaner.embed("text", [text])[0]
            q = t if used == "transcript" else _unit(vec + t)
        match = biased.entry if biased is not None else None
        margin = biased.margin if biased is not None else None
        out.append(SpokenQuery(_unit(q), text, p, used, said, match, margin))
    return out
