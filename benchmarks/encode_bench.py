"""Encoding speed of the default profile's architectures on this machine, fp32 against bf16.

For open_clip ViT-B-32 (image and text towers) and HuBERT Base (audio), all with random
weights (timing does not depend on the values; nothing is downloaded), this measures

* throughput (images/s, texts/s, audio-seconds/s) at batch 1 and 32, in fp32 and bf16 autocast;
* spaner's ingest path (``Encoder.preprocess`` + ``Encoder.forward`` + ``SpanerModel.embed``)
  against the bare backbone forward on the same preprocessed batches, timed interleaved in
  the same run, as a ratio (1.0 = no overhead; target >= 0.85);
* the agreement of bf16 with fp32: cosine of the native embeddings (image, text) or of the
  mean-pooled frame features (audio), min over the batch.

    .venv/bin/python benchmarks/encode_bench.py [--repeats 5] [--audio-seconds 2] [--json]

The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _machine() -> dict[str, Any]:
    from spaner.encoders.base import _cpu_flags, bf16_supported

    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    flags = sorted(_cpu_flags() & {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2"})
    return {
        "cpu": model or platform.processor(),
        "threads": torch.get_num_threads(),
        "flags": flags,
        "bf16_native": bf16_supported("cpu"),
        "torch": torch.__version__,
    }


def _time_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately (one warm-up each) so load hits both alike."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)  # noqa: E702
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)  # noqa: E702
    return statistics.median(ta), statistics.median(tb)


def _autocast(precision: str):
    import contextlib

    return (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )


def _inputs(kind: str, n: int, audio_seconds: float, rng: np.random.Generator) -> list[Any]:
    if kind == "image":
        from PIL import Image

        return [
            Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(n)
        ]
    if kind == "text":
        words = [
            "a",
            "photo",
            "of",
            "the",
            "dog",
            "cat",
            "barking",
            "seven",
            "handwritten",
            "digit",
            "spoken",
            "red",
            "car",
            "street",
            "night",
        ]
        return [" ".join(rng.choice(words, size=int(rng.integers(4, 14)))) for _ in range(n)]
    return [
        torch.from_numpy(rng.standard_normal(int(audio_seconds * 16000)).astype(np.float32) * 0.1)
        for _ in range(n)
    ]


def _bare(kind: str, enc: Any) -> Callable[[Any], torch.Tensor]:
    """The backbone's own forward on a preprocessed batch (what a bare script would call)."""
    if kind == "image":
        return lambda x: enc.backbone.model.encode_image(x)
    if kind == "text":
        return lambda x: enc.backbone.model.encode_text(x)
    return lambda b: enc.model(b[0], b[1])[0]


def _ingest(enc: Any, model: Any, kind: str, raws: list[Any]) -> torch.Tensor:
    """spaner's ingest path on decoded inputs: preprocess, frozen forward, aligner."""
    batch = enc.forward(enc.preprocess(raws))
    with torch.no_grad():
        model.embed(kind, batch)
    if batch.native is not None:
        return batch.native
    return (batch.tokens * batch.mask.unsqueeze(-1)).sum(1) / batch.mask.sum(1, keepdim=True)


def _backbone(
    enc: Any, bare: Callable[[Any], torch.Tensor], raws: list[Any], precision: str
) -> torch.Tensor:
    x = enc.preprocess(raws)
    with torch.no_grad(), _autocast(precision):
        return bare(x)


def bench(
    repeats: int,
    audio_seconds: float,
    batches: tuple[int, ...],
    modalities: tuple[str, ...] = ("image", "text", "audio"),
) -> dict[str, Any]:
    from spaner.encoders.open_clip_encoder import OpenClipImageEncoder, OpenClipTextEncoder
    from spaner.encoders.torchaudio_encoder import TorchaudioEncoder
    from torchaudio.pipelines import HUBERT_BASE

    from spaner.config import AlignerConfig
    from spaner.model import SpanerModel
    from spaner.pipeline import build_model_config
    from spaner.profiles import get_profile

    encs = {
        "image": OpenClipImageEncoder("bench-vit-b-32-image", "ViT-B-32", pretrained=None),
        "text": OpenClipTextEncoder("bench-vit-b-32-text", "ViT-B-32", pretrained=None),
        "audio": TorchaudioEncoder("bench-hubert-base-audio", arch=dict(HUBERT_BASE._params)),
    }
    config = build_model_config(
        encs, AlignerConfig(**get_profile("default").aligner), profile="default"
    )
    torch.manual_seed(0)
    model = SpanerModel(config).eval()
    rng = np.random.default_rng(0)
    unit = {"image": "images/s", "text": "texts/s", "audio": "audio-seconds/s"}
    rows: list[dict[str, Any]] = []
    for kind, enc in encs.items():
        if kind not in modalities:
            continue
        bare = _bare(kind, enc)
        for bs in batches:
            raws = _inputs(kind, bs, audio_seconds, rng)
            per_item = audio_seconds if kind == "audio" else 1.0
            outs: dict[str, torch.Tensor] = {}
            for precision in ("fp32", "bf16"):
                enc.set_precision(precision)

                ingest = functools.partial(_ingest, enc, model, kind, raws)
                backbone = functools.partial(_backbone, enc, bare, raws, precision)
                t_ingest, t_bare = _time_pair(ingest, backbone, repeats)
                outs[precision] = ingest().float()
                rows.append(
                    {
                        "modality": kind,
                        "batch": bs,
                        "precision": precision,
                        "unit": unit[kind],
                        "backbone_per_s": round(bs * per_item / t_bare, 2),
                        "spaner_ingest_per_s": round(bs * per_item / t_ingest, 2),
                        "ingest_vs_backbone": round(t_bare / t_ingest, 3),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            cos = F.cosine_similarity(outs["fp32"], outs["bf16"], dim=-1)
            for r in rows[-2:]:
                r["bf16_cosine_min"] = round(float(cos.min()), 6)
                r["bf16_cosine_mean"] = round(float(cos.mean()), 6)
        enc.set_precision("auto")
    return {
        "machine": _machine(),
        "repeats": repeats,
        "audio_clip_seconds": audio_seconds,
        "rows": rows,
    }


def format_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['threads']} torch threads, flags {', '.join(m['flags'])}; torch {m['torch']}; "
        f"bf16 native: {m['bf16_native']}. Random weights, median of {report['repeats']} interleaved repeats; "
        f"audio clips of {report['audio_clip_seconds']} s.",
        "",
        "| modality | batch | precision | backbone /s | spaner ingest /s | ingest / backbone | bf16 vs fp32 cosine (min) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['modality']} ({r['unit']}) | {r['batch']} | {r['precision']} | {r['backbone_per_s']:.1f} | "
            f"{r['spaner_ingest_per_s']:.1f} | {r['ingest_vs_backbone']:.3f} | {r['bf16_cosine_min']:.6f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per measurement (median reported)"
    )
    p.add_argument(
        "--audio-seconds", type=float, default=2.0, help="length of each synthetic audio clip"
    )
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    p.add_argument(
        "--modalities", default="image,text,audio", help="comma-separated towers to time"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    args = p.parse_args(argv)
    report = bench(
        args.repeats,
        args.audio_seconds,
        tuple(int(b) for b in args.batches.split(",")),
        tuple(m.strip() for m in args.modalities.split(",")),
    )
    print(format_markdown(report))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
