"""Offline speech synthesis: a small ctypes wrapper around eSpeak NG.

The library and its data (voices, variants, dictionaries) come from the
``espeakng-loader`` wheel, so no system package is needed. eSpeak NG keeps global state,
so the library is initialised once per process and every call runs under one lock.

One piece of that state matters for reproducibility: the pitch "flutter" phase advances
with every sample spoken and is never reset, so the same call gives slightly different
audio depending on what the process said before. :func:`synthesize_many` speaks each
utterance in a forked child of a small helper process that never speaks itself (several
at once), so each result depends only on its own arguments.

Example::

    from spaner.datasets.espeak import synthesize

    wave, rate = synthesize("seven", voice="en-us+f2", rate=170, pitch=50)
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spaner.errors import SpanerError

__all__ = [
    "EspeakError",
    "Espeak",
    "SpeechRequest",
    "synthesize",
    "synthesize_many",
    "synthesize_isolated",
    "sample_rate",
    "version",
]

log = logging.getLogger(__name__)

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_INSTALL_HINT = "install it with: pip install espeakng-loader"

# int callback(short *wav, int numsamples, espeak_EVENT *events); only the pointer is used.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(SpanerError, RuntimeError):
    """eSpeak NG could not be loaded, did not know a voice, or failed to synthesise."""


@dataclass(frozen=True)
class _Loaded:
    lib: ctypes.CDLL
    sample_rate: int
    version: str
    has_rand_seed: bool
    variants: frozenset[str]


class Espeak:
    """Process-wide handle on libespeak-ng. Use :func:`synthesize` rather than this class."""

    _lock = threading.Lock()
    _loaded: _Loaded | None = None
    _chunks: list[np.ndarray] = []
    #: Set once this process has synthesised: eSpeak's pitch-flutter phase has moved on.
    _spoken = False
    # Kept on the class so ctypes never frees the trampoline while the library holds it.
    _callback = None

    @classmethod
    def _load(cls) -> _Loaded:
        """Load and initialise the library; the caller holds ``_lock``."""
        if cls._loaded is not None:
            return cls._loaded
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EspeakError(
                f"speech synthesis needs the espeakng-loader package; {_INSTALL_HINT}"
            ) from exc
        lib_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as exc:
            raise EspeakError(
                f"cannot load eSpeak NG from {lib_path}: {exc}; reinstall espeakng-loader"
            ) from exc

        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p

        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise EspeakError(
                f"eSpeak NG failed to initialise with data at {data_path}; reinstall espeakng-loader"
            )

        def _collect(wav: ctypes.POINTER(ctypes.c_short), n: int, _events: int) -> int:
            if n > 0 and wav:
                cls._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        cls._callback = _SYNTH_CALLBACK(_collect)
        lib.espeak_SetSynthCallback(cls._callback)
        has_seed = hasattr(lib, "espeak_ng_SetRandSeed")
        if has_seed:
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None
        version = (lib.espeak_Info(None) or b"unknown").decode(errors="replace")
        variant_dir = os.path.join(data_path, "voices", "!v")
        variants = frozenset(os.listdir(variant_dir)) if os.path.isdir(variant_dir) else frozenset()
        cls._loaded = _Loaded(
            lib=lib,
            sample_rate=int(rate),
            version=version,
            has_rand_seed=has_seed,
            variants=variants,
        )
        log.debug("eSpeak NG %s loaded from %s (%d Hz)", version, lib_path, rate)
        return cls._loaded

    @classmethod
    def info(cls) -> _Loaded:
        with cls._lock:
            return cls._load()

    @classmethod
    def synthesize(
        cls, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int
    ) -> np.ndarray:
        with cls._lock:
            loaded = cls._load()
            lib = loaded.lib
            _, _, variant = voice.partition("+")
            if variant and loaded.variants and variant not in loaded.variants:
                # eSpeak silently falls back to the plain voice for an unknown variant.
                raise EspeakError(f"eSpeak NG has no voice variant {variant!r} (in {voice!r})")
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(f"eSpeak NG does not know the voice {voice!r}")
            for param, value in (
                (_RATE, rate),
                (_PITCH, pitch),
                (_RANGE, pitch_range),
                (_VOLUME, 100),
            ):
                if lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                    raise EspeakError(f"eSpeak NG rejected parameter {param}={value}")
            if loaded.has_rand_seed:
                lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            data = text.encode("utf-8") + b"\0"
            cls._spoken = True
            cls._chunks = []
            try:
                status = lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                if status == _EE_OK:
                    status = lib.espeak_Synchronize()
                chunks, cls._chunks = cls._chunks, []
            finally:
                cls._chunks = []
            if status != _EE_OK:
                raise EspeakError(
                    f"eSpeak NG failed to synthesise {text!r} with {voice!r} (status {status})"
                )
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


def synthesize(
    text: str,
    voice: str = "en",
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    seed: int = 0,
    out_rate: int | None = None,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with eSpeak NG; return ``(int16 samples, sample rate)``.

    ``voice`` is a voice name with an optional variant (``"en+m3"``, ``"en-us+klatt"``),
    ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are 0-100.
    ``seed`` seeds eSpeak's internal noise source (Klatt voices); ``out_rate`` resamples
    from the native rate (22050 Hz) to that rate. Thread-safe; raises
    :class:`EspeakError` if the library or the voice is missing.
    """
    if not text.strip():
        raise EspeakError("nothing to synthesise: the text is empty")
    samples = Espeak.synthesize(text, voice, rate, pitch, pitch_range, seed)
    return _resample(samples, Espeak.info().sample_rate, out_rate)


