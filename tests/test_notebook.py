"""notebooks/quickstart.ipynb runs top to bottom (its code cells, in order, in one namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    pytest.importorskip(
        "matplotlib", reason="the notebook's map needs matplotlib (the dev extra installs it)"
    )
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        exec(compile(source, f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "quickstart-work" / "space_map.png").stat().st_size > 10_000
    assert namespace["retrieval"]["text->image"]["R@1"] > 0.5
    hits = namespace["hits"]  # the store cell: `import spaner`'s create_store/Filter/Item
    assert len(hits) == 5 and {h.metadata["modality"] for h in hits} == {"image"}
