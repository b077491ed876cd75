"""Ingest files, folders and manifests into a vector store: reader -> encoder -> writer.

>>> from spaner.ingest import ingest
>>> report = ingest(["photos/", "notes.jsonl"], "data/store", profile="tiny")
>>> report.added, report.skipped_present, len(report.bad)

Stages (clip-retrieval's reader -> mapper -> writer, each timed; :class:`IngestReport` has
the summary), one module each:

1. **read** (:mod:`.sources`): walk folders, parse manifests, sniff modality.
2. **decode** (:mod:`.reader`, :mod:`.encoder`): read the file once (size limit checked
   first), hash it (sha256) and skip content already in the store or seen earlier in this
   run; group the rest into per-modality jobs of ``batch_size``; the modality's encoder
   validates and decodes each input (``Encoder.load``). Bad inputs are reported and skipped.
3. **encode** (:mod:`.encoder`): each job's decoded inputs through the frozen encoder and
   the SPANER model into unit vectors.
4. **write** (:mod:`.writer`): each batch is one atomic ``store.add`` (vectors, metadata,
   original content).

:mod:`.driver` runs them (the encoder stage in this process, or on a Ray actor pool:
:mod:`.ray_engine`); :mod:`.pipeline` has the entry points :func:`ingest` (into a vector
store) and :func:`embed` (into Parquet files, :mod:`.parquet`); :mod:`.binding` ties a store
to its model; :mod:`.report` holds what a run did.

An interrupted run loses at most the batches not yet written; running the same command again
skips what is stored (by content hash) and finishes the rest.
"""

from __future__ import annotations

from spaner.ingest.run import embed, ingest, ingest_into

from .binding import BoundStore, open_bound_store, read_binding
from .ray_engine import RayOptions
from .report import IngestReport, Problem
from .sources import Candidate, Skip, discover, sniff_modality

__all__ = [
    "ingest",
    "ingest_into",
    "embed",
    "RayOptions",
    "IngestReport",
    "Problem",
    "BoundStore",
    "open_bound_store",
    "read_binding",
    "Candidate",
    "Skip",
    "discover",
    "sniff_modality",
]
