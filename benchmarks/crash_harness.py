"""Crash-safety harness: SIGKILL writers and store creation mid-way, then check the store.

Four scenarios:

* **ingest**: a fresh synthetic data set (``make_synthetic``, a new seed per round) is ingested
  with ``spaner ingest --batch-size 8``; the process is killed (SIGKILL) after a seeded-random
  number of its store writes. Acknowledged = every item committed in SQLite just before the
  kill (read through a separate read-only connection).
* **server**: ``spaner serve --profile tiny --no-ui`` receives concurrent ``POST /v1/items``
  (unique PNG, WAV and text items) from a few threads; it is killed after a seeded-random
  number of its store writes. Acknowledged = every item whose POST answered 201 with an id.
* **creation** (``--creation serve,ingest,store``): a child runs ``spaner serve``'s or
  ``spaner ingest``'s store creation, or ``create_store``, and SIGKILLs itself before its k-th
  storage call (every k); the same flow then runs again and must give a usable, empty store
  bound to its own checkpoint (:func:`_check_created`).
* **milvus** (``--milvus-kills N``): a writer adding (and deleting) batches in a Milvus Lite
  store is killed after a seeded-random number of batches; the store is reopened and checked
  (:func:`verify_milvus`).

Kill points come from the writer's own progress, never from the clock: the writer reports
each store write once it returned (``ACK``), the harness sends SIGKILL as soon as it reads
the n-th report, and the writer blocks after write n+1 until the kill arrives. So the kill
lands during (or right after) write n+1 on a fast and on a slow machine alike, and a writer
never finishes before its kill (:func:`hooked_child`, :class:`LineReader`).

After each ingest/server kill the store is reopened in this process (``open_store``, which
repairs) and checked: it opens; FAISS and SQLite agree (same count, same id set); every
acknowledged item is present with exactly the content that was sent and is found by a search with its own
vector; every visible item is whole (vector, metadata, content matching its sha256).

    .venv/bin/python benchmarks/crash_harness.py                      # 10 + 10 + 5 + 75 kills
    .venv/bin/python benchmarks/crash_harness.py --ingest-kills 2 --server-kills 2 --json

Exit status 0 when every check passed. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent
SPANER = [str(BIN / "spaner")] if (BIN / "spaner").exists() else [sys.executable, "-m", "spaner"]
#: how long a writer may go without reporting progress before the run is declared hung
#: (a guard against a stuck child, not a kill point)
STALL_SECONDS = 300.0


@dataclass
class Tally:
    kills: int = 0
    completed_before_kill: int = 0
    acknowledged: int = 0
    present: int = 0
    searchable: int = 0
    repaired: int = 0
    items_checked: int = 0
    failures: list[str] = field(default_factory=list)
    milvus_notes: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _committed(store: Path) -> dict[int, str]:
    """id -> content_hash of the items committed in the store's SQLite (read-only)."""
    db = store / "metadata.sqlite"
    if not db.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            return dict(conn.execute("SELECT id, content_hash FROM items").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def verify(store_dir: Path, acked: dict[int, bytes | str | None], tally: Tally, label: str) -> None:
    """Reopen ``store_dir`` and check it (see the module doc); failures go to ``tally``."""
    from spaner.index import content_sha256, open_store

    def fail(msg: str) -> None:
        tally.failures.append(f"{label}: {msg}")

    try:
        store = open_store(store_dir, None)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        fail(f"store does not open: {exc!r}")
        return
    try:
        if not store.last_repair.clean:
            tally.repaired += 1
        st = store.stats()
        if st["count"] != st["index_count"]:
            fail(f"count mismatch: metadata {st['count']} vs FAISS {st['index_count']}")
        import faiss

        db_ids = set(int(i) for i in store.meta.ids_matching(None))
        idx_ids = set(int(i) for i in faiss.vector_to_array(store.index.id_map))
        if db_ids != idx_ids:
            fail(
                f"id sets differ: {len(db_ids - idx_ids)} only in SQLite, {len(idx_ids - db_ids)} only in FAISS"
            )
        # every visible item is whole
        ids = sorted(db_ids)
        metas = store.get(ids) if ids else []
        vecs = store.vectors(ids) if ids else np.zeros((0, 1), np.float32)
        for i, meta, vec in zip(ids, metas, vecs, strict=True):
            tally.items_checked += 1
            if not np.all(np.isfinite(vec)) or abs(float(np.linalg.norm(vec)) - 1.0) > 1e-3:
                fail(f"item {i}: vector not a finite unit vector")
            try:
                content = store.content(i)
            except Exception as exc:  # noqa: BLE001
                fail(f"item {i}: content unreadable ({exc!r})")
                continue
            if meta.get("content_hash") and content_sha256(content) != meta["content_hash"]:
                fail(f"item {i}: content does not match its sha256")
        # every acknowledged item is present, intact and searchable by its own vector
        present = [i for i in acked if i in db_ids]
        tally.acknowledged += len(acked)
        tally.present += len(present)
        for i in acked:
            if i not in db_ids:
                fail(f"acknowledged item {i} missing")
                continue
            want = acked[i]
            if want is not None and store.content(i) != want:
                fail(f"acknowledged item {i}: content differs from what was sent")
        _check_searchable(store, present, 10, tally, fail)
    finally:
        store.close()


def _check_searchable(store, present: list[int], k: int, tally: Tally, fail) -> None:
    """Every id in ``present`` must be among the top ``k`` hits of a search by its own vector."""
    if not present:
        return
    hits = store.search(store.vectors(present), k=k)
    for i, row in zip(present, hits, strict=True):
        if i in {h.id for h in row}:
            tally.searchable += 1
        else:
            fail(f"acknowledged item {i} not found by its own vector")


# -- progress-decided kill points ----------------------------------------------------------
class LineReader:
    """Lines from a pipe's file descriptor, each waited for at most ``STALL_SECONDS``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def readline(self) -> str | None:
        """The next line (without its newline); None at end of file (the writer is gone)."""
        while b"\n" not in self.buf:
            if self.eof:
                return None
            ready, _, _ = select.select([self.fd], [], [], STALL_SECONDS)
            if not ready:
                raise RuntimeError(f"writer reported no progress for {STALL_SECONDS:.0f} s")
            chunk = os.read(self.fd, 65536)
            if not chunk:  # a last line without its newline was cut by the kill: not a report
                self.eof = True
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def rest(self) -> list[str]:
        """Every remaining line up to end of file (call after the writer was killed)."""
        out = []
        while (line := self.readline()) is not None:
            out.append(line)
        return out


def hooked_child(kill_after: int, fd: int, argv: list[str]) -> int:
    """Run ``spaner ARGV`` with each store write (``MetadataBackedStore.add``) writing ``ACK n``
    to ``fd`` once it returned; write ``kill_after + 1`` and any later one block, after they
    returned, until the parent's SIGKILL (which it sends on reading ``ACK kill_after``)."""
    from spaner.index.backed_store import MetadataBackedStore

    from spaner.cli.main import main as spaner_main

    out = os.fdopen(fd, "w", buffering=1)
    lock = threading.Lock()
    count = 0
    real_add = MetadataBackedStore.add

    def add(self, *args, **kwargs):
        nonlocal count
        ids = real_add(self, *args, **kwargs)
        with lock:
            count += 1
            n = count
            out.write(f"ACK {n}\n")
        if n > kill_after:
            threading.Event().wait()  # past the kill point: wait for the SIGKILL
        return ids

    MetadataBackedStore.add = add
    return spaner_main(argv)


def spawn_hooked(argv: list[str], kill_after: int) -> tuple[subprocess.Popen, LineReader]:
    """Start ``spaner ARGV`` under :func:`hooked_child`; returns it and its progress reader."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(HERE), "--hooked-child", str(kill_after), str(w), *argv],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(w,),
        )
    finally:
        os.close(w)
    return proc, LineReader(r)


def await_acks(progress: LineReader, n: int) -> int:
    """Read ``ACK`` lines until the n-th; returns how many were read (fewer: the writer exited)."""
    seen = 0
    while seen < n:
        line = progress.readline()
        if line is None:
            break
        seen += line.startswith("ACK")
    return seen


def _kill(proc: subprocess.Popen, tally: Tally) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        tally.kills += 1
    else:
        tally.completed_before_kill += 1
    proc.wait(timeout=60)


# -- ingest ------------------------------------------------------------------------------
def run_ingest(work: Path, kills: int, rng: random.Random, tally: Tally, log) -> None:
    from spaner.datasets.synthetic import make_synthetic

    store = work / "ingest-store"
    seed_dir = work / "ingest-warmup"
    make_synthetic(seed_dir, concepts=2, per_concept=2, seed=10_000)
    cmd = ["ingest", "--store", str(store), "--profile", "tiny", "-q"]
    subprocess.run(
        [*SPANER, *cmd, str(seed_dir)], env=_env(), check=True, capture_output=True, timeout=300
    )
    for r in range(kills):
        data = work / f"ingest-data-{r}"
        make_synthetic(data, concepts=10, per_concept=8, seed=r + 1)
        before = _committed(store)
        n = rng.randint(1, 5)  # of at least 10 batches of 8
        proc, progress = spawn_hooked([*cmd, "--batch-size", "8", str(data)], n)
        try:
            await_acks(progress, n)
            acked_ids = _committed(store)  # committed before the kill: must survive it
        finally:
            _kill(proc, tally)
            os.close(progress.fd)
        new = {i: None for i in acked_ids}
        verify(store, new, tally, f"ingest round {r}")
        log(
            f"ingest round {r}: killed after write {n}, "
            f"{len(acked_ids) - len(before)} committed this round, "
            f"store {len(_committed(store))}"
        )


# -- server ------------------------------------------------------------------------------
def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _wav(rng: np.random.Generator) -> bytes:
    import soundfile as sf

    t = np.arange(4000) / 16000
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(4000)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def _uploader(
    url: str, seed: int, stop: threading.Event, acked: dict, lock: threading.Lock
) -> None:
    import httpx

    rng = np.random.default_rng(seed)
    with httpx.Client(timeout=15.0) as client:
        n = 0
        while not stop.is_set() and n < 5000:
            n += 1
            kind = n % 3
            try:
                if kind == 2:
                    text = f"crash harness text {uuid.uuid4().hex}"
                    r = client.post(f"{url}/v1/items", json={"items": [{"text": text}]})
                    sent: list[bytes | str] = [text]
                else:
                    data = _png(rng) if kind == 0 else _wav(rng)
                    r = client.post(f"{url}/v1/items", files=[("files", ("x", data))])
                    sent = [data]
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.05)
                continue
            if r.status_code == 201:
                body = r.json()
                with lock:
                    for item, content in zip(body["items"], sent, strict=True):
                        acked[int(item["id"])] = content


def _start_server(store: Path, port: int, kill_after: int) -> tuple[subprocess.Popen, LineReader]:
    argv = ["serve", "--profile", "tiny", "--store", str(store), "--no-ui"]
    return spawn_hooked([*argv, "--host", "127.0.0.1", "--port", str(port), "-q"], kill_after)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = STALL_SECONDS) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not healthy in time")


def run_server(work: Path, kills: int, rng: random.Random, tally: Tally, log, threads: int) -> None:
    store = work / "server-store"
    for r in range(kills):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        n = rng.randint(1, 30)  # store writes (one per POST) before the kill
        proc, progress = _start_server(store, port, n)
        stop = threading.Event()
        acked: dict[int, bytes | str] = {}
        lock = threading.Lock()
        workers: list[threading.Thread] = []
        try:
            _wait_healthy(url, proc)
            workers = [
                threading.Thread(
                    target=_uploader, args=(url, r * 100 + t, stop, acked, lock), daemon=True
                )
                for t in range(threads)
            ]
            for w in workers:
                w.start()
            await_acks(progress, n)
        finally:
            _kill(proc, tally)
            os.close(progress.fd)
            stop.set()
            for w in workers:
                w.join(timeout=20)
        with lock:
            got = dict(acked)
        verify(store, got, tally, f"server round {r}")
        log(
            f"server round {r}: killed after write {n}, {len(got)} acknowledged, "
            f"store {len(_committed(store))}"
        )


# -- store creation ---------------------------------------------------------------------
#: what a kill during creation may interrupt: the filesystem and storage calls of the flow
_CREATION_CALLS = (
    ("os", "mkdir"),
    ("os", "replace"),
    ("os", "rename"),
    ("os", "fsync"),
    ("sqlite3", "connect"),
    ("faiss", "write_index"),
)
CREATION_FLOWS = ("serve", "ingest", "store")


def _run_creation_flow(flow: str, store: Path) -> None:
    """Create (or, after a crash, open) ``store`` the way ``flow`` does."""
    if flow == "serve":  # spaner serve on a new --store
        from spaner.app.settings import Settings
        from spaner.app.state import ServiceState

        ServiceState.open(Settings(store=store, profile="tiny", ui=False))
    elif flow == "ingest":  # spaner ingest --profile on a new --store
        from spaner.ingest.binding import open_bound_store

        open_bound_store(store, profile="tiny", create=True)
    elif flow == "store":  # the index layer alone: create_store, or open_store once created
        from spaner.index import EmbeddingSpace, create_store, open_store

        space = EmbeddingSpace("crash-harness-space", 8)
        if (store / "store.json").is_file():
            open_store(store, space)
        else:
            create_store(store, space)
    else:
        raise ValueError(flow)


def creation_child(flow: str, store: Path, kill_at: int) -> None:
    """Run ``flow`` and SIGKILL this process just before its ``kill_at``-th call of one of
    ``_CREATION_CALLS`` under the store's parent folder (0: never); prints the call count."""
    import importlib

    root = str(store.parent)
    calls = 0

    def wrap(fn):
        def hooked(*args, **kwargs):
            nonlocal calls
            paths = [a for a in args if isinstance(a, (str, os.PathLike))]
            if not paths or any(os.fspath(p).startswith(root) for p in paths):
                calls += 1
                if calls == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return hooked

    for mod, name in _CREATION_CALLS:
        m = importlib.import_module(mod)
        setattr(m, name, wrap(getattr(m, name)))
    _run_creation_flow(flow, store)
    print(f"CALLS {calls}", flush=True)
    os._exit(0)  # no close(): the flow's own writes are all that happened


def _check_created(flow: str, store: Path) -> str | None:
    """Open the store as its flow does after a restart; None if usable and right, else why."""
    from spaner.index import Item, open_store

    try:
        _run_creation_flow(flow, store)  # a restart runs the same command again
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return f"does not open after the kill: {exc!r}"
    if flow == "store":
        st = open_store(store, None)
        vec = np.eye(1, st.dim, dtype=np.float32)
    else:
        from spaner.ingest.binding import bound_checkpoint
        from spaner.model.checkpoint import checkpoint_hash

        ckpt = bound_checkpoint(store) or store / "checkpoint"  # where its spaner.json says
        st = open_store(store, None)
        if not ckpt.is_dir():
            st.close()
            return f"no {ckpt.name}/ after reopening"
        if checkpoint_hash(ckpt) != st.space.checkpoint_hash:
            st.close()
            return "the store's space is not its checkpoint's (silently wrong model)"
        vec = np.eye(1, st.dim, dtype=np.float32)
    try:
        if st.count() != 0:
            return f"{st.count()} items in a store nothing was added to"
        ids = st.add(vec, [Item("text", content="creation check")])
        hits = st.search(vec, k=1)[0]
        if not hits or hits[0].id != int(ids[0]):
            return "an item added after reopening is not found"
    finally:
        st.close()
    return None


def run_creation(
    work: Path,
    flows: list[str],
    tally: Tally,
    log,
    stride: int = 1,
    start: float = 0.0,
    max_points: int = 200,
) -> dict[str, int]:
    """SIGKILL each creation flow before every ``stride``-th storage call (from the fraction
    ``start`` of its calls on), then run the flow again as a restart would and check the
    store (:func:`_check_created`). Returns the number of calls (kill points) per flow."""
    here = Path(__file__).resolve()
    points: dict[str, int] = {}
    for flow in flows:
        probe = work / f"create-{flow}-probe" / "store"
        probe.parent.mkdir(parents=True)
        out = subprocess.run(
            [sys.executable, str(here), "--creation-child", flow, str(probe), "0"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        n = int(out.split("CALLS")[-1].split()[0])
        points[flow] = n
        for k in range(max(1, int(start * n)), min(n, max_points) + 1, stride):
            store = work / f"create-{flow}-{k}" / "store"
            store.parent.mkdir(parents=True)
            proc = subprocess.run(
                [sys.executable, str(here), "--creation-child", flow, str(store), str(k)],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode == -signal.SIGKILL:
                tally.kills += 1
            else:
                tally.completed_before_kill += 1
            why = _check_created(flow, store)
            tally.items_checked += 1
            if why:
                tally.failures.append(f"create {flow}, killed before call {k}/{n}: {why}")
            log(f"create {flow}: kill before call {k}/{n}: {why or 'ok'}")
    return points


# -- Milvus Lite backend -------------------------------------------------------------------
MILVUS_DIM = 32


def milvus_child(store_dir: Path, seed: int, kill_after: int) -> None:
    """Open the Milvus store and write until killed: batches of 16 adds, and every fourth batch
    a delete of 4 ids it added; prints ``ACK ids`` / ``DEL ids`` after each call returns (and
    ``DELETING ids`` before a delete: a kill inside it may or may not delete them). After the
    ACK of batch ``kill_after + 1`` it waits for the parent's SIGKILL (sent on ACK
    ``kill_after``)."""
    from spaner.index import Item, open_store

    rng = np.random.default_rng(seed)
    store = open_store(store_dir, None)
    print("OPEN", flush=True)
    for b in range(300):
        v = rng.standard_normal((16, MILVUS_DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        items = [
            Item("text", content=f"milvus {seed} {b} {i}", concept=f"c{i % 3}") for i in range(16)
        ]
        ids = store.add(v, items)
        print("ACK " + " ".join(map(str, ids.tolist())), flush=True)
        if b >= kill_after:  # batch kill_after + 1 (b counts from 0): wait for the kill
            threading.Event().wait()
        if b % 4 == 3:
            gone = ids[:4].tolist()
            print("DELETING " + " ".join(map(str, gone)), flush=True)  # in flight: either way
            store.delete(gone)
            print("DEL " + " ".join(map(str, gone)), flush=True)
    os._exit(0)


def verify_milvus(
    store_dir: Path, acked: dict[int, str], deleted: set[int], tally: Tally, label: str
) -> None:
    """Reopen the Milvus store and check it like :func:`verify`, plus acknowledged deletes."""
    from spaner.index import open_store

    def fail(msg: str) -> None:
        tally.failures.append(f"{label}: {msg}")

    try:
        store = open_store(store_dir, None)
    except Exception as exc:  # noqa: BLE001
        fail(f"store does not open: {exc!r}")
        return
    try:
        if not store.last_repair.clean:
            tally.repaired += 1
        db_ids = {int(i) for i in store.ids()}
        # ids of SQLite and of deleted items looked up in Milvus in chunks (a query returns
        # at most 16384 rows); anything else in Milvus shows up in its count(*)
        mv_ids: set[int] = set()
        wanted = sorted(db_ids | deleted)
        for c in range(0, len(wanted), 1000):
            chunk = wanted[c : c + 1000]
            rows = store.client.query(
                store.coll, filter=f"id in {chunk}", output_fields=["id"], limit=len(chunk)
            )
            mv_ids.update(int(row["id"]) for row in rows)
        if db_ids != mv_ids:
            fail(
                f"id sets differ: {len(db_ids - mv_ids)} only in SQLite, "
                f"{len(mv_ids - db_ids)} only in Milvus"
            )
        if store._index_count() != len(db_ids):
            fail(f"Milvus count(*) {store._index_count()} vs SQLite {len(db_ids)}")
        rep = store.last_repair
        tally.milvus_notes.append(
            f"{label}: replayed {rep.added_to_index} adds / {rep.removed_from_index} deletes, "
            f"resync {'yes' if rep.rebuilt else 'no'}"
        )
        tally.items_checked += len(db_ids)
        for i in sorted(deleted & (db_ids | mv_ids)):
            fail(f"deleted item {i} is back")
        live = {i: c for i, c in acked.items() if i not in deleted}
        tally.acknowledged += len(live)
        present = [i for i in live if i in db_ids]
        tally.present += len(present)
        for i in live:
            if i not in db_ids:
                fail(f"acknowledged item {i} missing")
            elif store.content(i) != live[i]:
                fail(f"acknowledged item {i}: content differs")
        _check_searchable(store, present, 5, tally, fail)
    finally:
        store.close()


def run_milvus(work: Path, kills: int, rng: random.Random, tally: Tally, log) -> None:
    """SIGKILL a process writing to a Milvus Lite store mid-batch, reopen, check; ``kills``
    rounds on the same store (acknowledged items accumulate)."""
    from spaner.index import EmbeddingSpace, create_store

    store_dir = work / "milvus-store"
    create_store(store_dir, EmbeddingSpace("crash-milvus", MILVUS_DIM), backend="milvus").close()
    acked: dict[int, str] = {}
    deleted: set[int] = set()
    for r in range(kills):
        n = rng.randint(1, 40)  # of 300 batches
        proc = subprocess.Popen(
            [sys.executable, str(HERE), "--milvus-child", str(store_dir), str(r + 1), str(n)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        progress = LineReader(proc.stdout.fileno())
        lines: list[str] = []
        try:
            seen = 0
            while seen < n and (line := progress.readline()) is not None:
                lines.append(line)
                seen += line.startswith("ACK")
        finally:
            _kill(proc, tally)
        lines += progress.rest()  # printed before the kill: acknowledged too
        proc.stdout.close()
        batch = 0
        for line in lines:  # a line is printed only after its call returned
            kind, *ids = line.split()
            if kind == "ACK":
                for j, i in enumerate(ids):
                    acked[int(i)] = f"milvus {r + 1} {batch} {j}"
                batch += 1
            elif kind == "DEL":
                deleted.update(int(i) for i in ids)
            elif kind == "DELETING":  # the kill may fall inside this delete: allow both
                for i in ids:
                    acked.pop(int(i), None)
        verify_milvus(store_dir, acked, deleted, tally, f"milvus round {r}")
        note = tally.milvus_notes[-1] if tally.milvus_notes else "not opened"
        log(
            f"milvus round {r}: killed after batch {n}, {batch} batches acknowledged, "
            f"{len(acked)} ids; {note}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ingest-kills", type=int, default=10)
    ap.add_argument("--server-kills", type=int, default=10)
    ap.add_argument("--threads", type=int, default=3, help="concurrent uploaders (server)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep stores here (default: temp)")
    ap.add_argument(
        "--creation",
        default=",".join(CREATION_FLOWS),
        help="store-creation flows to kill at every storage call (comma list; '' for none)",
    )
    ap.add_argument("--milvus-kills", type=int, default=5, help="Milvus Lite writer kills")
    ap.add_argument("--creation-stride", type=int, default=1, help="kill before every n-th call")
    ap.add_argument("--json", action="store_true", help="print the tally as one JSON object")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--milvus-child"]:  # internal: the writer of run_milvus
        milvus_child(Path(argv[1]), int(argv[2]), int(argv[3]))
        return 0
    if argv[:1] == ["--hooked-child"]:  # internal: spaner ingest/serve reporting its writes
        return hooked_child(int(argv[1]), int(argv[2]), argv[3:])
    if argv[:1] == ["--creation-child"]:  # internal: one child of run_creation
        creation_child(argv[1], Path(argv[2]), int(argv[3]))
        return 0
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    tally = Tally()
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="spaner-crash-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.ingest_kills:
            run_ingest(work, args.ingest_kills, rng, tally, log)
        if args.server_kills:
            run_server(work, args.server_kills, rng, tally, log, args.threads)
        if args.milvus_kills:
            run_milvus(work, args.milvus_kills, rng, tally, log)
        flows = [f for f in args.creation.split(",") if f]
        if flows:
            points = run_creation(work, flows, tally, log, stride=args.creation_stride)
            log(f"creation kill points per flow: {points}")
    out = {**asdict(tally), "seconds": round(time.monotonic() - t0, 1)}
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"kills {tally.kills} (+{tally.completed_before_kill} runs finished first)  "
            f"acknowledged {tally.acknowledged}  present {tally.present}  "
            f"searchable {tally.searchable}  repaired {tally.repaired}  "
            f"items checked {tally.items_checked}  failures {len(tally.failures)}  "
            f"({out['seconds']} s)"
        )
        for f in tally.failures[:50]:
            print("FAIL", f)
    return 0 if not tally.failures and tally.present == tally.acknowledged else 1


if __name__ == "__main__":
    sys.exit(main())
