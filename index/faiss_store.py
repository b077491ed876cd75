"""The embedded default store: FAISS for vectors, SQLite for everything else.

* SQLite (see :mod:`.metadata`) is the source of truth and keeps every vector as a BLOB.
* The FAISS index (``IndexIDMap2`` over any factory string, inner product) is a cache,
  checkpointed atomically by :meth:`FaissStore.save` as ``index/faiss-g<generation>.index``;
  on open the newest checkpoint is loaded and patched from SQLite (rows written after its
  generation, ids on one side only), so the two never disagree after a crash.
* Exact search ("Flat") runs on the FAISS flat storage itself (zero-copy) with the engine
  :class:`.exact.ExactSearcher` measures fastest per batch size (torch float32
  products, direct or from a transposed copy, or the exact two-stage engines over fp16,
  bf16 or int8 copies; copies built lazily and extended on appends), which beats ``IndexFlatIP`` on CPU
  with identical results.
  ANN factories (IVF/PQ, HNSW) search with FAISS. Filters follow
  :func:`.filter_plan.plan_search`.
* With ``faiss.get_num_gpus() > 0`` searches use a GPU clone (Flat/IVF); the CPU index is
  the one mutated and persisted, and the GPU clone is refreshed lazily after mutations.
  Without a FAISS GPU build, exact search runs on a CUDA device through torch
  (:class:`.exact.DeviceExactSearcher`, exact like the CPU engines) when torch sees one;
  ``search_device`` (or ``SPANER_SEARCH_DEVICE``) chooses.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from spaner.errors import is_disk_full

from .atomic_io import atomic_write_with
from .backed_store import MetadataBackedStore
from .base import RepairReport
from .errors import IndexNotTrainedError, StoreError
from .exact import (
    AdaptiveChoice,
    DeviceExactSearcher,
    ExactSearcher,
    batch_bucket,
    choose_exact_engine,
    resolve_search_device,
    topk_inner_product,
)
from .faiss_index import (
    build_index,
    configure_training,
    gpu_count,
    parse_factory,
    search_params,
    to_gpu,
    with_omp_threads,
)
from .filter_plan import Strategy, plan_search, widening_schedule
from .filters import Filter
from .lexical import text_fields_of
from .space import EmbeddingSpace, StoreManifest
from .vector_checks import check_vectors

__all__ = ["FaissConfig", "FaissStore"]

log = logging.getLogger(__name__)
_CACHE = re.compile(r"^faiss-g(\d{12})\.index$")
_ADD_CHUNK = 65536
#: ANN batches up to this many queries time FAISS' OpenMP team against one thread; larger
#: ones always use the team.
ONE_THREAD_MAX_BATCH = 8


@dataclass
class FaissConfig:
    """Settings of a FAISS store, saved in ``store.json`` as ``backend_config``."""

    factory: str = "Flat"  # any faiss.index_factory string: "Flat", "IVF1024,PQ64", "HNSW32"
    nprobe: int = 16  # IVF lists probed per query
    ef_search: int = 64  # HNSW search breadth
    rerank_factor: int = 1  # >1: ANN fetches k*factor candidates, rescored exactly from SQLite
    normalize: bool = False  # True: normalise any non-zero vector instead of refusing non-unit ones
    use_gpu: bool | None = None  # None: use a GPU when FAISS sees one
    # torch device of exact (Flat) search: None = FAISS' GPU build if it sees a GPU, else CUDA
    # through torch if present (unless use_gpu is False), else the CPU; "cpu", "cuda",
    # "cuda:1". The environment variable SPANER_SEARCH_DEVICE overrides it on a machine.
    search_device: str | None = None
    train_size: int = 100_000  # max vectors sampled from the store to train an ANN index
    train_per_centroid: int = 50  # ... and at most this many per IVF list (k-means sample)
    train_iterations: int = 10  # k-means iterations (IVF coarse quantizer and PQ codebooks)
    text_fields: list[str] = field(default_factory=list)  # extra fields full-text indexed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaissConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class FaissStore(MetadataBackedStore):
    """FAISS + SQLite vector store (see module docstring)."""

    backend = "faiss"

    def __init__(self, path: Path, manifest: StoreManifest) -> None:
        super().__init__(path, manifest)
        self.config = FaissConfig.from_dict(manifest.backend_config)
        self.info = parse_factory(self.config.factory)
        self.index = build_index(self.dim, self.info)
        self._use_gpu = self.config.use_gpu is not False and gpu_count() > 0 and self.info.gpu_ok
        self._device_exact: DeviceExactSearcher | None = None
        if self.info.kind == "flat":
            dev = resolve_search_device(
                self.config.search_device, faiss_gpu=self._use_gpu, use_gpu=self.config.use_gpu
            )
            if dev is not None:
                self._device_exact = DeviceExactSearcher(dev)
                self._use_gpu = False  # exact search on that device, not FAISS' GPU clone
        self._gpu: faiss.Index | None = None
        self._dead: set[int] = set()  # ids still in an index that cannot remove (HNSW)
        self._view: tuple[np.ndarray, np.ndarray] | None = None
        self._allowed_cache: dict[tuple[str, str], np.ndarray] = {}
        self._cache_gen: int | None = None
        self.exact_engine_table: dict[str, str] = {}
        self.exact = ExactSearcher(self.exact_engine_table)
        self._ann_choice = AdaptiveChoice(explore_every=64)
        # SearchParameters without an id selector, per (nprobe, efSearch): ~20 us to build
        self._params: dict[tuple[int, int], faiss.SearchParameters | None] = {}

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def create(
        cls, path: str | Path, space: EmbeddingSpace, config: FaissConfig | None = None
    ) -> FaissStore:
        cfg = config or FaissConfig()
        build_index(space.dim, parse_factory(cfg.factory))  # fail before touching the disk
        fields = list(text_fields_of(cfg.text_fields))  # refused before touching the disk
        p = cls._create_dir(path, space, {**cfg.to_dict(), "text_fields": fields})
        store = cls(p, StoreManifest.read(p))
        store.meta.ensure_lexical(store.text_fields)
        store.save()
        return store

    @classmethod
    def open(cls, path: str | Path, space: EmbeddingSpace | None) -> FaissStore:
        store = cls(Path(path), cls._read_manifest(path, space))
        store.last_repair = store._reconcile()
        return store

    @classmethod
    def open_read_only(cls, path: str | Path, space: EmbeddingSpace | None) -> FaissStore:
        """Open without the writer lock: repairs stay in memory, add/delete are refused."""
        store = cls(Path(path), cls._read_manifest(path, space))
        store.read_only = True
        store.last_repair = store._reconcile()
        return store

    def _index_close(self) -> None:
        self._gpu = None
        self._view = None
        self.exact.close()
        if self._device_exact is not None:
            self._device_exact.close()

    def _cache_dir(self) -> Path:
        return self.path / "index"

    def save(self) -> None:
        self._check_open()
        if self.read_only:
            return
        with self._lock:
            gen = self.meta.generation
            if self._cache_gen == gen:
                return
            if self._dead and len(self._dead) > 0.2 * max(1, self.index.ntotal):
                self._rebuild()
            target = self._cache_dir() / f"faiss-g{gen:012d}.index"
            with self._full_disk("saving the index cache"):
                atomic_write_with(target, lambda tmp: faiss.write_index(self.index, tmp))
            for old in self._cache_dir().glob("faiss-g*.index"):
                if old != target:
                    old.unlink(missing_ok=True)
            self._cache_gen = gen
            self.meta.prune_tombstones(gen)

    # -- index hooks --------------------------------------------------------------------
    def _invalidate(self, appended: bool = False) -> None:
        """The index changed (``appended``: only new rows at the end of a flat index)."""
        self._view = None
        self.exact.reset(appended=appended)
        if self._device_exact is not None:
            self._device_exact.reset(appended=appended)
        self._gpu = None
        self._allowed_cache.clear()
        self._params.clear()

    def _add_raw(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self.index.add_with_ids(vecs, ids)
        self._dead.difference_update(ids.tolist())

    def _index_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._invalidate(appended=True)
        if self.index.is_trained:
            self._add_raw(ids, vectors)
        else:
            self._maybe_train()

    def _index_remove(self, ids: np.ndarray) -> None:
        self._invalidate()
        if self.info.can_remove:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        else:
            self._dead.update(ids.tolist())

    def _index_count(self) -> int:
        return int(self.index.ntotal) - len(self._dead)

    def _add_from_db(self, ids: np.ndarray | None = None) -> int:
        """Add stored vectors (all, or ``ids``) to the index in bounded chunks."""
        todo = self.meta.ids_matching(None) if ids is None else np.sort(ids)
        for start in range(0, len(todo), _ADD_CHUNK):
            got, vecs = self.meta.vectors(todo[start : start + _ADD_CHUNK].tolist())
            self._add_raw(got, vecs)
        return len(todo)

    def _maybe_train(self) -> bool:
        n = self.meta.count()
        if self.index.is_trained or n < self.info.min_train:
            if not self.index.is_trained:
                log.info(
                    "%s: %d/%d vectors stored; index trains once enough exist",
                    self.config.factory,
                    n,
                    self.info.min_train,
                )
            return False
        self._train_on(self.meta.sample_vectors(self.train_sample_size()))
        self._add_from_db()
        return True

    def train_sample_size(self) -> int:
        """How many stored vectors an automatic training samples: ``train_size``, and for IVF
        at most ``train_per_centroid`` per list (k-means gains little from more; time grows
        linearly), but never fewer than the minimum the index needs."""
        n = self.config.train_size
        if self.info.nlist:
            n = min(n, max(self.info.min_train, self.config.train_per_centroid * self.info.nlist))
        return n

    def _train_on(self, vecs: np.ndarray) -> None:
        log.info("training %s on %d vectors", self.config.factory, len(vecs))
        configure_training(self.index, self.config.train_iterations, self.config.train_per_centroid)
        self.index.train(vecs)
        self._invalidate()

    def train(self, vectors: np.ndarray) -> None:
        """Train the ANN index on ``vectors`` (then index every stored vector)."""
        self._check_open()
        vecs = check_vectors(vectors, self.dim, normalize=True)
        with self._lock:
            if self.index.is_trained:
                if self.info.kind in ("flat", "hnsw"):
                    return
                raise StoreError(f"{self.config.factory} index is already trained")
            if len(vecs) < max(1, self.info.min_train // 30):
                raise StoreError(
                    f"{self.config.factory} needs at least {self.info.min_train // 30} training "
                    f"vectors (recommended {self.info.min_train}); got {len(vecs)}"
                )
            self._train_on(vecs)
            self._add_from_db()

    def _rebuild(self) -> None:
        self.index = build_index(self.dim, self.info)
        self._dead.clear()
        self._invalidate()
        self._maybe_train() if not self.index.is_trained else self._add_from_db()

    # -- crash reconciliation -----------------------------------------------------------
    def _load_cache(self, report: RepairReport) -> int | None:
        caches = sorted(p for p in self._cache_dir().glob("faiss-g*.index") if _CACHE.match(p.name))
        if not caches:
            return None
        newest = caches[-1]
        try:
            idx = faiss.read_index(str(newest))
            if not isinstance(idx, faiss.IndexIDMap2) or idx.d != self.dim:
                raise RuntimeError("not an IndexIDMap2 of the store's dimension")
        except RuntimeError as exc:
            report.notes.append(f"index cache {newest.name} unreadable ({exc}); rebuilt")
            return None
        self.index = idx
        return int(_CACHE.match(newest.name).group(1))

    def _reconcile(self) -> RepairReport:
        report = RepairReport(temp_files_removed=self._remove_temp_files())
        self._sync_lexical(report)
        cache_gen = self._load_cache(report)
        if cache_gen is None:
            self.index = build_index(self.dim, self.info)
            report.rebuilt = self.meta.count() > 0
            if self.index.is_trained:
                report.added_to_index = self._add_from_db()
            else:
                self._maybe_train()
                report.added_to_index = int(self.index.ntotal)
        else:
            db_ids = self.meta.ids_matching(None)
            idx_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            rewritten, _ = self.meta.changes_since(cache_gen)
            extra = np.union1d(np.setdiff1d(idx_ids, db_ids), np.intersect1d(idx_ids, rewritten))
            missing = np.union1d(np.setdiff1d(db_ids, idx_ids), rewritten)
            if len(extra):
                self._index_remove(extra)
                if self.info.can_remove:
                    report.removed_from_index = len(extra)
                else:  # HNSW keeps deleted vectors; they are masked, which is not a repair
                    log.info("%d deleted ids masked in %s", len(extra), self.config.factory)
            if len(missing):
                if self.index.is_trained:
                    report.added_to_index = self._add_from_db(missing)
                elif self._maybe_train():
                    report.added_to_index = int(self.index.ntotal)
            self._cache_gen = cache_gen
        self._invalidate()
        if self.index.is_trained and self._index_count() != self.meta.count():
            report.notes.append("counts still differ after patching; rebuilt from SQLite")
            self._rebuild()
            report.rebuilt = True
        if not report.clean:
            log.warning("%s: repaired on open: %s", self.path, report)
            try:
                self.save()
            except OSError as exc:  # e.g. a full disk: the cache is repaired again next open
                if not is_disk_full(exc):
                    raise
                log.warning("%s: could not save the repaired index cache (%s)", self.path, exc)
        return report

    # -- search -------------------------------------------------------------------------
    def _flat_view(self) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, float32 matrix) of the Flat index, zero-copy; valid until a mutation."""
        if self._view is None:
            n = int(self.index.ntotal)
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            if n:
                flat = faiss.downcast_index(self.index.index)
                mat = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
            else:
                mat = np.empty((0, self.dim), np.float32)
            self._view = (ids, mat)
        return self._view

    def _allowed(self, flt: Filter | None, what: str) -> np.ndarray:
        key = (flt.cache_key() if flt else "", what)
        if key not in self._allowed_cache:
            ids = np.sort(self.meta.ids_matching(flt))
            if what == "mask":
                ids = np.isin(self._flat_view()[0], ids)
            elif what == "rows":
                ids = np.flatnonzero(np.isin(self._flat_view()[0], ids))
            if len(self._allowed_cache) > 64:
                self._allowed_cache.clear()
            self._allowed_cache[key] = ids
        return self._allowed_cache[key]

    def _index_search(
        self, q: np.ndarray, k: int, flt: Filter | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.index.is_trained:
            raise IndexNotTrainedError(
                f"{self.config.factory} index is not trained yet: it trains automatically once "
                f"{self.info.min_train} vectors are stored, or call store.train(vectors)"
            )
        filtered = (flt is not None and not flt.is_empty()) or bool(self._dead)
        allowed = self._allowed(flt, "ids") if filtered else None
        exact = self.info.kind == "flat"
        on_gpu = self._use_gpu
        plan = _plan(
            k=k,
            n_total=int(self.index.ntotal),
            exact_index=exact,
            on_gpu=on_gpu,
            n_allowed=None if allowed is None else len(allowed),
        )
        s = plan.strategy
        if s is Strategy.EMPTY:
            return _pad(np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64), k)
        if self._device_exact is not None and exact and s in _EXACT_STRATEGIES:
            got = self._device_search(q, k, flt, s)
            if got is not None:
                return got
        if (
            exact
            and s in (Strategy.EXACT, Strategy.EXACT_MASK, Strategy.EXACT_SUBSET)
            and (filtered or choose_exact_engine(len(q), "cpu", self.exact_engine_table) != "faiss")
        ):
            row_ids, mat = self._flat_view()
            if s is Strategy.EXACT:
                d, rows = self.exact.search(mat, q, k)
                if d.shape[1] == k:  # unfiltered and n >= k: every score finite, no padding
                    return d, row_ids[rows]
                return _pad(d, row_ids[rows], k)
            mask = self._allowed(flt, "mask") if s is Strategy.EXACT_MASK else None
            subset = self._allowed(flt, "rows") if s is Strategy.EXACT_SUBSET else None
            d, rows = topk_inner_product(mat, q, k, mask=mask, subset=subset)
            return _pad(d, row_ids[rows], k)
        if s is Strategy.EXACT_SUBSET:  # ANN index, tiny allowed set: brute force from SQLite
            got, vecs = self.meta.vectors(allowed.tolist())
            d, rows = topk_inner_product(vecs, q, k)
            return _pad(d, got[rows], k)
        fetch = plan.fetch_k * max(1, self.config.rerank_factor)
        if s is Strategy.ANN_POST_FILTER:  # pragma: no cover - GPU only
            d, i = self._post_filter(q, k, allowed, plan.fetch_k)
        else:
            sel = allowed if s is Strategy.ANN_SELECTOR else None
            index = self._search_index() if sel is None else self.index
            params = None
            if index is self.index:  # GPU clones take no SearchParameters
                params = self._search_params(sel)
            d, i = self._ann_search(index, q, fetch, params)
        if self.config.rerank_factor > 1 and self.info.kind != "flat":
            d, i = self._rerank(q, i, k)
        elif i.shape[1] == k and s is not Strategy.ANN_POST_FILTER:
            return d, i  # as FAISS returns it: a miss is id -1 (its score is unspecified)
        return _pad(d[:, :k], i[:, :k], k)

    def _device_search(
        self, q: np.ndarray, k: int, flt: Filter | None, s: Strategy
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact search on the torch device; None (and the CPU engines from then on) when
        the device runs out of memory."""
        row_ids, mat = self._flat_view()
        mask = self._allowed(flt, "mask") if s is Strategy.EXACT_MASK else None
        subset = self._allowed(flt, "rows") if s is Strategy.EXACT_SUBSET else None
        try:
            d, rows = self._device_exact.search(mat, q, k, mask=mask, subset=subset)
        except torch.OutOfMemoryError as exc:
            log.warning(
                "%s: exact search out of device memory (%s); on the CPU now", self.path, exc
            )
            self._device_exact.close()
            self._device_exact = None
            return None
        return _pad(d, row_ids[rows], k)

    def _search_params(self, ids: np.ndarray | None) -> faiss.SearchParameters | None:
        """:func:`.faiss_index.search_params` with the configured nprobe/efSearch; those
        without an id selector are reused between searches (~20 us to build)."""
        key = (self.config.nprobe, self.config.ef_search)
        params = self._params.get(key) if ids is None else None
        if params is None:
            params = search_params(
                self.index,
                self.info,
                nprobe=self.config.nprobe,
                ef_search=self.config.ef_search,
                ids=ids,
            )
            if ids is None:
                self._params[key] = params
        return params

    def _ann_search(
        self, index: faiss.Index, q: np.ndarray, k: int, params: faiss.SearchParameters | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``index.search`` on CPU with FAISS' OpenMP team, or on this thread alone, whichever
        measures faster for this batch size (:class:`.exact.AdaptiveChoice`). A small
        batch is often faster on one thread: each OpenMP region wakes the other threads and
        waits for them at a barrier, which on a loaded machine costs milliseconds. Batches of
        more than :data:`ONE_THREAD_MAX_BATCH` queries always take the team: FAISS splits
        them by query, one thread took 1.7-1.9x as long at batch 64, and timing it anyway
        cost the re-timing calls and, on a noisy machine, spells of the slower choice."""

        def run() -> tuple[np.ndarray, np.ndarray]:
            return index.search(q, k, params=params)

        if (
            len(q) > ONE_THREAD_MAX_BATCH
            or index is not self.index  # GPU
            or faiss.omp_get_max_threads() <= 1
        ):
            return run()
        return self._ann_choice.run(
            batch_bucket(len(q)),
            {"omp": run, "one_thread": lambda: with_omp_threads(1, run)},
            len(q),
        )

    def _search_index(self) -> faiss.Index:
        if not self._use_gpu:
            return self.index
        if self._gpu is None:  # pragma: no cover - GPU only
            self._gpu = to_gpu(self.index)
        return self._gpu  # pragma: no cover

    def _post_filter(
        self, q: np.ndarray, k: int, allowed: np.ndarray, first: int
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - GPU only
        for fetch in widening_schedule(first, int(self.index.ntotal)):
            d, i = self._search_index().search(q, fetch)
            keep = np.isin(i, allowed)
            if (keep.sum(axis=1) >= k).all() or fetch >= self.index.ntotal:
                order = np.argsort(~keep, axis=1, kind="stable")
                return np.take_along_axis(d, order, 1)[:, :k], np.where(
                    np.take_along_axis(keep, order, 1), np.take_along_axis(i, order, 1), -1
                )[:, :k]
        return self.index.search(q, k, params=self._search_params(allowed))

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rescore candidate ids exactly with the float vectors kept in SQLite."""
        uniq = np.unique(cand[cand >= 0])
        got, vecs = self.meta.vectors(uniq.tolist())
        pos = np.searchsorted(got, np.where(cand >= 0, cand, got[0] if len(got) else 0))
        exact = (
            np.einsum("bd,bkd->bk", q, vecs[pos]) if len(got) else np.zeros(cand.shape, np.float32)
        )
        exact = np.where(cand >= 0, exact, -np.inf).astype(np.float32)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, order, 1), np.take_along_axis(cand, order, 1)


_EXACT_STRATEGIES = (Strategy.EXACT, Strategy.EXACT_MASK, Strategy.EXACT_SUBSET)
#: plan_search is pure and its arguments repeat from call to call: its answers are cached
_plan = functools.lru_cache(maxsize=1024)(plan_search)


def _pad(d: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad results to ``[b, k]`` with id -1 (score -inf in the padding added here; a miss
    FAISS itself reports keeps its id -1 and whatever score FAISS gave it)."""
    i = np.where(np.isfinite(d) & (i >= 0), i, -1)
    if d.shape[1] >= k:
        return d[:, :k], i[:, :k]
    b, have = d.shape
    dd = np.full((b, k), -np.inf, np.float32)
    ii = np.full((b, k), -1, np.int64)
    dd[:, :have], ii[:, :have] = d, i
    return dd, ii
