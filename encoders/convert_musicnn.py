"""Convert musicnn's ``MTT_musicnn`` TensorFlow checkpoint to safetensors, without TensorFlow.

    pip download musicnn==0.1.0 --no-deps -d /tmp/musicnn     # the wheel (ISC licence)
    .venv/bin/python -m spaner.encoders.convert_musicnn /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \\
        --out ~/.cache/spaner/models/musicnn-mtt.safetensors

The wheel's declared dependencies do not install on Python 3.11; only its checkpoint files are
read (:func:`spaner.encoders.tf_checkpoint.read_tf_checkpoint`), from the wheel itself or an
unpacked copy. The output holds :class:`spaner.encoders.musicnn.Musicnn`'s state dict, its 50
tags and its source in the metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import zipfile
from pathlib import Path

from .musicnn import MTT_TAGS, Musicnn, tf_to_torch
from .tf_checkpoint import read_tf_checkpoint

__all__ = ["convert_musicnn", "MODEL"]

log = logging.getLogger(__name__)

MODEL = "MTT_musicnn"


def _checkpoint_prefix(source: Path, tmp: Path) -> Path:
    """The checkpoint prefix of ``MODEL`` in a wheel (unpacked into ``tmp``) or a folder."""
    if source.is_file() and source.suffix == ".whl":
        with zipfile.ZipFile(source) as zf:
            for name in zf.namelist():
                if f"/{MODEL}/." in name:
                    zf.extract(name, tmp)
        source = tmp
    for folder in (source / "musicnn" / MODEL, source / MODEL, source):
        if (folder / ".index").is_file():
            return folder
    raise FileNotFoundError(f"{source}: no {MODEL}/.index checkpoint inside")


def convert_musicnn(source: str | Path, out: str | Path) -> Path:
    """Write ``out`` (safetensors) from the musicnn wheel or folder ``source``; returns ``out``."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        prefix = _checkpoint_prefix(Path(source), Path(tmp))
        weights = read_tf_checkpoint(f"{prefix}/")
    state = tf_to_torch(weights)
    Musicnn().load_state_dict(state)  # every tensor present, every shape right
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": MODEL, "tags": json.dumps(MTT_TAGS), "source": "musicnn 0.1.0 (ISC)"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata=meta)
    log.info("converted %s (%d tensors) to %s", MODEL, len(state), out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="the musicnn wheel or its unpacked folder")
    ap.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    convert_musicnn(args.source, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
