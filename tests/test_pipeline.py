"""The main job on real images in local mode: outputs, refusal to clobber, resume, faults."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FRUITS, copy_subset

from fruitspark.output import OutputError, account
from fruitspark.pipeline import RunConfig, job_group, run
from fruitspark.summary import ImageCounts


def _rows(output) -> dict:
    table = pq.read_table(output / "features").to_pylist()
    return {row["path"]: row for row in table}


@pytest.fixture(scope="module")
def first_run(spark, subset, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "out"
    # int8 whatever the CPU: the default on CPUs with an integer dot product (model.py). The
    # default path: test_bad_inputs' default run (features checked against this CPU's default
    # model) and test_model's prepare test
    config = RunConfig(
        input=str(subset), output=str(output), csv=True, images_per_partition=8, precision="int8"
    )
    return output, run(config, spark)


def test_every_image_is_featurised_once_with_label_and_split(first_run, subset):
    output, summary = first_run
    rows = _rows(output)
    images = sorted(subset.rglob("*.jpg"))
    assert sorted(rows) == sorted(f"file:{path}" for path in images)
    assert summary.images == ImageCounts(len(images), len(images), 0, len(images), 0)
    assert summary.accounting.ok
    k = summary.pca.k
    for path, row in rows.items():
        assert row["label"] == path.split("/")[-2]
        assert row["split"] == ("train" if "/Training/" in path else "test")
        assert (row["width"], row["height"]) == (100, 100)
        assert len(row["features"]) == summary.model.feature_dim == 1280 + 1000 + 288
        assert len(row["pca"]) == k and row["error"] is None
    assert sum(summary.pca.explained_variance[:k]) >= 0.95
    assert summary.model.precision == "int8"
    assert (output / "summary.json").exists() and (output / "report.html").exists()
    assert not (output / "_staging").exists()


def test_model_is_loaded_once_per_python_worker(first_run):
    _, summary = first_run
    settings = asdict(summary.settings)
    # Workers outlive jobs: a session cached by an earlier run in this process counts 0 here.
    assert settings["model_loads"] <= settings["parallelism"] < settings["featurize_partitions"]


def test_csv_has_label_and_pca_matrix(first_run):
    output, summary = first_run
    lines = "".join(p.read_text() for p in sorted((output / "pca_csv").glob("part-*.csv")))
    header = lines.splitlines()[0].split(",")
    assert header[:3] == ["path", "label", "split"]
    assert header[3:] == [f"pc{i + 1}" for i in range(summary.pca.k)]
    assert sum(1 for line in lines.splitlines() if line.startswith("file:")) == 48


def test_existing_output_is_refused_unless_overwrite(spark, first_run, subset):
    output, _ = first_run
    with pytest.raises(OutputError, match="already holds results"):
        run(RunConfig(input=str(subset), output=str(output)), spark)


def test_partial_output_is_named_and_overwrite_replaces_it(spark, subset, tmp_path):
    output = tmp_path / "out"
    (output / "_staging" / "abc" / "featurized").mkdir(parents=True)
    (output / "features").mkdir()
    with pytest.raises(OutputError, match="partial result of an interrupted run"):
        run(RunConfig(input=str(subset), output=str(output)), spark)
    summary = run(RunConfig(input=str(subset), output=str(output), overwrite=True), spark)
    assert summary.accounting.ok
    assert sorted(p.name for p in output.iterdir()) == [
        "features", "pca.npz", "pca_model", "report.html", "summary.json"
    ]  # fmt: skip


def test_resume_processes_only_changes_and_equals_a_fresh_run(spark, tmp_path):
    images = copy_subset(tmp_path / "images", train=5, test=2)
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    run(RunConfig(input=str(images), output=str(resumed)), spark)
    deleted = sorted((images / "Training" / "Kiwi").glob("*.jpg"))[0]
    deleted.unlink()
    changed = sorted((images / "Training" / "Lemon").glob("*.jpg"))[0]
    shutil.copyfile(sorted((FRUITS / "Training" / "Kiwi").glob("*.jpg"))[-1], changed)
    new_folder = images / "Training" / "Strawberry"
    new_folder.mkdir()
    for image in sorted((FRUITS / "Training" / "Strawberry").glob("*.jpg"))[:2]:
        shutil.copy2(image, new_folder / image.name)

    summary = run(RunConfig(input=str(images), output=str(resumed), resume=True), spark)
    run(RunConfig(input=str(images), output=str(fresh)), spark)

    assert summary.images.processed_this_run == 3
    assert summary.images.reused_from_previous_run == summary.images.listed - 3
    after, expected = _rows(resumed), _rows(fresh)
    assert sorted(after) == sorted(expected)
    assert f"file:{deleted}" not in after
    for path, row in expected.items():
        assert after[path]["size"] == row["size"]
        np.testing.assert_allclose(after[path]["features"], row["features"], atol=1e-5)
        np.testing.assert_allclose(np.abs(after[path]["pca"]), np.abs(row["pca"]), atol=1e-4)


@pytest.mark.parametrize("change", [{"descriptor": "cnn"}, {"views": "pad"}])
def test_resume_refuses_another_descriptor_or_views(spark, first_run, subset, change):
    from dataclasses import replace

    output, summary = first_run
    assert summary.model.views == "pad+crop"  # the default, recorded
    config = RunConfig(input=str(subset), output=str(output), resume=True)
    config = replace(config, featurize=replace(config.featurize, **change))
    with pytest.raises(OutputError, match="cannot resume"):
        run(config, spark)


def test_resume_refuses_another_precision(spark, first_run, subset):
    output, _ = first_run  # int8
    config = RunConfig(input=str(subset), output=str(output), resume=True, precision="fp32")
    with pytest.raises(OutputError, match=r"made in int8, this run is fp32.*--precision int8"):
        run(config, spark)


@pytest.fixture
def first_attempt_of_partition_0_dies(spark, monkeypatch):
    """Every mapInArrow of this test kills its partition 0's first attempt after one batch."""
    import faults
    from pyspark import cloudpickle

    frame_class = type(spark.range(1))
    original = frame_class.mapInArrow

    def map_in_arrow(self, function, schema, *args, **kwargs):
        return original(self, faults.kill_first_attempt(function, 0), schema, *args, **kwargs)

    cloudpickle.register_pickle_by_value(faults)
    monkeypatch.setattr(frame_class, "mapInArrow", map_in_arrow)
    yield
    cloudpickle.unregister_pickle_by_value(faults)


