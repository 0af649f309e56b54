"""Bad inputs through the real pipeline (CLI, local Spark, default EfficientNet model).

The tree of tests/badinputs.py goes through ``fruitspark run`` twice: once with defaults, once with
``--fail-on-error --follow-symlinks``. Every image must come out exactly once, with features or
with the error it deserves, and the summary must say so. Plus the CLI's one-line failures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pi_heif
import pyarrow.parquet as pq
import pytest
from badinputs import EXIF_ROTATED, OK, OUTSIDE_ROOT, SYMLINK, make_bad_inputs
from PIL import Image

from fruitspark.cli import main
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.formats import IMAGE_SUFFIXES
from fruitspark.model import DEFAULT_MODEL, default_precision, new_session, resolve_model
from fruitspark.preprocess import COLOUR_DIM
from fruitspark.sources import local_path_of

pytestmark = pytest.mark.slow

MASTER = "local[2]"
FAST = ["--master", MASTER, "--no-report"]
# Spark's file scan skips zero-length files; the pipeline finds them in the file index instead.
ZERO_BYTE = "Training/Broken/zero bytes.jpg"


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str
    output: Path


@pytest.fixture(scope="module")
def spark():
    """The session in use in this process, or a new local one; never stopped here."""
    from fruitspark.session import spark_session

    return spark_session("local[2,3]")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("bad") / "input"
    return root, make_bad_inputs(root)


def cli(argv: list[str], output: Path) -> CliRun:
    """``fruitspark ...`` in-process, with its stdout and stderr captured."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        patch.delenv("FRUITSPARK_DEBUG", raising=False)  # it turns error lines into raises
        code = main(argv)
    return CliRun(code, stdout.getvalue(), stderr.getvalue(), output)


@pytest.fixture(scope="module")
def default_run(spark, tree, tmp_path_factory) -> CliRun:
    root, _ = tree
    output = tmp_path_factory.mktemp("default") / "out"
    return cli(["run", str(root), str(output), *FAST], output)


@pytest.fixture(scope="module")
def strict_run(spark, tree, tmp_path_factory) -> CliRun:
    root, _ = tree
    output = tmp_path_factory.mktemp("strict") / "out"
    argv = ["run", str(root), str(output), *FAST, "--fail-on-error", "--follow-symlinks"]
    return cli(argv, output)


def rows_by_path(output: Path, root: Path) -> dict[str, dict]:
    """The output rows keyed by path relative to the input root; duplicates fail here."""
    rows = pq.read_table(output / "features").to_pylist()
    relative = [os.path.relpath(local_path_of(row["path"]), root) for row in rows]
    duplicated = [path for path, count in Counter(relative).items() if count > 1]
    assert not duplicated, f"written more than once: {duplicated}"
    for row in rows:
        assert row["path"].startswith("file:/"), row["path"]
    return dict(zip(relative, rows, strict=True))


def summary_of(output: Path) -> dict:
    return json.loads((output / "summary.json").read_text())


def expectations(expected: dict[str, str | None], *, follow_symlinks: bool) -> dict[str, str]:
    """Image files (by extension, as the pipeline sees them) and what each must become."""
    images = {path: outcome for path, outcome in expected.items() if outcome is not None}
    if follow_symlinks:
        images[SYMLINK] = OK
    return images


def upright_size(path: Path, relative: str) -> tuple[int, int]:
    """The picture's size as its header says, turned for the EXIF-rotated one (HEIC's header
    size, read through pi-heif, is already upright: the rotation is the file's own)."""
    pi_heif.register_heif_opener()
    with Image.open(path) as raw:
        width, height = raw.size
    return (height, width) if relative == EXIF_ROTATED else (width, height)


