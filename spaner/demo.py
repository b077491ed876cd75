"""The embedded offline demo: a real collection -> few-shot SPANER -> store -> API + UI.

The collection is Tux Paint's real photos, sounds, labels and spoken descriptions (Debian's
``tuxpaint-stamps-default``, see :mod:`spaner.datasets.tuxpaint`) with the ``offline`` profile;
when the package cannot be had it falls back to the digits collection (``digits`` profile) and
says why. The digits are not served beside the photos: no one image encoder serves both
(EfficientNet-Lite0 probes .55 on 8x8 digits, the random conv net .88; README, "Profiles").

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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spaner.model.checkpoint import checkpoint_hash
from spaner.training.features import FeatureCache

__all__ = ["DemoConfig", "prepare_demo", "serve_demo"]

log = logging.getLogger(__name__)

STATE_FILE = "demo.json"


@dataclass
class DemoConfig:
    workdir: Path = Path(".spaner-demo")
    shots: int = 5
    seed: int = 0
    #: ``tuxpaint`` (falls back to ``digits`` when the package cannot be had) or ``digits``
    collection: str = "tuxpaint"
    #: the profile; ``None``: ``offline`` for tuxpaint, ``digits`` for digits
    profile: str | None = None
    #: a stamps folder or .deb for the tuxpaint collection (default: installed, else apt-get)
    source: Path | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    #: digits build settings (``None``: the full default collection)
    digits: Any = None
    #: TrainConfig fields over the profile's training defaults (e.g. ``{"epochs": 60}`` for quick
    #: builds and tests); ``None``: :data:`TRAIN` for the collection
    train: dict[str, Any] | None = None
    #: on a first run, write the server's bytecode in a child process meanwhile (the CLI sets it
    #: when it will serve; see :func:`_warm_server_bytecode`)
    warm_server: bool = False
    #: Whisper transcripts of the clips (:mod:`spaner.ingest.transcripts`; a change rebuilds the
    #: store). Opt-in: ``auto`` adds 76 s to a ~4-min first run (190 clips, 0.4 s each on 2 EPYC
    #: cores; ``benchmarks/transcribe_cost.py --workdir .spaner-demo``)
    transcribe: str = "never"


#: The demo's training per collection. Tux Paint: the demo searches the very collection it adapts
#: on, so it trains the whole 60-epoch schedule and keeps its end (``keep="last"``): its
#: validation split (19 photos, 4 sounds) chose epochs 24-48 by noise. Batches of 512 and one
#: augmented copy per clip (not 4) keep it fast. Against the earlier setting (early stop after
#: epoch 40, batches of 256, 4 copies), typing a stamp's name finds its own photo first for .46
#: of the stamps (from .38) and its own sound for .41 (.42), in 126 s of training (210 s) on
#: one thread (``studies/demo_fit.py``, BENCHMARKS.md "Demo fit"). As it keeps the last epoch,
#: it validates only once, at the end (``val_every=60``): validating every second epoch chose
#: nothing and took 14 s of the first run; the weights are the same. Two training shards on two
#: threads (``workers=2``, :mod:`spaner.training.sharded`) train 1.4 times as fast as one thread.
#: Digits: stop 10 epochs after the best validation score (its val split is large enough).
TRAIN: dict[str, dict[str, Any]] = {
    "tuxpaint": {
        "epochs": 60,
        "keep": "last",
        "val_every": 60,
        "workers": 2,
        "batch_size": 512,
        "audio_augment": 1,
        # six phrasings per training concept ("dog", "dogs", "a photo of a dog", "a dog barking";
        # spaner.concepts.phrasings). With the WordNet class texts, on held-out (val) concepts,
        # mean of 2 seeds: a bare noun finds its photo first for .45 (neither: .34), a sound
        # phrase its sound for .32 (.18), an English label its photo for .48 (.38)
        "phrasings": 6,
    },
    "digits": {"patience": 10},
}


def _load_state(workdir: Path) -> dict[str, Any]:
    try:
        return json.loads((workdir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _save_state(workdir: Path, state: dict[str, Any]) -> None:
    from spaner.index.atomic_io import atomic_write_text

    atomic_write_text(workdir / STATE_FILE, json.dumps(state, indent=2, sort_keys=True))


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_demo(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse) the collection, the checkpoint and the store; returns what was done.

    Trains and indexes on ``SPANER_DEMO_THREADS`` torch threads (default 1) and restores the
    setting after: the few-shot model is small, and on the shared 2-core build machine (load
    ~7) training took 340 s on 2 threads against 86 s on 1 (same result), indexing 37 s against
    16 s. The frozen encoders (large convolutions and matrix products) load and encode the
    collection on every thread torch has. Encoders are built once for the whole run (see
    :mod:`spaner.model.shared_encoders`; wrap serving in the same block to reuse them there too).
    Loading them on a thread while the collection was built saved nothing on the first run
    (29 s for both, against 26 s one after the other): the loading thread's imports compile
    bytecode and hold the GIL.
    """
    from spaner.model.shared_encoders import shared_encoders

    threads = max(1, int(os.environ.get("SPANER_DEMO_THREADS", "1")))
    with shared_encoders():
        return _prepare_demo(cfg, progress, train_threads=threads)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads inside the block, as many as before after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build_collection(cfg: DemoConfig, work: Path, progress: bool) -> tuple[str, Path, Path]:
    """``(collection, training manifest, manifest to index)``, building the collection if needed."""
    from spaner.errors import SpanerError

    if cfg.collection == "tuxpaint":
        data = work / "tuxpaint"
        if not (data / "manifest-seen.jsonl").is_file():
            from spaner.datasets.tuxpaint import TuxPaintConfig, build_tuxpaint

            log.info("building the Tux Paint collection in %s", data)
            try:
                build_tuxpaint(
                    data,
                    TuxPaintConfig(seed=cfg.seed),
                    source=cfg.source,
                    overwrite=data.exists(),
                    progress=progress,
                )
            except SpanerError as exc:
                log.warning(
                    "Tux Paint collection unavailable (%s); serving the digits instead", exc
                )
                cfg.collection = "digits"
        if cfg.collection == "tuxpaint":
            # The demo is a search demo, not a benchmark: it adapts on every item of the
            # collection except the seen split's val items (which choose the epoch), so that each
            # stamp's photo, sound and label find each other. Held-out figures: BENCHMARKS.md.
            train = data / "demo-train.jsonl"
            if not train.is_file():
                rows = (data / "manifest-seen.jsonl").read_text(encoding="utf-8").splitlines()
                out = []
                for line in rows:
                    row = json.loads(line)
                    row["split"] = "val" if row.get("split") == "val" else "train"
                    out.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
                from spaner.index.atomic_io import atomic_write_text

                atomic_write_text(train, "\n".join(out) + "\n")
            return "tuxpaint", train, data / "manifest.jsonl"
    if cfg.collection != "digits":
        raise ValueError(f"unknown demo collection {cfg.collection!r} (tuxpaint or digits)")
    from spaner.datasets.digits import DigitsConfig, build_digits

    data = work / "digits"
    manifest = data / "manifest.jsonl"
    if not manifest.is_file():
        log.info("building the digits collection in %s", data)
        build_digits(
            data,
            cfg.digits or DigitsConfig(seed=cfg.seed),
            overwrite=data.exists(),
            progress=progress,
        )
    return "digits", manifest, manifest