def test_killed_worker_is_retried_and_output_is_complete(
    spark, subset, tmp_path, first_attempt_of_partition_0_dies
):
    tracker = spark.sparkContext.statusTracker()

    def failed_tasks(group: str) -> int:
        return sum(
            stage.numFailedTasks
            for job in tracker.getJobIdsForGroup(group)
            for stage in map(tracker.getStageInfo, tracker.getJobInfo(job).stageIds)
            if stage
        )

    summary = run(
        RunConfig(
            input=str(subset),
            output=str(tmp_path / "out"),
            images_per_partition=12,
            rows_per_arrow_batch=4,
            report=False,
        ),
        spark,
    )
    assert failed_tasks(job_group(summary.run_id, "featurize")) > 0
    rows = pq.read_table(tmp_path / "out" / "features", columns=["path"]).column("path")
    assert len(rows) == len(set(rows.to_pylist())) == summary.images.listed == 48
    assert summary.accounting.ok and summary.images.failed == 0


def test_accounting_catches_missing_duplicated_and_unexpected_rows(spark, first_run):
    output, _ = first_run
    written = spark.read.parquet(str(output / "features")).select("path")
    listed = written
    assert account(listed, written).ok
    first = written.orderBy("path").limit(1)
    doctored = (
        written.exceptAll(first)  # one image lost
        .unionByName(written.orderBy("path", ascending=False).limit(1))  # one written twice
        .unionByName(spark.createDataFrame([("file:/nowhere.jpg",)], ["path"]))
    )
    result = account(listed, doctored)
    assert not result.ok
    assert (result.missing, result.duplicated, result.unexpected) == (1, 1, 1)


def test_float_arrays_are_written_without_dictionary_encoding(first_run):
    output, _ = first_run
    part = next((output / "features").glob("*.parquet"))
    row_group = pq.ParquetFile(part).metadata.row_group(0)
    encodings = {
        row_group.column(i).path_in_schema: set(row_group.column(i).encodings)
        for i in range(row_group.num_columns)
    }
    for column in ("features.list.element", "pca.list.element"):
        assert not encodings[column] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}, encodings
    assert encodings["label"] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}  # strings keep it


def test_summary_file_matches_returned_summary(first_run):
    output, summary = first_run
    on_disk = json.loads((output / "summary.json").read_text())
    assert on_disk == summary.to_dict()
    assert on_disk["schema_version"] == 2 and isinstance(on_disk["stages"]["featurize"], float)
    named = ["prepare", "session", "list", "featurize", "reduce", "write", "account"]
    assert list(on_disk["stages"])[: len(named)] == named  # the run's time, stage by stage


