"""Package discovery for the ``spaner`` distribution; all other metadata is in pyproject.toml.

The import package ``spaner`` is assembled from four source folders: ``spaner/`` itself and
``encoders/``, ``index/`` and ``app/`` (``spaner.encoders``, ``spaner.index``, ``spaner.app``).
pyproject.toml cannot discover packages under such a mapping, so this file walks the folders:
every folder below a root is a package (a new folder cannot be left out of the wheel), and
every file in it that is not Python source ships as package data. Hidden files and folders,
``__pycache__`` and build leftovers are skipped. Nothing outside the four roots is packaged
(``tests/``, ``benchmarks/``, ``notebooks/`` are not installed).
"""

from __future__ import annotations

import os

from setuptools import setup

#: import package -> source folder (relative to this file)
ROOTS = {
    "spaner": "spaner",
    "spaner.encoders": "encoders",
    "spaner.index": "index",
    "spaner.app": "app",
}
_SKIP_DIRS = {"__pycache__", "build", "dist"}
_SKIP_SUFFIXES = (".py", ".pyc", ".pyo", ".egg-info")


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in _SKIP_DIRS or name.endswith(".egg-info")


def discover(roots: dict[str, str] = ROOTS) -> tuple[list[str], dict[str, list[str]]]:
    """Every package under ``roots`` (sorted) and, per package, its non-Python files."""
    packages: list[str] = []
    data: dict[str, list[str]] = {}
    for name, folder in roots.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
            rel = os.path.relpath(dirpath, folder)
            pkg = name if rel == "." else ".".join([name, *rel.split(os.sep)])
            if pkg in roots and pkg != name:  # e.g. a spaner/index/ beside index/
                raise RuntimeError(f"{dirpath} would shadow the package {pkg} ({roots[pkg]}/)")
            packages.append(pkg)
            files = sorted(
                f for f in filenames if not _skipped(f) and not f.endswith(_SKIP_SUFFIXES)
            )
            if files:
                data[pkg] = files
    return sorted(packages), data


if __name__ == "__main__":
    _packages, _data = discover()
    setup(packages=_packages, package_dir=dict(ROOTS), package_data=_data)
