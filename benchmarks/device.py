"""The accelerator benchmark: embedding from files, few-shot training and search, CPU against
the device, in one run that needs no network and prints JSON.

    python benchmarks/device.py --json            # on a CUDA machine: ~3 minutes
    python benchmarks/device.py --json --quick    # anywhere: small sizes

Sections (each one also runs on a machine without a GPU, at small sizes, and says so):

* ``embed``: ``Spaner.embed`` from JPEG files (640x480, written first) with open_clip ViT-B-32
  (random weights, the ``default`` profile's image tower) against the bare tower and the tower
  plus aligner on preprocessed batches in the same precision; the serial path this replaced
  (``Encoder.encode`` per batch of 32, then the aligner) on a subset; the largest distance
  between the streaming path's vectors and the serial path's.
* ``train``: few-shot training steps per second on cached features shaped like the ``offline``
  profile's (MiniLM text, EfficientNet-Lite0 image, Whisper audio tokens), CPU against device.
* ``search``: :mod:`benchmarks.device_search` (exact and IVF QPS and recall, device and CPU).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.append(
    str(Path(__file__).resolve().parent.parent)
)  # for `benchmarks`; spaner as installed

from benchmarks.machine import cpu_model  # noqa: E402

log = logging.getLogger("benchmarks.device")


def _machine() -> dict[str, Any]:
    import os

    out: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """``n`` JPEG photos-like files (smooth colour fields with edges, quality 90)."""
    from PIL import Image, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.BICUBIC).filter(ImageFilter.DETAIL)
        path = folder / f"img{i:06d}.jpg"
        img.save(path, "JPEG", quality=90)
        return path

    with ThreadPoolExecutor() as pool:
        return list(pool.map(one, range(n)))


def _rate(fn: Any, items: int, device: torch.device, repeat: int = 3) -> float:
    fn()  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return items / best


def bench_embed(device: torch.device, n_files: int, precision: str) -> dict[str, Any]:
    from spaner import Spaner

    opts = {"pretrained": None, "precision": precision}
    sp = Spaner.from_profile(
        "default",
        modalities=["text", "image"],
        options={"image": opts, "text": opts},
        device=str(device),
    )
    enc, model = sp.encoders["image"], sp.model
    model.eval()
    out: dict[str, Any] = {"precision": enc.compute_precision, "files": n_files}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = [str(p) for p in write_jpegs(Path(tmp), n_files)]
        log.info("wrote %d JPEG files in %.1f s", n_files, time.perf_counter() - t0)
        size = enc.pixel_plan.size if enc.pixel_plan else 224
        tower_batch = 256 if device.type == "cuda" else 32
        x = torch.randn(tower_batch, 3, size, size, device=device)

        def tower() -> None:
            enc.forward(x, to_cpu=False)

        def tower_aligner() -> None:
            with torch.no_grad():
                model.embed("image", enc.forward(x, to_cpu=False)).cpu()

        out["tower_img_s"] = _rate(tower, tower_batch, device)
        out["tower_aligner_img_s"] = _rate(tower_aligner, tower_batch, device)
        import os

        from spaner.model.streaming import StreamingEmbedder

        sp.embed("image", files[: min(len(files), 1024)])  # warm-up, batch size probe
        t0 = time.perf_counter()
        vecs = sp.embed("image", files)  # the defaults
        out["embed_img_s"] = n_files / (time.perf_counter() - t0)
        variants = {  # (JPEG decoder, decoding threads, switch interval)
            "device_decode_4_threads": ("device", 4, None),
            "device_decode_4_threads_switch_0.5ms": ("device", 4, 0.0005),
            "device_decode_all_threads_switch_0.5ms": ("device", None, 0.0005),
            "cpu_decode_all_threads": ("cpu", None, None),
        }
        out["variants_img_s"] = {}
        for label, (mode, workers, switch) in variants.items():
            if device.type != "cuda" and mode == "device":
                continue
            os.environ["SPANER_JPEG_DECODE"] = mode
            emb = StreamingEmbedder(enc, model, "image", workers=workers, switch_interval=switch)
            t0 = time.perf_counter()
            got = np.concatenate([part.vectors for part in emb.stream(files)])
            out["variants_img_s"][label] = n_files / (time.perf_counter() - t0)
            out[f"min_cosine_{label}"] = float((vecs * got).sum(1).min())
        os.environ.pop("SPANER_JPEG_DECODE", None)
        out["decode"] = bench_decode(files[:2048], device)
        if device.type == "cuda":  # the same random weights on the CPU, in fp32
            cpu = Spaner.from_profile(
                "default",
                modalities=["text", "image"],
                options={"image": {"pretrained": None, "precision": "fp32"}, "text": opts},
            )
            ref = cpu.embed("image", files[:32])
            out["min_cosine_cpu_fp32_to_device"] = float((ref * vecs[:32]).sum(1).min())
            with tempfile.TemporaryDirectory() as work:  # `spaner embed` (the ingest path)
                from spaner.ingest import embed as embed_files

                ckpt = sp.save(Path(work) / "ckpt")
                t0 = time.perf_counter()
                report = embed_files([tmp], ckpt, Path(work) / "out", device=str(device))
                seconds = time.perf_counter() - t0
                out["spaner_embed_cli_img_s"] = report.store_count / seconds
                out["spaner_embed_cli_stored"] = report.store_count
        subset = files[: min(256, n_files)]
        t0 = time.perf_counter()
        serial = []
        for s in range(0, len(subset), 32):
            feats = enc.encode(subset[s : s + 32])
            with torch.no_grad():
                serial.append(model.embed("image", feats).float().cpu().numpy())
        out["serial_img_s"] = len(subset) / (time.perf_counter() - t0)
        serial_v = np.concatenate(serial)
        cos = (serial_v * vecs[: len(subset)]).sum(1)
        out["min_cosine_to_serial"] = float(cos.min())
    out["embed_over_tower"] = out["embed_img_s"] / out["tower_img_s"]
    out["embed_over_tower_aligner"] = out["embed_img_s"] / out["tower_aligner_img_s"]
    return out


def bench_decode(files: list[str], device: torch.device) -> dict[str, float]:
    """Images per second of the decoders alone (no encoder), on the same files."""
    from PIL import Image
    from spaner.encoders.pixels import decode_jpegs, to_uint8

    from spaner.model.streaming import _cpu_jpeg

    datas = [Path(f).read_bytes() for f in files]
    n = len(datas)
    out: dict[str, float] = {}
    with ThreadPoolExecutor() as pool:
        t0 = time.perf_counter()
        list(pool.map(_cpu_jpeg, datas))
        out["libjpeg_threads_img_s"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        list(pool.map(lambda d: to_uint8(Image.open(io.BytesIO(d)).convert("RGB")), datas))
        out["pillow_threads_img_s"] = n / (time.perf_counter() - t0)
        if device.type == "cuda":
            decode_jpegs(datas[:64], device)
            for threads in (1, 4):
                parts = [datas[k::threads] for k in range(threads)]
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as gpu_pool:
                    list(gpu_pool.map(lambda part: decode_jpegs(part, device), parts))
                torch.cuda.synchronize()
                out[f"nvjpeg_{threads}_threads_img_s"] = n / (time.perf_counter() - t0)
    return out


_OFFLINE = {  # the offline profile's model: widths, native dims, token counts per item
    "text": (384, 384, 10, True),
    "image": (1280, 384, 49, True),
    "audio": (384, None, 125, False),
}


def _feature_set(concepts: int, shots: int, seed: int) -> Any:
    from spaner.encoders.base import ItemTokens

    from spaner.training.data import FeatureSet, ModalityFeatures

    gen = torch.Generator().manual_seed(seed)
    fs = FeatureSet()
    for m, (width, native, tokens, _) in _OFFLINE.items():
        items, labels = [], []
        for c in range(concepts):
            for _ in range(shots):
                t = torch.randn(tokens, width, generator=gen)
                n = torch.randn(native, generator=gen) if native else None
                items.append(ItemTokens(t, n))
                labels.append(c)
        fs.modalities[m] = ModalityFeatures(
            items, torch.tensor(labels), [f"{m}{i}" for i in range(len(items))], [None] * len(items)
        )
    return fs


def _offline_model() -> Any:
    from spaner.model.config import AlignerConfig, ModalityConfig, SpanerConfig, from_dict
    from spaner.model.network import SpanerModel
    from spaner.profiles import get_profile

    aligner = from_dict(AlignerConfig, get_profile("offline").aligner)
    mods = {
        m: ModalityConfig(f"{m}-encoder", width, {}, "minilm" if native else None, native, use)
        for m, (width, native, _, use) in _OFFLINE.items()
    }
    torch.manual_seed(0)
    return SpanerModel(SpanerConfig(aligner=aligner, modalities=mods, profile="offline"))


def bench_train(
    devices: list[torch.device], concepts: int, shots: int, epochs: int
) -> dict[str, Any]:
    from spaner.profiles import resolve_train_config
    from spaner.training.fit import fit

    train = _feature_set(concepts, shots, 0)
    out: dict[str, Any] = {"items_per_modality": concepts * shots, "epochs": epochs}
    for device in devices:
        warm = resolve_train_config("offline", {"epochs": 1, "min_epochs": 1, "keep": "last"})
        fit(_offline_model().to(device), train, None, warm, progress=False)  # kernels, threads
        model = _offline_model().to(device)
        cfg = resolve_train_config(
            "offline", {"epochs": epochs, "min_epochs": epochs, "keep": "last"}
        )
        batches = -(-3 * concepts * shots // cfg.batch_size)
        t0 = time.perf_counter()
        result = fit(model, train, None, cfg, progress=False)
        _sync(device)
        seconds = time.perf_counter() - t0
        out[device.type] = {
            "steps_s": batches * result.epochs_run / seconds,
            "seconds": seconds,
            "final_loss": result.train_loss[-1],
        }
    if len(devices) == 2:
        out["device_over_cpu"] = out["cuda"]["steps_s"] / out["cpu"]["steps_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true", help="small sizes (any machine)")
    p.add_argument("--files", type=int, help="JPEG files to embed")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--skip", default="", help="sections to skip, e.g. search,train")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        log.info("no CUDA device: measuring the CPU only")
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {"machine": _machine(), "device": device.type}
    if "embed" not in skip:
        n = args.files or (128 if args.quick or not cuda else 8192)
        results["embed"] = bench_embed(device, n, args.precision)
        log.info("embed: %s", results["embed"])
    if "train" not in skip:
        devices = [torch.device("cpu")] + ([device] if cuda else [])
        concepts, epochs = (20, 2) if args.quick else (100, 20)
        results["train"] = bench_train(devices, concepts, 5, epochs)
        log.info("train: %s", results["train"])
    if "search" not in skip:
        try:
            from benchmarks import device_search
        except ImportError as exc:
            results["search"] = {"error": f"benchmarks/device_search.py not available: {exc}"}
        else:
            sargs = ["--quick"] if (args.quick or not cuda) else []
            results["search"] = device_search.run(device_search.parse(sargs))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        for section, value in results.items():
            print(section, value)


if __name__ == "__main__":
    main()