def test_killed_run_leaves_no_complete_looking_output_and_no_secret(subset, tmp_path):
    """SIGKILL mid-run: no summary.json; the next run names the partial output; secrets stay out."""
    import os
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "out"
    secret = "SECRETMARKER1234567890"
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "FRUITSPARK_TOKEN": secret}
    command = [sys.executable, "-m", "fruitspark.cli", "run", str(subset), str(output)]
    process = subprocess.Popen(
        [*command, "--master", "local[2]"],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not list(output.glob("_staging/*/features")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert output.exists() and not (output / "summary.json").exists()

    rerun = subprocess.run([*command, "--master", "local[2]"], env=env, capture_output=True)
    assert rerun.returncode == 2
    assert b"partial result of an interrupted run" in rerun.stderr
    finished = subprocess.run(
        [*command, "--master", "local[2]", "--overwrite"], env=env, capture_output=True
    )
    assert finished.returncode == 0, finished.stderr.decode()
    assert b"netlib" not in finished.stderr  # PCA runs in numpy: no JVM BLAS is looked for
    for text in (
        finished.stdout,
        finished.stderr,
        (output / "summary.json").read_bytes(),
        (output / "report.html").read_bytes(),
    ):
        assert secret.encode() not in text


def test_manifest_input_reads_each_listed_image(spark, subset, tmp_path):
    images = sorted(subset.rglob("*.jpg"))[:10]
    manifest = tmp_path / "manifest.csv"
    lines = ["path,label"] + [
        f"{path},{'custom' if i == 0 else ''}" for i, path in enumerate(images)
    ]
    manifest.write_text("\n".join([*lines, f"{images[1]},"]) + "\n")  # a duplicate line
    summary = run(RunConfig(input=str(manifest), output=str(tmp_path / "out"), pca_k=3), spark)
    tracker = spark.sparkContext.statusTracker()  # a local CSV is read on the driver, as a folder
    assert tracker.getJobIdsForGroup(job_group(summary.run_id, "list")) == []
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == sorted(str(path) for path in images)
    assert summary.accounting.ok and summary.images.featurised == 10
    assert rows[str(images[0])]["label"] == "custom"
    assert rows[str(images[2])]["label"] == images[2].parent.name
    assert rows[str(images[2])]["split"] in ("train", "test")


def test_the_callers_session_is_left_as_found_on_success_and_on_error(spark, subset, tmp_path):
    sc = spark.sparkContext
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64m")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "5000")
    spark.conf.unset("spark.sql.files.openCostInBytes")
    default_open_cost = spark.conf.get("spark.sql.files.openCostInBytes")
    spark.conf.set("spark.sql.shuffle.partitions", "7")  # the account stage plans its own
    sc.setJobGroup("mine", "my own jobs")

    def as_found() -> None:
        assert spark.conf.get("spark.sql.files.maxPartitionBytes") == "64m"
        assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "5000"
        assert spark.conf.get("spark.sql.files.openCostInBytes") == default_open_cost
        assert spark.conf.get("spark.sql.shuffle.partitions") == "7"
        assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
        assert sc.getLocalProperty("spark.jobGroup.id") == "mine"
        assert sc.getLocalProperty("spark.job.description") == "my own jobs"

    images = copy_subset(tmp_path / "images", classes=("Kiwi", "Lemon"), train=3, test=1)
    run(RunConfig(input=str(images), output=str(tmp_path / "out"), pca_k=2, report=False), spark)
    as_found()
    manifest = tmp_path / "bad.csv"
    manifest.write_text("file,label\nx.jpg,a\n")  # no path column: fails after Spark started
    with pytest.raises(Exception, match="no 'path' column"):
        run(RunConfig(input=str(manifest), output=str(tmp_path / "out2")), spark)
    as_found()
    assert not (tmp_path / "out2" / "_run.lock").exists()
    sc.setLocalProperty("spark.jobGroup.id", None)
    sc.setLocalProperty("spark.job.description", None)
    spark.conf.unset("spark.sql.shuffle.partitions")


def test_each_image_is_featurised_once_and_each_stage_runs_its_jobs_once(
    spark, subset, tmp_path, monkeypatch
):
    """Rows leaving the model are counted: a stage that recomputed the featurisation would
    count them again. Listing, featurize, reduce and account each run one action (a few Spark
    jobs)."""
    import fruitspark.pipeline as pipeline

    featurized_rows = spark.sparkContext.accumulator(0)
    real_featurize = pipeline.featurize

    def counted(frame, spec, options):
        rows, loads = real_featurize(frame, spec, options)

        def count(batches):
            for batch in batches:
                featurized_rows.add(batch.num_rows)
                yield batch

        return rows.mapInArrow(count, rows.schema), loads

    monkeypatch.setattr(pipeline, "featurize", counted)
    summary = run(RunConfig(input=str(subset), output=str(tmp_path / "out"), csv=True), spark)
    assert featurized_rows.value == summary.images.listed == 48
    tracker = spark.sparkContext.statusTracker()
    jobs = {
        name: len(tracker.getJobIdsForGroup(job_group(summary.run_id, name)))
        for name in ("list", "featurize", "reduce", "write", "account", "report")
    }
    # Adaptive execution runs each shuffle's map side as a job of its own: a count is 2 or 3.
    # A local folder is listed without Spark; 48 rows (< d) reach the driver in one collect; the
    # write is the features' Parquet and the CSV (the PCA model and its schema cost no job).
    assert jobs["list"] == 0 and jobs["featurize"] <= 3 and jobs["reduce"] == 1, jobs
    assert jobs["write"] <= 2, jobs
    assert jobs["account"] == 1, jobs  # accounting and per-class counts: one aggregation