def check_rows(run: CliRun, tree, *, follow_symlinks: bool) -> dict[str, dict]:
    root, expected = tree
    rows = rows_by_path(run.output, root)
    wanted = expectations(expected, follow_symlinks=follow_symlinks)
    assert sorted(rows) == sorted(wanted)
    dimension = summary_of(run.output)["model"]["feature_dim"]
    k = summary_of(run.output)["pca"]["k"]
    for relative, outcome in wanted.items():
        row, path = rows[relative], root / relative
        assert row["label"] == Path(relative).parent.name, relative
        assert row["split"] == "train", relative
        assert row["size"] == path.stat().st_size, relative
        if outcome == OK:
            assert row["error"] is None, (relative, row["error"])
            assert (row["width"], row["height"]) == upright_size(path, relative), relative
            features = np.asarray(row["features"], dtype=np.float32)
            assert features.shape == (dimension,) and np.isfinite(features).all(), relative
            assert row["pca"] is not None and len(row["pca"]) == k, relative
        else:
            assert row["error"] is not None and outcome in row["error"], (relative, row["error"])
            assert "\n" not in row["error"]
            assert row["features"] is None and row["pca"] is None, relative
            assert row["width"] is None and row["height"] is None, relative
    return rows


def check_summary(run: CliRun, tree, *, follow_symlinks: bool) -> None:
    _, expected = tree
    wanted = expectations(expected, follow_symlinks=follow_symlinks)
    summary = summary_of(run.output)
    errors = Counter(outcome for outcome in wanted.values() if outcome != OK)
    failed = sum(errors.values())
    assert summary["images"]["listed"] == len(wanted)
    assert summary["images"]["featurised"] == len(wanted) - failed
    assert summary["images"]["failed"] == failed
    assert summary["images"]["processed_this_run"] == len(wanted)
    by_expectation: Counter[str] = Counter()
    for reason, count in summary["errors_by_reason"].items():
        matches = [outcome for outcome in errors if outcome in reason]
        assert len(matches) == 1, f"unexpected error reason {reason!r}"
        by_expectation[matches[0]] += count
    assert by_expectation == errors
    assert summary["accounting"] == {
        "listed": len(wanted),
        "rows": len(wanted),
        "missing": 0,
        "duplicated": 0,
        "unexpected": 0,
        "ok": True,
    }
    assert summary["labels"] == dict(Counter(Path(path).parent.name for path in wanted))
    assert summary["model"]["id"] == "efficientnet_lite0"
    assert summary["model"]["descriptor"] == "both"
    assert summary["model"]["feature_dim"] > COLOUR_DIM  # the CNN block is there


# --- the default run ------------------------------------------------------------------------------


def test_default_run_succeeds_despite_bad_images(default_run):
    assert default_run.code == 0, default_run.stderr
    assert "accounting ok" in default_run.stdout
    assert "Traceback" not in default_run.stderr and "fruitspark: error" not in default_run.stderr
    assert (default_run.output / "summary.json").is_file()


def test_every_image_appears_once_with_features_or_its_error(default_run, tree):
    rows = check_rows(default_run, tree, follow_symlinks=False)
    assert OUTSIDE_ROOT in rows[SYMLINK]["error"]
    assert not [path for path in rows if "Empty" in path or "No Images" in path]


def test_image_files_on_disk_are_all_in_the_output(default_run, tree):
    """Independent of the expectations table: walk the tree, every image file is a row."""
    root, _ = tree
    on_disk = {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()
    }
    assert len(on_disk) >= 20
    assert sorted(rows_by_path(default_run.output, root)) == sorted(on_disk)


def test_zero_byte_file_is_recorded_as_an_error(default_run, tree):
    root, _ = tree
    rows = rows_by_path(default_run.output, root)
    assert ZERO_BYTE in rows
    assert "empty file" in rows[ZERO_BYTE]["error"]


def test_summary_counts_match(default_run, tree):
    check_summary(default_run, tree, follow_symlinks=False)


def test_width_and_height_of_the_exif_rotated_image_are_swapped(default_run, tree):
    root, _ = tree
    row = rows_by_path(default_run.output, root)[EXIF_ROTATED]
    with Image.open(root / EXIF_ROTATED) as raw:
        stored = raw.size
    assert stored[0] > stored[1]  # stored landscape ...
    assert (row["width"], row["height"]) == (stored[1], stored[0])  # ... shown portrait