#: what the server imports beyond what training did (FastAPI, Gradio with pandas, the app: ~1,100
#: modules); see :func:`_warm_server_bytecode`
SERVER_MODULES = "import uvicorn, gradio, spaner.app.main, spaner.app.ui.blocks"


def _warm_server_bytecode(work: Path) -> subprocess.Popen[bytes] | None:
    """On a first run, import the server's modules in a low-priority child process, which writes
    their bytecode while this process builds the collection (one core idle) and trains; the
    server then starts in ~5 s instead of ~10. Only where Python may write bytecode
    (``PYTHONDONTWRITEBYTECODE`` unset, as under ``make``); a failure is harmless (the server
    compiles what it imports). A daemon thread reaps the child; nothing waits for it."""
    if sys.dont_write_bytecode or (work / "checkpoint" / "model.safetensors").is_file():
        return None
    code = "import os\nif hasattr(os, 'nice'): os.nice(10)\n" + SERVER_MODULES
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, ValueError) as exc:
        log.debug("could not warm the server's bytecode: %s", exc)
        return None
    threading.Thread(target=child.wait, name="spaner-warm-reaper", daemon=True).start()
    return child


def _prepare_demo(cfg: DemoConfig, progress: bool, train_threads: int = 1) -> dict[str, Any]:
    from spaner.ingest import ingest
    from spaner.pipeline import Spaner

    work = cfg.workdir
    work.mkdir(parents=True, exist_ok=True)
    state = _load_state(work)
    timings: dict[str, float] = {}
    ckpt, store = work / "checkpoint", work / "store"

    t = time.perf_counter()
    if cfg.warm_server:
        _warm_server_bytecode(work)
    collection, manifest, index_manifest = _build_collection(cfg, work, progress)
    if cfg.profile is None:
        cfg.profile = "offline" if collection == "tuxpaint" else "digits"
    if cfg.train is None:
        cfg.train = dict(TRAIN[collection])
    timings["dataset"] = time.perf_counter() - t
    data_hash = _file_hash(manifest)
    if index_manifest != manifest:  # tuxpaint trains on one manifest and indexes another
        data_hash += _file_hash(index_manifest)[:16]

    t = time.perf_counter()
    from spaner.profiles import get_profile, resolve_train_config

    # encoders and every training setting (the profile's defaults too): a change retrains
    prof = get_profile(cfg.profile)
    tcfg = resolve_train_config(prof, {"shots": cfg.shots, "seed": cfg.seed, **cfg.train})
    train_key = {
        "data": data_hash,
        "shots": cfg.shots,
        "seed": cfg.seed,
        "profile": cfg.profile,
        **({"train": cfg.train} if cfg.train else {}),
        "encoders": prof.encoders,
        "aligner": prof.aligner,
        "train_config": asdict(tcfg),
    }
    if state.get("train") != train_key or not (ckpt / "model.safetensors").is_file():
        log.info(
            "training SPANER few-shot on %s (%d shots per concept per modality, profile %s)",
            collection,
            cfg.shots,
            cfg.profile,
        )
        sp = Spaner.from_profile(cfg.profile)
        prepared = sp.prepare(manifest, tcfg, FeatureCache(work / "cache"))
        from spaner.evaluation.compare import evaluate_model

        with _torch_threads(train_threads):
            result = sp.fit(prepared, tcfg, progress=progress)
            retrieval, coherence = (
                evaluate_model(sp.model, prepared.test) if len(prepared.test) else ({}, {})
            )
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
        from spaner.concepts.wordnet import wordnet_status

        state["wordnet"] = wordnet_status() if tcfg.phrasings else "not used (no phrasings)"
        state.pop("store", None)
        _save_state(work, state)
    timings["train"] = time.perf_counter() - t
    log.info("concept words: %s", state.get("wordnet", "WordNet not recorded"))

    t = time.perf_counter()
    space = checkpoint_hash(ckpt)
    if state.get("store") != space and store.exists():
        log.info("the model changed: rebuilding the demo store")
        shutil.rmtree(store)
    had = state.get("transcribe", "never")  # ingest skips stored items: a change, a new store
    if had != cfg.transcribe and store.exists():
        log.info("transcripts %s -> %s: rebuilding the demo store", had, cfg.transcribe)
        shutil.rmtree(store)
    state["transcribe"] = cfg.transcribe
    done = {"space": space, "data": data_hash}
    count = _complete_store_count(store, state, done)
    if count is not None:  # this data set is fully indexed with this model: nothing to read again
        added = 0
    else:
        _save_state(work, state)  # the transcripts the store is being built with
        with _torch_threads(train_threads):
            report = ingest(
                [index_manifest],
                store,
                checkpoint=ckpt if not store.exists() else None,
                progress=progress,
                feature_cache=FeatureCache(work / "cache"),  # the features training encoded
                transcribe=cfg.transcribe,
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
        "collection": collection,
        "profile": cfg.profile,
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
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    )

    def announce() -> None:  # once the server listens (the store and encoders are loaded)
        while not server.started and not server.should_exit:
            time.sleep(0.1)
        if server.started:
            print(
                f"\nSPANER demo ready: {url}/ui/  (API {url}/v1, docs {url}/docs); "
                "Ctrl-C stops it\n",
                flush=True,
            )

    threading.Thread(target=announce, daemon=True).start()
    server.run()
