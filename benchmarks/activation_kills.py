"""SIGKILL ``spaner serve`` at chosen progress events of a fit job and a model activation.

Issue 16, item 1. The server is started with ``SPANER_TEST_KILL_AT=N`` (spaner.app.killpoints):
it kills itself with SIGKILL at its N-th progress event, so the kill points come from the
process's own progress (fit steps, re-embedding batches, each step of the folder swap), and a
fast and a slow machine are killed at the same points. A probe run (no kill) lists the events.

Every round works on the same store, so what an interrupted round leaves behind accumulates:

1. start the server (with the round's kill point) and check the previous round's outcome:
   the server starts; ``GET /v1/jobs/{id}`` answers for both jobs of the last round (finished,
   ``interrupted`` or ``succeeded``, never 404); the active model is exactly the old one or
   exactly the new one (and the one the activation job's status says); every acknowledged item
   is there with its exact content; no leftover build/parked/trash folder and no temp folder
   of a fit is left; and, reading the store read-only, every stored vector equals the active
   checkpoint's embedding of the item's content (so the space is not a mix);
2. add one item (acknowledged = answered 201), fit a new model (a new seed per round), and
   activate it; the server dies at its kill point (or finishes the round when the point lies
   beyond its events, which is checked the same way).

``python benchmarks/activation_kills.py --kills 22`` (the default spreads 22 kill points over
the fit, the re-embedding and the swap). Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BIN = Path(sys.executable).parent
SPANER = [str(BIN / "spaner")] if (BIN / "spaner").exists() else [sys.executable, "-m", "spaner"]
FIT_EPOCHS = 6  # one training step per epoch with this support set
LEFTOVER_MARKS = (".next-", ".old-", ".trash-", ".creating-", ".ckpt-")


@dataclass
class Tally:
    rounds: int = 0
    kills: int = 0
    finished_without_kill: int = 0
    kills_by_phase: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    vectors_checked: int = 0
    active_old: int = 0
    active_new: int = 0
    jobs_checked: int = 0
    leftovers_max: int = 0
    #: the store's folder and its siblings after each restart, without models/ (the trained
    #: models, one more per fit, are kept by design)
    store_bytes: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(seed: int) -> bytes:
    from PIL import Image

    rgb = tuple(int(x) for x in np.random.default_rng(seed).integers(0, 256, 3))
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), rgb).save(buf, format="PNG")
    return buf.getvalue()


def _wav(seed: int) -> bytes:
    import soundfile as sf

    t = np.arange(4000) / 16000
    buf = io.BytesIO()
    sig = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t)
    sf.write(buf, sig.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


class Server:
    def __init__(
        self, store: Path, log: Path, kill_at: int | str = 0, progress_log: Path | None = None
    ):
        self.url = f"http://127.0.0.1:{_free_port()}"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.pop("SPANER_TEST_KILL_AT", None)
        env.pop("SPANER_TEST_PROGRESS_LOG", None)
        if kill_at:
            env["SPANER_TEST_KILL_AT"] = str(kill_at)
        if progress_log is not None:
            env["SPANER_TEST_PROGRESS_LOG"] = str(progress_log)
        port = self.url.rsplit(":", 1)[1]
        cmd = [*SPANER, "serve", "--profile", "tiny", "--store", str(store), "--no-ui"]
        cmd += ["--host", "127.0.0.1", "--port", port]
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=120)

    def wait_healthy(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}) before it was healthy")
            try:
                if self.http.get("/v1/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not healthy in time")

    def dead(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.http.close()
        self._log.close()


def _died(srv: Server) -> bool:
    """After a failed request: did the server die (waits a little for it to be reaped)?"""
    try:
        srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return True


def _wait_job(srv: Server, job_id: str) -> dict[str, Any] | None:
    """The finished job, or None when the server died first."""
    while True:
        try:
            job = srv.http.get(f"/v1/jobs/{job_id}").json()
        except httpx.HTTPError:
            if _died(srv):
                return None
            raise
        if job["status"] not in ("queued", "running"):
            return job
        if srv.dead():
            return None
        time.sleep(0.05)


def _add(srv: Server, kind: str, seed: int, acked: dict[int, Any]) -> int:
    if kind == "text":
        text = f"item number {seed}, a {['red', 'green', 'blue'][seed % 3]} thing"
        r = srv.http.post("/v1/items", json={"items": [{"text": text, "concept": f"c{seed % 3}"}]})
        content: Any = text
    else:
        blob = _png(seed) if kind == "image" else _wav(seed)
        name = f"{seed}.png" if kind == "image" else f"{seed}.wav"
        mime = "image/png" if kind == "image" else "audio/wav"
        r = srv.http.post(
            "/v1/items", files=[("files", (name, blob, mime))], data={"concept": f"c{seed % 3}"}
        )
        content = blob
    r.raise_for_status()
    item_id = int(r.json()["items"][0]["id"])
    acked[item_id] = content
    return item_id


def _support(acked: dict[int, Any]) -> list[dict[str, Any]]:
    ex = []
    for i, c in sorted(acked.items())[:18]:  # the base items: the same support each round
        ex.append({"item_id": i, "concept": f"c{i % 3}"})
        if isinstance(c, str):
            ex.append({"text": c, "concept": f"c{i % 3}"})
    return ex


def _leftovers(store: Path) -> list[str]:
    out = [p.name for p in store.parent.iterdir() if any(m in p.name for m in LEFTOVER_MARKS)]
    models = store / "models"
    if models.is_dir():
        out += [f"models/{p.name}" for p in models.iterdir() if p.name.startswith(".")]
    return out


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_vectors(store: Path, tally: Tally, fail) -> str:
    """Every stored vector equals the active checkpoint's embedding of its content."""
    from spaner.index import open_store

    from spaner.pipeline import Spaner

    sp = Spaner.load(store / "checkpoint")
    with open_store(store, None, read_only=True) as st:
        if st.space.checkpoint_hash != sp.space_id:
            fail(f"store space {st.space.checkpoint_hash[:12]} != checkpoint {sp.space_id[:12]}")
        ids = st.ids().tolist()
        metas = st.get(ids)
        by_mod: dict[str, list[int]] = {}
        for i, m in zip(ids, metas, strict=True):
            by_mod.setdefault(m["modality"], []).append(i)
        for mod, mids in by_mod.items():
            want = sp.embed(mod, [st.content(i) for i in mids])
            got = st.vectors(mids)
            bad = [
                i
                for i, w, g in zip(mids, want, got, strict=True)
                if not np.allclose(w, g, atol=1e-4)
            ]
            if bad:
                fail(f"{len(bad)} {mod} vectors are not the active model's embedding: {bad[:5]}")
            tally.vectors_checked += len(mids)
    return sp.space_id[:12]


