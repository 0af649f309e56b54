"""Bucket, sync, run, status, logs and down against a moto server on 127.0.0.1.

No request can reach AWS: credentials are fake, and AWS_ENDPOINT_URL sends every boto3 client
(even one created without ``endpoint_url``) to the loopback server. moto cannot run Spark, so
where a test needs a step to finish it moves moto's step to the state EMR would report, and
writes the files the job would have written.
"""

from __future__ import annotations

import copy
import gzip
import io
import urllib.request
from pathlib import Path

import boto3
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.emr.models import emr_backends
from moto.server import ThreadedMotoServer

from fruitspark.cloud import (
    Aws,
    BucketSpec,
    CloudError,
    ClusterConfig,
    RunFailed,
    down,
    ensure_bucket,
    logs,
    run,
    status,
    sync,
)
from fruitspark.cloud.plan import bootstrap_script

REGION = "eu-west-3"
BUCKET = "fruit-eu-test"


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint, monkeypatch, tmp_path):
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset) as response:
        assert response.status == 200
    return Aws(REGION, session=boto3.Session(), endpoint_url=endpoint)


def _moto_step(cluster_id: str):
    """moto's own record of a cluster's step, to move it the way EMR would."""
    backends = emr_backends[DEFAULT_ACCOUNT_ID]
    return next(
        b.clusters[cluster_id] for b in backends.values() if cluster_id in b.clusters
    ).steps[0]


def _cluster_state(aws: Aws, cluster_id: str) -> str:
    return aws.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]


# Bucket -----------------------------------------------------------------------------------------


def test_new_bucket_is_eu_private_encrypted_and_versioned(aws):
    assert ensure_bucket(aws.s3, BucketSpec(BUCKET, REGION)) is True

    assert aws.s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    block = aws.s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = aws.s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert aws.s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert ensure_bucket(aws.s3, BucketSpec(BUCKET, REGION)) is False, "reused, not recreated"


def test_kms_key_gives_sse_kms_default_encryption(aws):
    ensure_bucket(aws.s3, BucketSpec(BUCKET, REGION, kms_key_id="alias/fruitspark"))
    rule = aws.s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/fruitspark",
    }


def test_existing_unversioned_bucket_is_refused_and_left_unchanged(aws):
    aws.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    with pytest.raises(CloudError, match="put-bucket-versioning") as refused:
        ensure_bucket(aws.s3, BucketSpec(BUCKET, REGION))
    assert "put-public-access-block" in str(refused.value)
    assert "Status" not in aws.s3.get_bucket_versioning(Bucket=BUCKET)


def test_existing_bucket_in_another_region_is_refused(aws):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    with pytest.raises(CloudError, match="eu-west-1, not eu-west-3"):
        ensure_bucket(aws.s3, BucketSpec(BUCKET, REGION))


# Sync -------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    """A labelled image folder plus files sync must ignore; returns the images only."""
    images = {
        "Apple Braeburn/a1.jpg": b"apple-one",
        "Apple Braeburn/a2.PNG": b"apple-two-png",
        "Banana/b1.jpeg": b"banana",
        "Banana/b2.webp": b"banana-webp",
        "top.bmp": b"no-label",
    }
    ignored = {
        "Banana/notes.txt": b"not an image",
        "Banana/._b1.jpeg": b"macos fork",
        ".cache/c.jpg": b"hidden",
    }
    for name, data in {**images, **ignored}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return images


