"""Encoding speed of the real-weight audio encoders on this machine, in one run.

For each encoder (by default ``speech-embedding-audio`` and ``whisper-tiny-en-audio``; with
CLAP's weights ``--encoders clap-htsat-unfused-audio``; without them ``clap-htsat-unfused-random``,
the same architecture with random weights (timing does not depend on the values), and
``tiny-clap-audio``, the tests' random tiny CLAP: both run the CLAP code path, 48-kHz front end
included) this times the whole per-clip path a user pays on ingest and search: WAV bytes -> decode -> resample
-> silence trim + peak normalisation -> the model's front end -> the frozen backbone
(``Encoder.encode``), on clips of eSpeak speech cut to ``--seconds`` each, and reports

* clips/s at batch 1 (clips encoded one at a time) and at batch 32 (one call per 32 clips);
* audio-seconds/s: input audio seconds encoded per wall-clock second;
* CPU ms per clip (process CPU time over all threads), which other processes on a shared
  machine disturb less than the wall clock.

The speech embedding and Whisper run fp32 only (``bf16_capable = False``: TFLite and CTranslate2
pick their own kernels); encoders with torch modules (CLAP) run in ``--precision`` (``auto``:
bf16 where it is faster), named in each row. Encoders are timed interleaved, repeat by repeat, so
machine load hits them alike; the median over repeats is reported, with the load average.

    .venv/bin/python benchmarks/audio_encoder_speed.py [--seconds 1] [--repeats 5] [--json]
    .venv/bin/python benchmarks/audio_encoder_speed.py --encoders tiny-clap-audio --precision fp32

The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import soundfile as sf
import torch
from machine import cpu_model

RATE = 16000
TEXT = (
    "the quick brown fox jumps over the lazy dog while seven frogs sing by the river "
    "and a yellow bus stops at the corner near the old bakery on the hill"
)


def _clips(n: int, seconds: float) -> list[bytes]:
    """``n`` WAV clips of ``seconds`` each, cut from eSpeak speech (several voices and rates)."""
    from spaner.datasets.espeak import SpeechRequest, synthesize_many

    reqs = [SpeechRequest(TEXT, rate=r, pitch=p) for r, p in [(150, 40), (175, 50), (200, 65)]]
    speech = [
        s.astype(np.float32) / 32768.0 for _, s, _ in sorted(synthesize_many(reqs, out_rate=RATE))
    ]
    step = int(seconds * RATE)
    pieces = [x[i : i + step] for x in speech for i in range(0, x.size - step + 1, step)]
    out = []
    for k in range(n):
        buf = io.BytesIO()
        sf.write(buf, pieces[k % len(pieces)], RATE, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


def _random_clap() -> Any:
    """clap-htsat-unfused's architecture (HTSAT-tiny, 512-d projection) with random weights."""
    from spaner.encoders.clap_encoder import TINY_CLAP, ClapAudioEncoder

    arch = {"audio": {}, "text": {}, "projection_dim": 512, "extractor": TINY_CLAP["extractor"]}
    return ClapAudioEncoder("clap-htsat-unfused-random", tiny=arch)


#: names built here rather than from the registry
RANDOM = {"clap-htsat-unfused-random": _random_clap}


def _time(fn: Any) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of ``fn()``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run(
    names: list[str], seconds: float, repeats: int, batch: int, precision: str = "auto"
) -> dict[str, Any]:
    from spaner.encoders import build_encoder

    clips = _clips(batch, seconds)
    encoders = {}
    for name in names:
        t0 = time.perf_counter()
        enc = RANDOM[name]() if name in RANDOM else build_encoder(name)
        encoders[name] = enc.set_precision(precision)
        load_s = time.perf_counter() - t0
        enc = encoders[name]
        tokens = enc.encode(clips[:1]).mask.sum().item()  # warm-up
        enc.encode(clips)  # warm-up at the large batch (allocations, plans)
        encoders[name] = (enc, load_s, int(tokens))
    times: dict[str, dict[int, list[tuple[float, float]]]] = {n: {1: [], batch: []} for n in names}
    for _ in range(repeats):
        for name in names:
            enc = encoders[name][0]
            times[name][1].append(_time(lambda enc=enc: [enc.encode([c]) for c in clips]))
            times[name][batch].append(_time(lambda enc=enc: enc.encode(clips)))
    rows = []
    for name in names:
        enc, load_s, tokens = encoders[name]
        for b in (1, batch):
            med = statistics.median(t for t, _ in times[name][b])
            cpu = statistics.median(c for _, c in times[name][b])
            rows.append(
                {
                    "encoder": name,
                    "batch": b,
                    "precision": enc.compute_precision,
                    "clips_per_s": round(len(clips) / med, 1),
                    "audio_s_per_s": round(len(clips) * seconds / med, 1),
                    "ms_per_clip": round(1000 * med / len(clips), 1),
                    "cpu_ms_per_clip": round(1000 * cpu / len(clips), 1),
                    "tokens_per_clip": tokens,
                    "width": enc.width,
                    "load_s": round(load_s, 2),
                }
            )
    return {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "clip_seconds": seconds,
        "clips": len(clips),
        "repeats": repeats,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--encoders", default="speech-embedding-audio,whisper-tiny-en-audio", help="comma-separated"
    )
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each clip")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line last")
    args = ap.parse_args(argv)
    res = run(
        [n.strip() for n in args.encoders.split(",") if n.strip()],
        args.seconds,
        args.repeats,
        args.batch,
        args.precision,
    )
    m = res["machine"]
    print(
        f"CPU: {m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']}, "
        f"1-min load average at the end {m['loadavg_1m_at_end']})"
    )
    print(
        f"{res['clips']} clips of {res['clip_seconds']:g} s of eSpeak speech, median of {res['repeats']} repeats, "
        "WAV bytes -> tokens (Encoder.encode)"
    )
    hdr = f"{'encoder':<24} {'batch':>5} {'prec':>5} {'clips/s':>8} {'audio-s/s':>9} {'ms/clip':>8} {'cpu-ms/clip':>11} {'tokens':>6}"
    print(hdr)
    for r in res["rows"]:
        print(
            f"{r['encoder']:<24} {r['batch']:>5} {r['precision']:>5} {r['clips_per_s']:>8} "
            f"{r['audio_s_per_s']:>9} {r['ms_per_clip']:>8} {r['cpu_ms_per_clip']:>11} {r['tokens_per_clip']:>6}"
        )
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
