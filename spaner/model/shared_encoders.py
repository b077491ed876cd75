"""One instance of each frozen encoder per process, for a process that trains, indexes and serves.

Frozen encoders hold no state that training changes (the service sets their input limits,
which only it uses), so a process that builds the same encoders several times (the demo:
training, then ingest, then the service, each loading its model) can build them once. Within :func:`shared_encoders`, :func:`spaner.pipeline.build_encoders`
returns the instance built earlier for the same name, options and device. Outside it, every call
builds new instances, as before. The demo's first run saves about 10 s with it (two rebuilds of
EfficientNet-Lite0 with its ImageNet label space, Whisper and MiniLM).

An instance keeps what was fixed when it was built: Whisper's CTranslate2 threads are torch's
thread count at that moment. The pool keeps every encoder built in the block until it ends
(under ``spaner demo``, as long as the server runs), and builds one encoder at a time.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from spaner.encoders import Encoder, build_encoder

__all__ = ["shared_encoders", "build_shared"]

_lock = threading.RLock()  # held while building: a second caller waits instead of building twice
_pool: dict[tuple[str, str, str], Encoder] | None = None
_depth = 0


@contextmanager
def shared_encoders() -> Iterator[None]:
    """Share built encoders inside the block (nested blocks share the outer block's pool)."""
    global _pool, _depth
    with _lock:
        if _depth == 0:
            _pool = {}
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _pool = None


def build_shared(name: str, device: str, options: Mapping[str, Any]) -> Encoder:
    """``build_encoder(name, device=device, **options)``, from the pool when one is active."""
    build = functools.partial(build_encoder, name, device=device, **dict(options))
    if _pool is None:  # no block: build without taking the lock
        return build()
    key = (name, device, json.dumps(dict(options), sort_keys=True, default=repr))
    with _lock:
        if _pool is None:  # the block ended while this call waited
            return build()
        if key not in _pool:
            _pool[key] = build()
        return _pool[key]