@functools.lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """The FIR filter scipy's ``resample_poly`` designs by default, designed once."""
    from scipy.signal import firwin  # scipy comes with scikit-learn

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def _resample(samples: np.ndarray, native: int, out_rate: int | None) -> tuple[np.ndarray, int]:
    if not out_rate or out_rate == native or samples.size == 0:
        return samples, native
    from scipy.signal import resample_poly

    g = int(np.gcd(native, out_rate))
    up, down = out_rate // g, native // g
    wave = resample_poly(samples.astype(np.float64), up, down, window=_resample_filter(up, down))
    return np.clip(np.rint(wave), -32768, 32767).astype(np.int16), out_rate


@dataclass(frozen=True)
class SpeechRequest:
    """One utterance for :func:`synthesize_many`; fields as in :func:`synthesize`."""

    text: str
    voice: str = "en"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    seed: int = 0


def _fork_speaker(request: SpeechRequest) -> tuple[int, int]:
    """Fork a child that speaks ``request`` into a pipe; returns ``(pid, read_fd)``."""
    read_fd, write_fd = os.pipe()
    with Espeak._lock:  # no thread is inside eSpeak while we fork
        pid = os.fork()
    if pid != 0:
        os.close(write_fd)
        return pid, read_fd
    code = 0  # pragma: no cover - the rest runs in the child
    try:
        os.close(read_fd)
        r = request
        samples = Espeak.synthesize(r.text, r.voice, r.rate, r.pitch, r.pitch_range, r.seed)
        payload = b"K" + samples.tobytes()
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        payload, code = b"E" + str(exc).encode(errors="replace"), 1
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(code)


def _speak_forked(requests: list[SpeechRequest], workers: int) -> Iterator[tuple[int, np.ndarray]]:
    """Each request in its own forked child of this (never-spoken) process, ``workers`` at once."""
    if Espeak._spoken:
        raise EspeakError("reproducible synthesis needs a process that has not used synthesize()")
    Espeak.info()  # load once, before forking
    pending = list(enumerate(requests))[::-1]
    running: dict[int, tuple[int, int, bytearray]] = {}  # fd -> (pid, position, data)
    selector = selectors.DefaultSelector()
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                pos, request = pending.pop()
                pid, fd = _fork_speaker(request)
                running[fd] = (pid, pos, bytearray())
                selector.register(fd, selectors.EVENT_READ)
            for key, _ in selector.select():
                pid, pos, data = running[key.fd]
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    data += chunk
                    continue
                selector.unregister(key.fd)
                os.close(key.fd)
                del running[key.fd]
                _, status = os.waitpid(pid, 0)
                if data[:1] == b"E":
                    raise EspeakError(data[1:].decode(errors="replace"))
                if data[:1] != b"K" or status != 0:
                    raise EspeakError(f"eSpeak NG crashed on {requests[pos]!r} (status {status})")
                yield pos, np.frombuffer(bytes(data[1:]), dtype=np.int16)
    finally:
        for fd, (pid, _, _) in running.items():
            selector.unregister(fd)
            os.close(fd)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        selector.close()


