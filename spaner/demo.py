"""The embedded offline demo: digits collection -> few-shot SPANER -> store -> API + UI.

Every step reuses what an earlier run left in ``workdir`` (the data set, the frozen-feature
cache, the checkpoint, the store), so the first run builds everything and later runs start
in seconds. A step is redone only when what it depends on changed (recorded in
``workdir/demo.json``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spaner.checkpoint import checkpoint_hash
from spaner.config import TrainConfig
from spaner.features import FeatureCache

__all__ = ["DemoConfig", "prepare_demo", "serve_demo"]

log = logging.getLogger(__name__)

STATE_FILE = "demo.json"


@dataclass
class DemoConfig:
    workdir: Path = Path(".spaner-demo")
    shots: int = 5
    seed: int = 0
    profile: str = "offline"
    host: str = "127.0.0.1"
    port: int = 7860
    #: digits build settings (``None``: the full default collection)
    digits: Any = None
    #: extra TrainConfig fields (e.g. ``{"epochs": 60}``) for quick builds and tests
    train: dict[str, Any] = field(default_factory=dict)


def _load_state(workdir: Path) -> dict[str, Any]:
    try:
        return json.loads((workdir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _save_state(workdir: Path, state: dict[str, Any]) -> None:
    tmp = workdir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, workdir / STATE_FILE)


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_demo(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse) the digits set, the checkpoint and the store; returns what was done.

    Runs torch on ``SPANER_DEMO_THREADS`` threads (default 1) and restores the setting after:
    the few-shot model is small, and on the shared 2-core build machine (load ~7) training
    took 340 s on 2 threads against 86 s on 1 (same result), indexing 37 s against 16 s.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("SPANER_DEMO_THREADS", "1"))))
    try:
        return _prepare_demo(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _prepare_demo(cfg: DemoConfig, progress: bool) -> dict[str, Any]:
    from spaner.datasets.digits import DigitsConfig, build_digits
    from spaner.ingest import ingest
    from spaner.pipeline import Spaner

    work = cfg.workdir
    work.mkdir(parents=True, exist_ok=True)
    state = _load_state(work)
    timings: dict[str, float] = {}
    data, ckpt, store = work / "digits", work / "checkpoint", work / "store"
    manifest = data / "manifest.jsonl"

    t = time.perf_counter()
    if not manifest.is_file():
        log.info("building the digits collection in %s", data)
        build_digits(
            data,
            cfg.digits or DigitsConfig(seed=cfg.seed),
            overwrite=data.exists(),
            progress=progress,
        )
    timings["dataset"] = time.perf_counter() - t
    data_hash = _file_hash(manifest)

    t = time.perf_counter()
    from spaner.profiles import get_profile

    prof = get_profile(
        cfg.profile
    )  # encoders and every training setting (defaults too): a change retrains
    train_key = {
        "data": data_hash,
        "shots": cfg.shots,
        "seed": cfg.seed,
        "profile": cfg.profile,
        **({"train": cfg.train} if cfg.train else {}),
        "encoders": prof.encoders,
        "aligner": prof.aligner,
        "train_config": asdict(TrainConfig(shots=cfg.shots, seed=cfg.seed, **cfg.train)),
    }
    if state.get("train") != train_key or not (ckpt / "model.safetensors").is_file():
        log.info(
            "training SPANER few-shot (%d shots per digit per modality, profile %s)",
            cfg.shots,
            cfg.profile,
        )
        sp = Spaner.from_profile(cfg.profile)
        tcfg = TrainConfig(shots=cfg.shots, seed=cfg.seed, **cfg.train)
        prepared = sp.prepare(manifest, tcfg, FeatureCache(work / "cache"))
        result = sp.fit(prepared, tcfg, progress=progress)
        from spaner.compare import evaluate_model

        retrieval, coherence = evaluate_model(sp.model, prepared.test)
        sp.save(
            ckpt,
            extra={
                "train": result.to_dict(),
                "train_config": asdict(tcfg),
                "test": {"retrieval": retrieval, "coherence": coherence},
                "demo": True,
            },
        )
        state["train"] = train_key
        state["test_r1"] = {d: m["R@1"] for d, m in retrieval.items()}
        state.pop("store", None)
        _save_state(work, state)
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    space = checkpoint_hash(ckpt)
    if state.get("store") != space and store.exists():
        log.info("the model changed: rebuilding the demo store")
        shutil.rmtree(store)
    done = {"space": space, "data": data_hash}
    count = _complete_store_count(store, state, done)
    if count is not None:  # this data set is fully indexed with this model: nothing to read again
        added = 0
    else:
        report = ingest(
            [manifest], store, checkpoint=ckpt if not store.exists() else None, progress=progress
        )
        if report.bad:
            log.warning(
                "%d demo items were skipped: %s",
                len(report.bad),
                "; ".join(map(str, report.bad[:3])),
            )
        count, added = report.store_count, report.added
        state["store"] = space
        state["ingested"] = {**done, "items": count}
        _save_state(work, state)
    timings["ingest"] = time.perf_counter() - t
    log.info("store %s holds %d items (%d added now)", store, count, added)
    return {
        "timings": timings,
        "store": str(store),
        "checkpoint": str(ckpt),
        "items": count,
        "added": added,
        "test_r1": state.get("test_r1", {}),
    }


def _complete_store_count(store: Path, state: dict[str, Any], done: dict[str, str]) -> int | None:
    """The store's item count if an earlier run indexed this data with this model and the
    store still holds exactly what it recorded; ``None`` when ingest must run (it is
    resumable, so running it is always safe, only slower)."""
    from spaner.index import open_store

    recorded = state.get("ingested") or {}
    if state.get("store") != done["space"] or {k: recorded.get(k) for k in done} != done:
        return None
    try:
        with open_store(store, None, read_only=True) as s:  # only counts
            count = s.count()
    except Exception as exc:  # a damaged or missing store: let ingest rebuild or repair it
        log.info("re-checking the demo store (%s)", exc)
        return None
    return count if count == recorded.get("items") else None


def serve_demo(cfg: DemoConfig) -> None:
    """Serve the demo store with the API and the UI (blocks)."""
    import uvicorn

    from spaner.app.main import create_app
    from spaner.app.settings import Settings

    settings = Settings(
        store=cfg.workdir / "store", host=cfg.host, port=cfg.port, profile=cfg.profile
    )
    app = create_app(settings)
    url = f"http://{cfg.host}:{cfg.port}"
    print(
        f"\nSPANER demo ready: {url}/ui/  (API {url}/v1, docs {url}/docs); Ctrl-C stops it\n",
        flush=True,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
