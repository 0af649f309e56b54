"""Both Storage implementations keep the same contract on a real folder; which one a root gets."""

from __future__ import annotations

import pytest

from fruitspark.storage import ArrowStorage, HadoopStorage, Storage, is_local


@pytest.fixture(params=[HadoopStorage, ArrowStorage], ids=["hadoop", "arrow"])
def storage(request, spark, tmp_path):
    return request.param(spark, f"file:{tmp_path}/out")


def test_files_and_folders_behave_the_same_through_hadoop_and_arrow(storage):
    assert not storage.exists() and storage.list() == []
    storage.write_json("_staging/summary.json", {"images": 3})
    storage.write_bytes("_staging/stages/0/part-00000", b"\x00\x01")
    assert storage.read_json("_staging/summary.json") == {"images": 3}
    assert storage.list("_staging") == ["stages", "summary.json"]
    storage.mkdirs("features")
    storage.rename("_staging", "features")  # an existing target is replaced, not nested into
    assert storage.list() == ["features"]
    assert storage.read_bytes("features/stages/0/part-00000") == b"\x00\x01"
    assert storage.uri("features").startswith("file:/") and storage.uri().endswith("/out")
    assert storage.create_new("_lock", b"me") and not storage.create_new("_lock", b"you")
    assert storage.read_bytes("_lock") == b"me"
    storage.delete("features")
    assert storage.list() == ["_lock"]


def test_a_local_root_skips_py4j_a_remote_one_goes_through_hadoop(spark, tmp_path):
    assert type(Storage(spark, str(tmp_path))) is ArrowStorage
    assert type(Storage(spark, f"file://{tmp_path}")) is ArrowStorage
    assert is_local("/data/out") and is_local("file:/data/out")
    assert not is_local("s3://bucket/out") and not is_local("hdfs://namenode:8020/out")