def _verify(
    srv: Server, store: Path, prev: dict[str, Any], acked: dict[int, Any], tally: Tally, fail
) -> None:
    active = srv.http.get("/v1/health").json()["model_id"]
    for key in ("fit", "activate"):
        jid = prev.get(key)
        if not jid:
            continue
        r = srv.http.get(f"/v1/jobs/{jid}")
        tally.jobs_checked += 1
        if r.status_code != 200:
            fail(f"GET /v1/jobs/{jid} ({key}) answered {r.status_code}")
            continue
        job = r.json()
        if job["status"] in ("queued", "running"):
            fail(f"{key} job {jid} still {job['status']} after the restart")
        if job["status"] == "interrupted" and not job["error"]:
            fail(f"{key} job {jid} interrupted without a reason")
        if key == "activate":
            want = prev["new"] if job["status"] == "succeeded" else prev["old"]
            if active != want:
                fail(f"activation {job['status']} but model {active} is active (want {want})")
    if prev.get("old"):
        if active == prev["old"]:
            tally.active_old += 1
        elif active == prev.get("new"):
            tally.active_new += 1
        else:
            fail(
                f"active model {active} is neither the old {prev['old']} nor the new {prev.get('new')}"
            )
    stats = srv.http.get("/v1/stats").json()
    if stats["items"] != len(acked):
        fail(f"{stats['items']} items stored, {len(acked)} acknowledged")
    for i, content in acked.items():
        r = srv.http.get(f"/v1/items/{i}/content")
        got: Any = r.content if not isinstance(content, str) else r.text
        if r.status_code != 200 or got != content:
            fail(f"acknowledged item {i}: {r.status_code}, content differs: {got != content}")
    left = _leftovers(store)
    tally.leftovers_max = max(tally.leftovers_max, len(left))
    if left:
        fail(f"leftovers after the restart: {left}")
    if _check_vectors(store, tally, fail) != active:
        fail("the served model is not the store's checkpoint")
    models = store / "models"
    tally.store_bytes.append(_du(store.parent) - (_du(models) if models.is_dir() else 0))