def test_features_are_those_of_the_file_at_that_path(default_run, tree):
    """Spark's rows match a local, Spark-free computation path by path (nothing mixed up)."""
    root, _ = tree
    rows = rows_by_path(default_run.output, root)
    good = sorted(path for path, row in rows.items() if row["error"] is None)
    spec = resolve_model(precision=default_precision(DEFAULT_MODEL))  # the run's default
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    local = describe_images(
        [(root / path).read_bytes() for path in good], session, spec, FeaturizeOptions()
    )
    for path, result in zip(good, local, strict=True):
        assert result.error is None, path
        spark_features = np.asarray(rows[path]["features"], dtype=np.float32)
        assert np.allclose(spark_features, result.features, rtol=1e-3, atol=1e-3), path
    same_bytes = ["Training/Names/with space.jpg", "Training/Names/100% juice.jpg"]
    assert rows[same_bytes[0]]["features"] == pytest.approx(rows[same_bytes[1]]["features"])


# --- --fail-on-error and --follow-symlinks --------------------------------------------------------


def test_fail_on_error_exits_1_and_still_writes_everything(strict_run, tree):
    assert strict_run.code == 1
    lines = strict_run.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("fruitspark: error:")]
    assert len(errors) == 1 and "--fail-on-error" in errors[0] and "failed" in errors[0]
    assert "Traceback" not in strict_run.stderr
    assert (strict_run.output / "summary.json").is_file()
    check_rows(strict_run, tree, follow_symlinks=True)
    check_summary(strict_run, tree, follow_symlinks=True)


def test_symlink_outside_the_root_is_read_only_with_follow_symlinks(default_run, strict_run, tree):
    root, _ = tree
    assert (root / SYMLINK).is_symlink()
    assert not (root / SYMLINK).resolve().is_relative_to(root.resolve())
    refused = rows_by_path(default_run.output, root)[SYMLINK]
    followed = rows_by_path(strict_run.output, root)[SYMLINK]
    assert OUTSIDE_ROOT in refused["error"] and refused["features"] is None
    assert followed["error"] is None and followed["features"] is not None
    assert (followed["width"], followed["height"]) == upright_size(root / SYMLINK, SYMLINK)


# --- one-line failures ----------------------------------------------------------------------------


def assert_one_clean_line(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fruitspark: error:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    for trace in ("Traceback", "at org.apache", "py4j", "Exception", "java."):
        assert trace not in stderr, stderr


def test_missing_input_folder_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FRUITSPARK_DEBUG", raising=False)
    missing, output = tmp_path / "no such folder", tmp_path / "out"
    assert main(["run", str(missing), str(output), *FAST]) == 2
    captured = capsys.readouterr()
    assert_one_clean_line(captured.err, "input not found", str(missing))
    assert not output.exists()


@pytest.mark.parametrize(
    ("model", "message"),
    [("resnet9000", "unknown model 'resnet9000'"), ("{tmp}/missing.onnx", "model file not found")],
)
def test_unknown_model_exits_2_with_one_line(
    spark, tree, tmp_path, capsys, monkeypatch, model, message
):
    monkeypatch.delenv("FRUITSPARK_DEBUG", raising=False)
    root, _ = tree
    output, model = tmp_path / "out", model.format(tmp=tmp_path)
    assert main(["run", str(root), str(output), *FAST, "--model", model]) == 2
    captured = capsys.readouterr()
    assert_one_clean_line(captured.err, message)
    assert not output.exists()


def test_a_scanned_folder_gets_a_row_for_each_zero_byte_file(spark, tmp_path):
    """A remote folder is read by Spark's binaryFile scan, which drops empty files: the file
    index still lists them, and empty_images gives each its listing row (0 bytes)."""
    from fruitspark.sources import empty_images, read_folder

    (tmp_path / "Training" / "Kiwi").mkdir(parents=True)
    Image.new("RGB", (8, 8), "green").save(tmp_path / "Training" / "Kiwi" / "a.jpg")
    (tmp_path / "Training" / "Kiwi" / "empty one.jpg").write_bytes(b"")
    listing = read_folder(spark, f"file://{tmp_path}").drop("content")
    assert listing.count() == 1
    rows = empty_images(spark, listing, 1).collect()
    assert [(row["path"], row["size"], row["label"]) for row in rows] == [
        (f"file:{tmp_path}/Training/Kiwi/empty one.jpg", 0, "Kiwi")
    ]
    assert empty_images(spark, listing.unionByName(empty_images(spark, listing, 1)), 2) is None