def test_sync_uploads_images_only_then_skips_unchanged_and_reuploads_changed(aws, tmp_path):
    images = _tree(tmp_path / "data")
    seen = []
    first = sync(
        tmp_path / "data", f"s3://{BUCKET}/images", aws=aws, progress=lambda *p: seen.append(p)
    )

    expected = sorted(f"images/{name}" for name in images)
    assert list(first.uploaded) == expected
    assert first.skipped == ()
    assert first.bytes_uploaded == sum(len(v) for v in images.values())
    assert seen == [(i, len(images)) for i in range(1, len(images) + 1)]
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="images/")["Contents"]
    assert sorted(o["Key"] for o in listed) == expected
    body = aws.s3.get_object(Bucket=BUCKET, Key="images/Banana/b1.jpeg")["Body"].read()
    assert body == b"banana"

    second = sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws)
    assert second.uploaded == ()
    assert list(second.skipped) == expected

    (tmp_path / "data/Banana/b1.jpeg").write_bytes(b"BANANA")  # same size, new content
    (tmp_path / "data/Banana/b3.jpg").write_bytes(b"new banana")
    third = sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws)
    assert third.uploaded == ("images/Banana/b1.jpeg", "images/Banana/b3.jpg")
    assert aws.s3.get_object(Bucket=BUCKET, Key="images/Banana/b1.jpeg")["Body"].read() == (
        b"BANANA"
    )


def test_sync_uploads_exactly_the_files_that_run_lists(aws, spark, tmp_path):
    """One list of extensions: what ``run`` reads from a folder is what ``cloud sync`` uploads."""
    from fruitspark.formats import IMAGE_EXTENSIONS
    from fruitspark.sources import read_folder

    root = tmp_path / "data"
    names = [f"Fruit/lower.{e}" for e in IMAGE_EXTENSIONS]
    names += [f"Fruit/UPPER.{e.upper()}" for e in IMAGE_EXTENSIONS]
    for name in [*names, "Fruit/notes.txt", "Fruit/scan.tiff.bak", "Fruit/README"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"bytes of " + name.encode())
    listed = read_folder(spark, str(root)).select("path").collect()
    run_reads = sorted(row["path"].split(f"{root}/", 1)[1] for row in listed)
    assert run_reads == sorted(names)

    result = sync(root, f"s3://{BUCKET}/all", aws=aws)
    assert [key.removeprefix("all/") for key in result.uploaded] == run_reads


def test_sync_decides_from_stored_md5_when_the_etag_is_not_one(aws, tmp_path, monkeypatch):
    _tree(tmp_path / "data")
    sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws)
    # SSE-KMS and multipart uploads give ETags that are not MD5s: only the metadata can tell.
    listing = aws.s3.list_objects_v2

    def kms_like_listing(**kwargs):
        page = listing(**kwargs)
        for obj in page.get("Contents", []):
            obj["ETag"] = '"0123456789abcdef0123456789abcdef-1"'
        return page

    monkeypatch.setattr(aws.s3, "list_objects_v2", kms_like_listing)
    (tmp_path / "data/Banana/b1.jpeg").write_bytes(b"BANANA")
    again = sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws, workers=1)
    assert again.uploaded == ("images/Banana/b1.jpeg",)
    assert len(again.skipped) == 4


def test_sync_writes_a_parquet_manifest_whose_paths_are_the_uploaded_objects(aws, tmp_path):
    images = _tree(tmp_path / "data")
    result = sync(
        tmp_path / "data",
        f"s3://{BUCKET}/images/",
        aws=aws,
        manifest_uri=f"s3://{BUCKET}/manifests/images.parquet",
    )
    raw = aws.s3.get_object(Bucket=BUCKET, Key="manifests/images.parquet")["Body"].read()
    table = pq.read_table(io.BytesIO(raw))

    assert table.column_names == ["path", "label", "size", "modified"]
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [f"s3://{BUCKET}/{key}" for key in result.uploaded]
    for row in rows:
        key = row["path"].removeprefix(f"s3://{BUCKET}/")
        assert aws.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == row["size"]
        assert row["modified"].tzinfo is not None
    labels = {r["path"].rsplit("/", 1)[-1]: r["label"] for r in rows}
    assert labels == {
        "a1.jpg": "Apple Braeburn",
        "a2.PNG": "Apple Braeburn",
        "b1.jpeg": "Banana",
        "b2.webp": "Banana",
        "top.bmp": None,
    }
    assert sorted(r["size"] for r in rows) == sorted(len(v) for v in images.values())


