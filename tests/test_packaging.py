"""The built distribution is whole and serves: sdist -> wheel -> a non-editable install.

``python -m build`` makes the sdist from a copy of the repository and the wheel from that
sdist (what ``pip install spaner`` does from a source release). Every file under the four
source folders (``spaner/``, ``encoders/``, ``index/``, ``app/``) must be in both, at its
package path; nothing else may be installed as a top-level package. The wheel is then
installed with pip, non-editable, into a fresh virtual environment whose only view of the
project's dependencies is their site-packages folders (no editable finder, no repository
on ``sys.path``), and from there every ``spaner`` module imports, ``spaner encoders`` lists
the built-ins and ``spaner serve --profile tiny`` answers health, an add, a search and
``/ui/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder -> its path inside the installed package
ROOTS = {
    "spaner": "spaner",
    "encoders": "spaner/encoders",
    "index": "spaner/index",
    "app": "spaner/app",
}
#: a guard against a hung child (build, pip, server start), not a measure of speed
HANG_SECONDS = 600

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a build + a server start


def _source_files() -> list[str]:
    """Every file under the source folders as ``folder/relative/path`` (bytecode, caches and
    hidden files excepted): all of it must ship."""
    out = []
    for folder in ROOTS:
        for dirpath, dirnames, filenames in os.walk(REPO / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and not f.endswith((".pyc", ".pyo")):
                    out.append((Path(dirpath) / f).relative_to(REPO).as_posix())
    return sorted(out)


def _installed_path(src: str) -> str:
    folder, _, rest = src.partition("/")
    return f"{ROOTS[folder]}/{rest}"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_SECONDS
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    return env


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from a copy of the repository (the checkout stays untouched)."""
    pytest.importorskip("build", reason="the 'build' package (dev extra) builds the sdist")
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info")
    for folder in ROOTS:
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    # a folder the packaging has never seen, two levels down, with a data file: discovered too
    probe = src / "index" / "_probe_pkg" / "deep"
    probe.mkdir(parents=True)
    (probe.parent / "__init__.py").write_text("")
    (probe / "__init__.py").write_text("VALUE = 1\n")
    (probe / "table.json").write_text("{}\n")
    out = tmp / "out"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], cwd=tmp)
    (sdist,) = out.glob("spaner-*.tar.gz")
    (wheel,) = out.glob("spaner-*.whl")
    return sdist, wheel


def test_wheel_holds_every_module_and_data_file_and_nothing_else(dists) -> None:
    _, wheel = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [s for s in _source_files() if _installed_path(s) not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert "spaner/encoders/configs/spaner-tiny-clip.json" in names  # the tiny profile's config
    probe = "spaner/index/_probe_pkg/deep/"  # the folder added to the build copy only
    assert {probe + "__init__.py", probe + "table.json"} <= names
    assert {n.split("/")[0] for n in names} == {
        "spaner",
        f"{wheel.name.split('-py3')[0]}.dist-info",
    }
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "spaner = spaner.cli.main:main" in zipfile.ZipFile(wheel).read(meta).decode()


def test_sdist_holds_every_source_file(dists) -> None:
    sdist, _ = dists
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    missing = [s for s in _source_files() if s not in names]
    assert not missing, f"not in the sdist: {missing}"
    assert {"pyproject.toml", "setup.py", "README.md"} <= names


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel pip-installed (non-editable); the project's dependencies
    are visible as plain site-packages folders, so no editable finder of theirs is loaded."""
    _, wheel = dists
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    probe = "import json, sys; print(json.dumps(sys.path))"
    paths = json.loads(_run([sys.executable, "-c", probe], cwd=tmp, env=_clean_env()))
    # the project's own source folders must not leak in; a venv inside the checkout (make's
    # .venv, as in CI's fresh clone) holds the dependencies and pip, so it stays
    deps = [
        p
        for p in paths
        if p
        and Path(p).is_dir()
        and (not Path(p).is_relative_to(REPO) or "site-packages" in Path(p).parts)
    ]
    site = Path(_run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], cwd=tmp))
    (Path(str(site).strip()) / "_project_deps.pth").write_text("\n".join(deps) + "\n")
    _run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
        cwd=tmp,
        env=_clean_env(),
    )
    return venv


IMPORT_ALL = """
import importlib, json, pkgutil, sys
from pathlib import Path
import spaner, spaner.app, spaner.index, spaner.encoders
root = Path(spaner.__file__).parent
mods = [m.name for m in pkgutil.walk_packages(spaner.__path__, "spaner.")]
for name in mods:
    importlib.import_module(name)
where = {}
for name, mod in list(sys.modules.items()):
    if name == "spaner" or name.startswith("spaner."):
        f = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", [])), "")
        where[name] = str(Path(f).resolve())
print(json.dumps({"root": str(root.resolve()), "modules": mods, "where": where}))
"""


def test_every_module_imports_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "bin" / "python"), "-c", IMPORT_ALL], tmp_path, _clean_env())
    got = json.loads(out)
    assert Path(got["root"]).is_relative_to(installed), got["root"]
    strays = {n: f for n, f in got["where"].items() if not Path(f).is_relative_to(installed)}
    assert not strays, f"loaded from outside the install: {strays}"
    want = {"spaner.app.routers", "spaner.app.schemas", "spaner.app.ui", "spaner.cli"}
    assert want <= set(got["modules"])
    # every source module of the repository is a module of the installed package
    repo_mods = {
        _installed_path(s)[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for s in _source_files()
        if s.endswith(".py")
    }
    assert repo_mods - {"spaner"} <= set(got["modules"])


def test_console_script_lists_encoders(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "bin" / "spaner"), "encoders", "--json"], tmp_path, _clean_env())
    names = {e["name"] for e in json.loads(out)}
    assert names, "no encoders listed"
    assert any(e["source"] == "builtin" for e in json.loads(out)), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_installed_wheel_serves(installed: Path, tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    cmd = [str(installed / "bin" / "spaner"), "-q", "serve", "--profile", "tiny"]
    cmd += ["--store", str(tmp_path / "store"), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_clean_env(), stdout=fh, stderr=fh)
        try:
            deadline = time.monotonic() + HANG_SECONDS
            while True:
                assert proc.poll() is None, f"server exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "server never became healthy"
                try:
                    if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            r = httpx.post(f"{base}/v1/items", json={"items": [{"text": "a red square"}]})
            assert r.status_code == 201, r.text
            item = r.json()["items"][0]["id"]
            r = httpx.post(
                f"{base}/v1/search", json={"queries": [{"text": "a red square"}], "k": 1}
            )
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["id"] == item
            ui = httpx.get(f"{base}/ui/", timeout=30, follow_redirects=True)
            assert ui.status_code == 200 and "gradio" in ui.text.lower(), ui.text[:500]
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