def probe(work: Path, log) -> list[str]:
    """Run one round without a kill on a copy of the base store; returns its event names."""
    store = work / "probe" / "store"
    shutil.copytree(work / "base", store.parent)
    events = work / "probe-events.txt"
    events.unlink(missing_ok=True)
    acked = json.loads((work / "base-acked.json").read_text())
    acked = {int(k): (v if isinstance(v, str) else None) for k, v in acked.items()}
    srv = Server(store, work / "probe.log", progress_log=events)
    try:
        srv.wait_healthy()
        _round_jobs(srv, acked, seed=10_000, kinds_seed=10_000)
    finally:
        srv.stop()
    names = [line.split(" ", 1)[1].strip() for line in events.read_text().splitlines()]
    log(f"probe: {len(names)} progress events")
    return names


def _round_jobs(srv: Server, acked: dict[int, Any], seed: int, kinds_seed: int) -> dict[str, Any]:
    """Add an item, fit, activate; returns the job ids and models (the server may die)."""
    info: dict[str, Any] = {"old": srv.http.get("/v1/health").json()["model_id"]}
    support = _support(acked)
    _add(srv, ["text", "image", "audio"][kinds_seed % 3], kinds_seed, acked)
    r = srv.http.post(
        "/v1/fewshot/fit", json={"examples": support, "epochs": FIT_EPOCHS, "seed": seed}
    )
    r.raise_for_status()
    info["fit"] = r.json()["id"]
    fit = _wait_job(srv, info["fit"])
    if fit is None:
        return info
    if fit["status"] != "succeeded":
        raise RuntimeError(f"fit failed: {fit}")
    info["new"] = fit["result"]["model_id"]
    try:
        r = srv.http.post(f"/v1/models/{info['new']}/activate")
        r.raise_for_status()
    except httpx.HTTPError:
        if _died(srv):
            return info
        raise
    info["activate"] = r.json()["id"]
    act = _wait_job(srv, info["activate"])
    if act is not None and act["status"] != "succeeded":
        raise RuntimeError(f"activation failed: {act}")
    return info


def _add_base(srv: Server, acked: dict[int, Any]) -> None:
    for s in range(12):
        _add(srv, "text", s, acked)
    for s in range(6):
        _add(srv, "image", 100 + s, acked)
    for s in range(3):
        _add(srv, "audio", 200 + s, acked)


def make_base(work: Path, log) -> dict[int, Any]:
    store = work / "base" / "store"
    acked: dict[int, Any] = {}
    srv = Server(store, work / "base.log")
    try:
        srv.wait_healthy()
        _add_base(srv, acked)
    finally:
        srv.stop()
    (work / "base-acked.json").write_text(
        json.dumps({str(k): (v if isinstance(v, str) else None) for k, v in acked.items()})
    )
    log(f"base store: {len(acked)} items")
    return acked