def test_a_manifests_image_count_feeds_the_estimate_shown_before_the_cluster_starts(
    aws, artifacts, tmp_path
):
    from fruitspark.cloud.estimate import manifest_images

    images = _tree(tmp_path / "data")
    for name in ("images.parquet", "images.csv"):
        uri = f"s3://{BUCKET}/manifests/{name}"
        sync(tmp_path / "data", f"s3://{BUCKET}/images/", aws=aws, manifest_uri=uri)
        assert manifest_images(aws.s3, uri) == len(images)
    seen = []

    def on_plan(the_plan):
        seen.append((the_plan.headline(), aws.emr.list_clusters()["Clusters"]))

    _run(aws, artifacts, tmp_path, wait=False, images=len(images), on_plan=on_plan)
    ((headline, clusters_then),) = seen
    assert clusters_then == [] and aws.emr.list_clusters()["Clusters"]
    assert "emr-7.12.0: Spark 3.5.6; about " in headline and headline.endswith(" USD")


def test_sync_writes_a_local_csv_manifest_even_when_nothing_changed(aws, tmp_path):
    _tree(tmp_path / "data")
    sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws)
    manifest = tmp_path / "out" / "manifest.csv"
    result = sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws, manifest_uri=str(manifest))

    assert result.uploaded == ()
    table = pa_csv.read_csv(manifest)
    assert table.column_names == ["path", "label", "size", "modified"]
    assert table["path"].to_pylist() == [f"s3://{BUCKET}/{k}" for k in result.skipped]


def test_sync_refuses_an_unknown_manifest_format_before_uploading(aws, tmp_path):
    _tree(tmp_path / "data")
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        sync(tmp_path / "data", f"s3://{BUCKET}/images", aws=aws, manifest_uri="m.json")
    assert aws.s3.list_buckets()["Buckets"] == []


# Run --------------------------------------------------------------------------------------------


@pytest.fixture
def artifacts(tmp_path):
    wheel = tmp_path / "fruitspark-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK wheel bytes")
    model = tmp_path / "efficientnet_lite0.onnx"
    model.write_bytes(b"onnx bytes")
    return {"wheel_path": wheel, "model_path": model}


def _run(aws, artifacts, tmp_path, **kwargs):
    defaults = {
        "config": ClusterConfig(bucket=BUCKET, core_count=3, core_spot=True),
        "input_uri": f"s3://{BUCKET}/images/",
        "output_uri": f"s3://{BUCKET}/out/run-1",
        "run_args": ["--pca-k", "50"],
        "aws": aws,
        "poll_s": 0.01,
        "timeout_s": 5,  # a regression fails the test instead of polling moto forever
        "results_dir": tmp_path / "results",
        "run_id": "r1",
    }
    return run(**{**defaults, **artifacts, **kwargs})


def _finish(aws, state, outputs=True):
    """What EMR and the job would do: end the step, and on success leave the two result files."""

    def on_state(progress):
        step = _moto_step(progress.cluster_id)
        if step.state == "RUNNING":
            if outputs and state == "COMPLETED":
                aws.s3.put_object(Bucket=BUCKET, Key="out/run-1/summary.json", Body=b'{"n": 5}')
                aws.s3.put_object(Bucket=BUCKET, Key="out/run-1/report.html", Body=b"<html/>")
            step.state = state

    return on_state


