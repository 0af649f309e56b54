"""examples/fruitspark.ipynb: kept without outputs in git, and executed end to end on a subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, FRUITS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebooks_are_stored_without_outputs(notebook: Path) -> None:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code, "a notebook with code"
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code), (
        "strip outputs before committing (e.g. nbstripout)"
    )


def _outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(str(value) for value in output.get("data", {}).values())
    return "".join(parts)


@pytest.mark.slow
def test_the_notebook_tells_the_whole_story_on_a_subset(tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "fruitspark.ipynb", as_version=4)
    for name, value in {
        "FRUITSPARK_NOTEBOOK_DATA": str(FRUITS),
        "FRUITSPARK_NOTEBOOK_CLASSES": "2",
        "FRUITSPARK_NOTEBOOK_IMAGES": "4",
        "FRUITSPARK_NOTEBOOK_WORK": str(tmp_path),
        "FRUITSPARK_NOTEBOOK_PHOTO": str(DATA / "photos" / "banana" / "banana_64.jpg"),
        # No AWS: no credentials from anywhere, and never the instance metadata address.
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": EXAMPLES}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(notebook, tmp_path / "executed.ipynb")  # to read when the test fails

    printed = [_outputs(cell) for cell in notebook.cells if cell.cell_type == "code"]
    everything = "\n".join(printed)
    assert "accounting ok" in everything and "16 images, 16 featurised, 0 failed" in everything
    figures = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert len(figures) == 2, "the explained variance and the 2-D PCA, inline"
    assert "Test top-1" in everything and "banana_64.jpg ->" in everything
    assert (tmp_path / "output" / "report.html").exists()
    assert "eu-west-3" in everything and "USD" in everything, "the cloud plan, made without AWS"
    aws_cells = [c for c in notebook.cells if "aws" in c.metadata.get("tags", [])]
    assert len(aws_cells) == 3
    assert all("no AWS credentials" in _outputs(cell) for cell in aws_cells)