def choose_points(names: list[str], kills: int) -> list[int | str]:
    """``kills`` points spread over the fit, the re-embedding and the swap: every swap step
    first (by name: each is one event), the rest evenly over the fit and the re-embedding (by
    event number, in the order the probe saw them)."""
    swap = [n for n in names if n.startswith("activate:swap:")]
    other = [i + 1 for i, n in enumerate(names) if not n.startswith("activate:swap:")]
    pts: list[int | str] = list(dict.fromkeys(swap))[:kills]
    rest = kills - len(pts)
    if rest > 0 and other:
        idx = np.linspace(0, len(other) - 1, num=min(rest, len(other))).round().astype(int)
        pts = [other[i] for i in sorted(set(idx.tolist()))] + pts
    return pts


def _phase(name: str) -> str:
    if name.startswith("fit:"):
        return "fit"
    if name.startswith("activate:swap:"):
        return "swap"
    return "re-embedding"


def run(work: Path, kills: int, log, points: list[int | str] | None = None) -> Tally:
    """``points``: event numbers or name prefixes (no probe run); else ``kills`` points
    chosen from a probe run."""
    tally = Tally()
    store = work / "kills" / "store"
    if points:
        pts, acked = points, {}
    else:
        acked = make_base(work, log)
        pts = choose_points(probe(work, log), kills)
        shutil.copytree(work / "base", store.parent)
    log(f"kill points: {pts}")
    prev: dict[str, Any] = {}
    for r, n in enumerate([*pts, 0]):  # the last start only checks the last kill
        events = work / f"events-{r}.txt"
        srv = Server(store, work / f"round-{r}.log", kill_at=n, progress_log=events)

        def fail(msg: str, r: int = r) -> None:
            tally.failures.append(f"round {r}: {msg}")

        try:
            srv.wait_healthy()
            if not acked:  # no base store: this first server makes it
                _add_base(srv, acked)
            _verify(srv, store, prev, acked, tally, fail)
            if n == 0:
                break
            tally.rounds += 1
            prev = _round_jobs(srv, acked, seed=r + 1, kinds_seed=r)
        except Exception as exc:  # noqa: BLE001 - reported as a failure of the round
            if not srv.dead():
                fail(f"{type(exc).__name__}: {exc}")
        finally:
            if n and srv.dead():
                lines = events.read_text().splitlines() if events.exists() else []
                last = lines[-1].split(" ", 1)[1] if lines else "?"
                tally.kills += 1
                ph = _phase(last)
                tally.kills_by_phase[ph] = tally.kills_by_phase.get(ph, 0) + 1
                log(f"round {r}: killed at {n!r} ({last})")
            elif n:
                tally.finished_without_kill += 1
                log(f"round {r}: finished before {n!r}")
            srv.stop()
    tally.acknowledged = len(acked)
    return tally


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kills", type=int, default=22, help="kill points (spread over the phases)")
    ap.add_argument(
        "--points",
        default="",
        help="comma-separated event numbers or event-name prefixes (skips the probe run)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="spaner-actkill-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        pts: list[int | str] = [int(x) if x.isdigit() else x for x in args.points.split(",") if x]
        tally = run(work, args.kills, log, pts or None)
    out = {**asdict(tally), "seconds": round(time.monotonic() - t0, 1)}
    if args.json:
        print(json.dumps(out))
    else:
        sizes = tally.store_bytes
        print(
            f"rounds {tally.rounds}  kills {tally.kills} {tally.kills_by_phase} "
            f"(+{tally.finished_without_kill} finished first)  acknowledged {tally.acknowledged}  "
            f"vectors checked {tally.vectors_checked}  active old/new "
            f"{tally.active_old}/{tally.active_new}  jobs checked {tally.jobs_checked}  "
            f"leftovers max {tally.leftovers_max}  store without models/ {sizes[0] if sizes else 0}"
            f" -> {sizes[-1] if sizes else 0} bytes  failures {len(tally.failures)}  "
            f"({out['seconds']} s)"
        )
        for f in tally.failures[:50]:
            print("FAIL", f)
    return 0 if not tally.failures and tally.kills > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