def test_run_uploads_artifacts_and_starts_the_planned_cluster(aws, artifacts, tmp_path):
    sent = []
    aws.emr.meta.events.register(
        "provide-client-params.emr.RunJobFlow",
        lambda params, **_: sent.append(copy.deepcopy(params)),
    )
    result = _run(aws, artifacts, tmp_path, wait=False)

    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/")["Contents"]}
    assert keys == {
        "runs/r1/fruitspark-0.1.0-py3-none-any.whl",
        "runs/r1/efficientnet_lite0.onnx",
        "runs/r1/bootstrap.sh",
        "runs/r1/fruitspark_main.py",
    }
    uploaded = aws.s3.get_object(Bucket=BUCKET, Key="runs/r1/bootstrap.sh")["Body"].read()
    assert uploaded == bootstrap_script()
    assert aws.s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"

    cluster = aws.emr.describe_cluster(ClusterId=result.cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-7.12.0"
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    assert cluster["LogUri"] == f"s3://{BUCKET}/logs/"
    assert cluster["AutoTerminate"] is True
    assert cluster["ServiceRole"] == "EMR_DefaultRole"
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == "EMR_EC2_DefaultRole"
    groups = aws.emr.list_instance_groups(ClusterId=result.cluster_id)["InstanceGroups"]
    assert sorted(
        (g["InstanceGroupType"], g["InstanceType"], g["RequestedInstanceCount"], g["Market"])
        for g in groups
    ) == [("CORE", "m5.xlarge", 3, "SPOT"), ("MASTER", "m5.xlarge", 1, "ON_DEMAND")]
    (action,) = aws.emr.list_bootstrap_actions(ClusterId=result.cluster_id)["BootstrapActions"]
    assert action["ScriptPath"] == f"s3://{BUCKET}/runs/r1/bootstrap.sh"
    assert action["Args"] == [
        f"s3://{BUCKET}/runs/r1/fruitspark-0.1.0-py3-none-any.whl",
        "python3.11",
    ]
    (step,) = aws.emr.list_steps(ClusterId=result.cluster_id)["Steps"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index(f"s3://{BUCKET}/runs/r1/fruitspark_main.py") + 1 :] == [
        "run",
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/run-1",
        "--master",
        "yarn",
        "--model",
        "efficientnet_lite0.onnx",
        "--pca-k",
        "50",
    ]
    # moto accepts but does not store the auto-termination policy: check what was sent.
    assert sent[0]["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert sent[0]["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert (result.state, result.step_id) == ("RUNNING", step["Id"])
    assert _cluster_state(aws, result.cluster_id) not in {"TERMINATING", "TERMINATED"}


def test_run_follows_the_step_and_downloads_summary_and_report(aws, artifacts, tmp_path):
    seen = []

    def on_state(progress):
        seen.append((progress.cluster_state, progress.step_state))
        _finish(aws, "COMPLETED")(progress)

    result = _run(aws, artifacts, tmp_path, on_state=on_state)

    assert result.state == "COMPLETED"
    assert [p.name for p in result.results] == ["summary.json", "report.html"]
    assert (tmp_path / "results/summary.json").read_bytes() == b'{"n": 5}'
    assert (tmp_path / "results/report.html").read_bytes() == b"<html/>"
    assert seen[0][1] == "RUNNING"
    assert seen[-1][1] == "COMPLETED"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("step_failed", "step s-.* FAILED"),
        ("results_missing", "summary.json cannot be read"),
        ("api_error", "ThrottlingException"),
        ("timeout", "still RUNNING after 0 s"),
    ],
)
def test_any_failure_after_start_terminates_the_cluster(
    aws, artifacts, tmp_path, monkeypatch, fault, message
):
    kwargs = {}
    if fault == "step_failed":
        kwargs["on_state"] = _finish(aws, "FAILED")
    elif fault == "results_missing":
        kwargs["on_state"] = _finish(aws, "COMPLETED", outputs=False)
    elif fault == "api_error":
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}

        def throttled(**_):
            raise ClientError(error, "DescribeStep")

        monkeypatch.setattr(aws.emr, "describe_step", throttled)
    else:
        kwargs["timeout_s"] = 0

    with pytest.raises(RunFailed, match=message) as failed:
        _run(aws, artifacts, tmp_path, **kwargs)

    assert "was terminated" in str(failed.value)
    assert _cluster_state(aws, failed.value.cluster_id) in {"TERMINATING", "TERMINATED"}


def test_a_cluster_that_cannot_be_terminated_is_reported_loudly(
    aws, artifacts, tmp_path, monkeypatch
):
    def refused(**_):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "TerminateJobFlows")

    monkeypatch.setattr(aws.emr, "terminate_job_flows", refused)
    with pytest.raises(RunFailed, match="COULD NOT TERMINATE") as failed:
        _run(aws, artifacts, tmp_path, on_state=_finish(aws, "FAILED"))
    assert f"fruitspark cloud down {failed.value.cluster_id}" in str(failed.value)


