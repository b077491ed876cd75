"""Few-shot fit jobs: a support set -> prompt + aligners trained from the active model.

The support set is written to a private temporary folder as a manifest (every line in the
``train`` split), trained with :meth:`Spaner.fit` on a copy of the active model (searches
keep using the original), scored before and after on the held-out slice, and saved under
``<store>/models/<id>`` with the TrainConfig it used (``train_config`` in its info). The
request's settings apply over the model profile's training defaults (the digits profile's image
augmentation, say), as in ``spaner train``. It becomes active only through an activation job.
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from spaner.evaluation.compare import evaluate_model
from spaner.pipeline import Spaner
from spaner.training.manifest import Manifest, ManifestItem

from .errors import Unprocessable
from .jobs import Job
from .killpoints import progress_point
from .model_registry import json_safe, save_model
from .state import ActiveSpace, ServiceState
from .uploads import sniff

__all__ = ["SupportExample", "check_support", "start_fit", "MAX_SUPPORT"]

MAX_SUPPORT = 512


@dataclass(frozen=True)
class SupportExample:
    """One labelled example: its modality, its content (text or file bytes) and concept."""

    modality: str
    content: str | bytes
    concept: str
    name: str = "example"


def check_support(active: ActiveSpace, examples: list[SupportExample]) -> None:
    """Refuse support sets training cannot use, with a message saying what to add."""
    if len(examples) > MAX_SUPPORT:
        raise Unprocessable(f"{len(examples)} examples; a few-shot fit takes at most {MAX_SUPPORT}")
    mods = sorted({e.modality for e in examples if e.modality in active.spaner.encoders})
    missing = sorted({e.modality for e in examples} - set(active.spaner.encoders))
    if missing:
        raise Unprocessable(f"the active model has no {', '.join(missing)} modality")
    if len(mods) < 2:
        raise Unprocessable(
            f"the support set has only {mods or 'no'} examples; give examples in at least two "
            "modalities (e.g. texts and images) so the aligners learn to bring them together"
        )
    if len({e.concept for e in examples}) < 2:
        raise Unprocessable(
            "the support set has one concept; give examples of at least two concepts"
        )


def _manifest(examples: list[SupportExample], folder: Path) -> Manifest:
    items = []
    for i, ex in enumerate(examples):
        if isinstance(ex.content, str):
            value = ex.content
        else:
            kind = sniff(ex.content)
            value = str(folder / f"{i}.{kind.ext if kind else 'bin'}")
            Path(value).write_bytes(ex.content)
        items.append(ManifestItem(f"s{i}", {ex.modality: value}, ex.concept, "train", {}, i + 1))
    return Manifest(folder / "manifest.jsonl", items)


def _metrics(model: Any, features: Any) -> dict[str, Any]:
    retrieval, coherence = evaluate_model(model, features)
    return {"retrieval": retrieval, "coherence": coherence}


def _run_fit(
    state: ServiceState, job: Job, examples: list[SupportExample], settings: dict[str, Any]
) -> dict[str, Any]:
    base = state.peek()
    job.update(0.02, "encoding the support set")
    spaner = Spaner(copy.deepcopy(base.spaner.model), base.spaner.encoders)
    cfg = spaner.train_config(**settings)  # over the profile defaults of the model trained
    state.models_dir.mkdir(parents=True, exist_ok=True)  # temp files here: a restart removes them
    with tempfile.TemporaryDirectory(prefix=".tmp-fit-", dir=state.models_dir) as tmp:
        data = spaner.prepare(_manifest(examples, Path(tmp)), cfg)
    held_out = len(data.val) > 0
    scored = data.val if held_out else data.train
    before = _metrics(base.spaner.model, scored)
    mods = [m for m in data.train.modalities if m in spaner.model.aligners]
    total = cfg.epochs * max(
        1, math.ceil(sum(len(data.train.modalities[m]) for m in mods) / cfg.batch_size)
    )
    params = {id(p) for p in spaner.model.parameters()}
    steps = 0

    def on_step(opt: torch.optim.Optimizer, *_: Any) -> None:
        nonlocal steps
        if any(id(p) in params for g in opt.param_groups for p in g["params"]):
            steps += 1
            job.update(0.1 + 0.8 * steps / total, f"training: step {steps} of at most {total}")

    job.update(0.1, "training")
    handle = register_optimizer_step_post_hook(on_step)
    try:
        result = spaner.fit(data, cfg, progress=False)
    finally:
        handle.remove()
    job.update(0.92, "scoring")
    after = _metrics(spaner.model, scored)
    train = {k: v for k, v in result.to_dict().items() if k not in ("train_loss", "val_loss")}
    metrics = json_safe(
        {
            "scored_on": "held-out support examples" if held_out else "the support set itself",
            "before": before,
            "after": after,
            "train": train,
        }
    )
    info = {
        "job": job.id,
        "parent": base.model_id,
        "examples": len(examples),
        "metrics": metrics,
        "train_config": asdict(cfg),
    }
    job.no_more_cancel()
    mid = save_model(state, spaner, info)
    progress_point("fit:saved")
    return {"model_id": mid, "parent": base.model_id, "metrics": metrics}


def start_fit(
    state: ServiceState, examples: list[SupportExample], epochs: int | None, lr: float, seed: int
) -> Job:
    """Queue a fit job: ``epochs`` (default: the server's ``fit_epochs``), ``lr`` and ``seed``
    over the active model profile's training defaults (checked now, applied when the job runs)."""
    settings = {
        "epochs": epochs or state.settings.fit_epochs,
        "lr": lr,
        "seed": seed,
        "patience": 20,
    }
    state.peek().spaner.train_config(**settings)  # a bad setting is refused here, not in the job
    return state.jobs.submit("fit", lambda job: _run_fit(state, job, examples, settings))
