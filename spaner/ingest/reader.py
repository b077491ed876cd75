"""Ingest stage 2 (reader, decoding): read one candidate's content once (size limit checked
first), hash it (sha256), skip content already in the store or seen earlier in the run, and
let the modality's encoder validate and decode it (``Encoder.load``). Bad inputs are
reported and skipped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spaner.errors import InputError

from .report import IngestReport, Problems
from .sources import Candidate

__all__ = ["Decoded", "Reader"]


@dataclass
class Decoded:
    """A candidate read and decoded: ready for its encoder."""

    cand: Candidate
    raw: Any  # what Encoder.load returned
    content: bytes | str
    digest: str


class Reader:
    """Reads and decodes candidates for ``sp``'s encoders, against ``store``'s content."""

    def __init__(
        self,
        sp: Any,
        store: Any,
        report: IngestReport,
        problem: Problems,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.sp, self.store, self.report, self.problem = sp, store, report, problem
        self.wanted = set(modalities) if modalities else None
        self.seen_hashes: set[str] = set()

    def decode(self, cand: Candidate) -> Decoded | None:
        """The decoded candidate, or None (not wanted, already stored, or reported)."""
        from spaner.encoders.decode import read_bytes
        from spaner.index import content_sha256

        m = cand.modality
        if self.wanted is not None and m not in self.wanted:
            return None
        enc = self.sp.encoders.get(m)
        if enc is None:
            have = ", ".join(sorted(self.sp.encoders))
            self.problem(cand.source, f"the model has no {m} encoder (has: {have})", "unknown")
            return None
        try:
            if cand.text is not None:
                content: bytes | str = cand.text
            elif enc.input_kind == "text":
                data = read_bytes(cand.path, enc.limits, cand.source)
                try:
                    content = data.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise InputError(cand.source, "not UTF-8 text") from None
                if not content:
                    raise InputError(cand.source, "empty text file")
            else:
                content = read_bytes(cand.path, enc.limits, cand.source)
            digest = content_sha256(content)
            if digest in self.seen_hashes or self.store.find_by_hash(digest):
                self.report.skipped_present += 1
                return None
            raw = enc.load(content, cand.source)
        except InputError as exc:
            self.problem(cand.source, exc.problem)
            return None
        except OSError as exc:
            self.problem(cand.source, f"cannot read: {exc.strerror or exc}")
            return None
        self.seen_hashes.add(digest)
        return Decoded(cand, raw, content, digest)