def test_ctrl_c_while_waiting_terminates_the_cluster(aws, artifacts, tmp_path):
    started = []

    def interrupt(progress):
        started.append(progress.cluster_id)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(aws, artifacts, tmp_path, on_state=interrupt)
    assert _cluster_state(aws, started[0]) in {"TERMINATING", "TERMINATED"}


def test_nothing_is_created_when_a_local_file_is_missing(aws, artifacts, tmp_path):
    artifacts["model_path"].unlink()
    with pytest.raises(FileNotFoundError):
        _run(aws, artifacts, tmp_path)
    assert aws.s3.list_buckets()["Buckets"] == []
    assert aws.emr.list_clusters()["Clusters"] == []


def test_input_outside_the_eu_is_refused_before_a_cluster_starts(aws, artifacts, tmp_path):
    us = boto3.client("s3", region_name="us-east-1")  # AWS_ENDPOINT_URL: the moto server
    us.create_bucket(Bucket="us-images")
    with pytest.raises(CloudError, match="outside the EU"):
        _run(aws, artifacts, tmp_path, input_uri="s3://us-images/fruits/")
    assert aws.emr.list_clusters()["Clusters"] == []


# Status, logs, down -----------------------------------------------------------------------------


def test_status_then_down_terminates_the_cluster(aws, artifacts, tmp_path):
    started = _run(aws, artifacts, tmp_path, wait=False)

    before = status(started.cluster_id, aws=aws)
    assert before.state in {"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"}
    assert before.release_label == "emr-7.12.0"
    assert [(s.step_id, s.state) for s in before.steps] == [(started.step_id, "RUNNING")]
    assert started.cluster_id in before.render()

    assert down(started.cluster_id, aws=aws) in {"TERMINATING", "TERMINATED"}
    assert status(started.cluster_id, aws=aws).state in {"TERMINATING", "TERMINATED"}


def _put_log(aws, key: str, text: str) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(text.encode()))


def test_logs_fetch_the_step_logs_and_the_spark_driver_log(aws, artifacts, tmp_path):
    started = _run(aws, artifacts, tmp_path, wait=False)
    root = f"logs/{started.cluster_id}"
    app = "application_1764000000000_0001"
    _put_log(aws, f"{root}/steps/{started.step_id}/stderr.gz", f"Submitted application {app}\n")
    _put_log(aws, f"{root}/steps/{started.step_id}/stdout.gz", "")
    driver = f"{root}/containers/{app}/container_1764000000000_0001_01_000001/stderr.gz"
    _put_log(aws, driver, "line\n" * 50 + "Traceback (most recent call last):\nValueError: bad\n")
    executor = f"{root}/containers/{app}/container_1764000000000_0001_01_000002/stderr.gz"
    _put_log(aws, executor, "executor noise\n")

    fetched = logs(started.cluster_id, aws=aws, dest_dir=tmp_path / "logs")

    assert fetched.step_id == started.step_id
    assert set(fetched.texts) == {"stderr", "stdout", "driver-stderr"}
    assert fetched.sources["driver-stderr"] == f"s3://{BUCKET}/{driver}"
    assert fetched.tail(lines=2) == "Traceback (most recent call last):\nValueError: bad"
    assert fetched.tail("stderr", lines=5) == fetched.tail(lines=5)
    saved = {p.name for p in fetched.saved}
    assert saved == {"stderr.log", "stdout.log", "driver-stderr.log"}
    assert all(p.is_file() for p in fetched.saved)


def test_logs_before_emr_copied_any_say_so(aws, artifacts, tmp_path):
    started = _run(aws, artifacts, tmp_path, wait=False)
    with pytest.raises(CloudError, match="no logs yet"):
        logs(started.cluster_id, started.step_id, aws=aws)