_HEADER = struct.Struct("<iI")  # position (-1: error message follows), byte count


def _serve() -> None:
    """Helper-process entry: requests as JSON lines on stdin, results framed on stdout."""
    lines = sys.stdin.read().splitlines()
    workers = int(json.loads(lines[0])["workers"])
    requests = [SpeechRequest(**json.loads(line)) for line in lines[1:]]
    out = sys.stdout.buffer
    try:
        for pos, samples in _speak_forked(requests, workers):
            out.write(_HEADER.pack(pos, samples.nbytes) + samples.tobytes())
    except EspeakError as exc:
        message = str(exc).encode(errors="replace")
        out.write(_HEADER.pack(-1, len(message)) + message)
    out.flush()


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def synthesize_many(
    requests: Iterable[SpeechRequest], workers: int = 2, out_rate: int | None = None
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Speak every request reproducibly; yield ``(position, int16 samples, rate)`` as each ends.

    The requests go to a small helper process whose eSpeak never speaks itself: it forks
    one child per utterance (up to ``workers`` at once), so every result depends only on
    its request, not on order, ``workers`` or what this process said before, and forking
    stays cheap however large this process is. Without ``os.fork`` it falls back to
    :func:`synthesize` in order, with a warning that output then depends on order.
    """
    requests = list(requests)
    if any(not r.text.strip() for r in requests):
        raise EspeakError("nothing to synthesise: a text is empty")
    native = Espeak.info().sample_rate
    if not hasattr(os, "fork"):
        log.warning("os.fork is unavailable: eSpeak output will depend on call order")
        for pos, r in enumerate(requests):
            samples, rate = synthesize(
                r.text, r.voice, r.rate, r.pitch, r.pitch_range, r.seed, out_rate
            )
            yield pos, samples, rate
        return
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-c", "from spaner.datasets.espeak import _serve; _serve()"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as helper:
        try:
            lines = [json.dumps({"workers": workers})] + [json.dumps(asdict(r)) for r in requests]
            helper.stdin.write(("\n".join(lines) + "\n").encode())
            helper.stdin.close()
            for _ in requests:
                pos, size = _HEADER.unpack(_read_exact(helper.stdout, _HEADER.size))
                payload = _read_exact(helper.stdout, size)
                if pos < 0:
                    raise EspeakError(payload.decode(errors="replace"))
                samples = np.frombuffer(payload, dtype=np.int16)
                yield (pos, *_resample(samples, native, out_rate))
        except (EOFError, BrokenPipeError) as exc:
            helper.wait()
            detail = helper.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
            raise EspeakError(
                f"the eSpeak helper process failed: {' '.join(detail) or exc}"
            ) from exc
        finally:
            if helper.poll() is None:
                helper.kill()


def synthesize_isolated(
    text: str,
    voice: str = "en",
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    seed: int = 0,
    out_rate: int | None = None,
) -> tuple[np.ndarray, int]:
    """Like :func:`synthesize`, but reproducible: the same arguments give the same samples
    whatever was spoken before (see :func:`synthesize_many`)."""
    request = SpeechRequest(text, voice, rate, pitch, pitch_range, seed)
    (_, samples, sr), *_ = synthesize_many([request], workers=1, out_rate=out_rate)
    return samples, sr


def sample_rate() -> int:
    """The native sample rate of the loaded eSpeak NG library (22050 Hz)."""
    return Espeak.info().sample_rate


def version() -> str:
    """The eSpeak NG library version string."""
    return Espeak.info().version
