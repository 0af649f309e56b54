"""The dry run: EMR request, step arguments, cost and the EU rule, without any AWS call."""

from __future__ import annotations

import datetime as dt
import math
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from fruitspark.cloud import (
    Aws,
    ClusterConfig,
    RegionError,
    S3Uri,
    plan,
)
from fruitspark.cloud.plan import DRIVER_SCRIPT
from fruitspark.cloud.prices import price_table

WHEEL = Path("dist/fruitspark-0.1.0-py3-none-any.whl")
MODEL = Path("models/efficientnet_lite0.onnx")
BUCKET = "fruit-eu-plan"


def _plan(**overrides):
    config = ClusterConfig(bucket=BUCKET, **overrides)
    return plan(
        config,
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/first",
        ["--pca-k", "50"],
        wheel_path=WHEEL,
        model_path=MODEL,
        run_id="r1",
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2", "eu-central-2", "ap-south-1"])
def test_regions_outside_the_eu_are_refused_before_any_client_exists(region):
    with pytest.raises(RegionError, match="outside the EU"):
        ClusterConfig(bucket=BUCKET, region=region)
    with pytest.raises(RegionError):
        Aws(region)


@pytest.mark.parametrize("region", ["eu-west-3", "eu-west-1", "eu-central-1"])
def test_eu_regions_are_accepted(region):
    assert ClusterConfig(bucket=BUCKET, region=region).region == region


@pytest.mark.parametrize(
    "overrides",
    [{"core_count": 0}, {"idle_timeout_s": 10}, {"release_label": "7.12.0"}, {"bucket": ""}],
)
def test_bad_cluster_options_are_rejected(overrides):
    with pytest.raises(ValueError):
        ClusterConfig(**{"bucket": BUCKET, **overrides})


def test_job_flow_request_has_release_groups_bootstrap_logs_and_auto_termination():
    request = _plan(core_type="c5.2xlarge", core_count=3, core_spot=True).job_flow

    assert request["ReleaseLabel"] == "emr-7.12.0"
    assert request["Applications"] == [{"Name": "Spark"}]
    assert request["LogUri"] == f"s3://{BUCKET}/logs/"
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert request["ServiceRole"] == "EMR_DefaultRole"
    assert request["JobFlowRole"] == "EMR_EC2_DefaultRole"
    groups = {
        g["InstanceRole"]: (g["InstanceType"], g["InstanceCount"], g["Market"])
        for g in request["Instances"]["InstanceGroups"]
    }
    assert groups == {"MASTER": ("m5.xlarge", 1, "ON_DEMAND"), "CORE": ("c5.2xlarge", 3, "SPOT")}
    (action,) = request["BootstrapActions"]
    assert action["ScriptBootstrapAction"] == {
        "Path": f"s3://{BUCKET}/runs/r1/bootstrap.sh",
        "Args": [f"s3://{BUCKET}/runs/r1/{WHEEL.name}", "python3.11"],
    }
    (step,) = request["Steps"]
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"


def test_step_runs_the_uploaded_driver_with_the_same_cli_arguments():
    assert _plan().step_args == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--conf",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON=python3.11",
        "--conf",
        "spark.executorEnv.PYSPARK_PYTHON=python3.11",
        "--conf",
        "spark.pyspark.python=python3.11",
        "--files",
        f"s3://{BUCKET}/runs/r1/efficientnet_lite0.onnx",
        f"s3://{BUCKET}/runs/r1/fruitspark_main.py",
        "run",
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/first",
        "--master",
        "yarn",
        "--model",
        "efficientnet_lite0.onnx",
        "--pca-k",
        "50",
    ]


def test_the_real_cli_accepts_the_step_arguments_on_yarn_with_the_shipped_model():
    from fruitspark.cli import build_parser

    args = _plan().step_args
    parsed = build_parser().parse_args(args[args.index("run") :])
    assert (parsed.command, parsed.master, parsed.model) == (
        "run",
        "yarn",
        "efficientnet_lite0.onnx",
    )
    assert (parsed.input, parsed.output, parsed.pca_k) == (
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/first",
        50,
    )


def test_without_a_model_file_the_default_model_is_used_and_nothing_is_shipped():
    the_plan = plan(
        ClusterConfig(bucket=BUCKET),
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/first",
        wheel_path=WHEEL,
    )
    assert "--files" not in the_plan.step_args
    assert "--model" not in the_plan.step_args
    assert the_plan.step_args[-4:] == [
        f"s3://{BUCKET}/images/",
        f"s3://{BUCKET}/out/first",
        "--master",
        "yarn",
    ]
    assert [a.uri.key.rsplit("/", 1)[-1] for a in the_plan.artifacts] == [
        WHEEL.name,
        "bootstrap.sh",
        "fruitspark_main.py",
    ]


def test_kept_alive_cluster_survives_a_failed_step_and_relies_on_the_idle_timeout():
    request = _plan(keep_alive=True, idle_timeout_s=900).job_flow
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert request["Steps"][0]["ActionOnFailure"] == "CONTINUE"
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 900}


def test_optional_subnet_and_security_configuration_reach_the_request():
    request = _plan(subnet_id="subnet-123", security_configuration="fruit-sec").job_flow
    assert request["Instances"]["Ec2SubnetId"] == "subnet-123"
    assert request["SecurityConfiguration"] == "fruit-sec"
    assert "SecurityConfiguration" not in _plan().job_flow


def test_uploads_are_the_wheel_model_bootstrap_and_driver_under_the_run_prefix():
    keys = [str(a.uri) for a in _plan().artifacts]
    assert keys == [
        f"s3://{BUCKET}/runs/r1/{WHEEL.name}",
        f"s3://{BUCKET}/runs/r1/efficientnet_lite0.onnx",
        f"s3://{BUCKET}/runs/r1/bootstrap.sh",
        f"s3://{BUCKET}/runs/r1/fruitspark_main.py",
    ]


def test_cost_adds_ec2_and_emr_per_node_and_discounts_spot_ec2_only():
    on_demand = _plan(core_count=2).cost
    assert on_demand.hourly == pytest.approx(3 * (0.224 + 0.048))
    spot = _plan(core_count=2, core_spot=True).cost
    fraction = price_table()["spot_fraction"]
    assert spot.hourly == pytest.approx((0.224 + 0.048) + 2 * (0.224 * fraction + 0.048))
    ireland = _plan(region="eu-west-1", master_type="r5.xlarge", core_type="m5.2xlarge").cost
    assert ireland.hourly == pytest.approx((0.282 + 0.063) + 2 * (0.428 + 0.096))


def test_unknown_instance_type_has_no_invented_price():
    cost = _plan(core_type="m7i.4xlarge").cost
    assert cost.hourly is None
    assert "m7i.4xlarge" in cost.render()[0]


def test_price_table_is_dated_sourced_and_covers_both_regions():
    table = price_table()
    dt.date.fromisoformat(table["as_of"])
    assert "aws.amazon.com" in table["source"]
    assert 0 < table["spot_fraction"] < 1
    for region in ("eu-west-3", "eu-west-1"):
        for kind in ("ec2", "emr"):
            assert set(table["regions"][region][kind]) >= {
                "m5.xlarge",
                "m5.2xlarge",
                "c5.2xlarge",
                "r5.xlarge",
            }


def test_render_lists_every_resource_and_the_price_date():
    the_plan = _plan(core_spot=True)
    text = str(the_plan)
    for expected in (
        f"s3://{BUCKET}",
        "all four flags",
        "AES256",
        "versioning: enabled",
        *(str(a.uri) for a in the_plan.artifacts),
        "emr-7.12.0",
        "2 x m5.xlarge spot",
        f"s3://{BUCKET}/logs/",
        "idle timeout 60 min",
        "--deploy-mode cluster",
        f"s3://{BUCKET}/out/first/summary.json",
        "per hour",
        price_table()["as_of"],
    ):
        assert expected in text, expected


def test_driver_script_exits_with_the_cli_status(monkeypatch):
    calls = []
    fake_cli = types.ModuleType("fruitspark.cli")
    fake_cli.main = lambda: calls.append(sys.argv[1:]) or 3
    monkeypatch.setitem(sys.modules, "fruitspark.cli", fake_cli)
    monkeypatch.setattr(sys, "argv", ["fruitspark_main.py", "run", "s3://a/in", "s3://a/out"])
    with pytest.raises(SystemExit) as exited:
        exec(compile(DRIVER_SCRIPT, "fruitspark_main.py", "exec"), {"__name__": "__main__"})
    assert exited.value.code == 3
    assert calls == [["run", "s3://a/in", "s3://a/out"]]


@pytest.mark.parametrize(
    ("input_uri", "output_uri"),
    [("/data/images", "s3://b/out"), ("s3://b/in", "out/"), ("s3://b/x/", "s3://b/x")],
)
def test_local_or_identical_locations_are_rejected(input_uri, output_uri):
    with pytest.raises(ValueError):
        plan(
            ClusterConfig(bucket=BUCKET),
            input_uri,
            output_uri,
            wheel_path=WHEEL,
            model_path=MODEL,
        )


def test_s3_uri_accepts_hadoop_schemes_used_in_emr_log_uris():
    assert S3Uri.parse("s3n://logs-bucket/logs/").join("j-1", "steps") == S3Uri(
        "logs-bucket", "logs/j-1/steps"
    )
    assert S3Uri.parse("s3://b").prefix == ""


# Spark version and run estimate -----------------------------------------------------------------


@pytest.mark.parametrize(("label", "spark"), [("emr-7.12.0", "3.5.6"), ("emr-7.13.0", "3.5.6")])
def test_plan_names_the_spark_of_the_release_and_says_the_suite_covers_it(label, spark):
    the_plan = _plan(release_label=label)
    assert (the_plan.spark.spark, the_plan.spark.covered) == (spark, True)
    (line,) = the_plan.spark.render()
    assert f"{label} ships Spark {spark}" in line and "covered" in line
    assert not line.startswith("WARNING") and line in str(the_plan)


@pytest.mark.parametrize(
    ("label", "why"), [("emr-6.15.0", "ships Spark 3.4.1"), ("emr-9.0.0", "unknown")]
)
def test_a_release_outside_the_covered_spark_range_or_unknown_is_warned_about(label, why):
    the_plan = _plan(release_label=label)
    assert the_plan.spark.covered is not True
    (line,) = the_plan.spark.render()
    assert line.startswith("WARNING") and why in line and "3.5 and 4.x" in line
    assert "NOT covered" in the_plan.headline()


def test_release_table_is_dated_and_sourced_and_knows_the_default_release():
    from fruitspark.cloud.config import DEFAULT_RELEASE_LABEL
    from fruitspark.cloud.estimate import _table

    table = _table("emr_releases.json")
    dt.date.fromisoformat(table["as_of"])
    assert "docs.aws.amazon.com" in table["source"]
    assert DEFAULT_RELEASE_LABEL in table["spark"]


def test_estimate_uses_the_benchmarked_rate_per_core_and_the_hourly_price():
    from fruitspark.cloud.estimate import _table

    rates = _table("throughput.json")
    assert "BENCHMARKS.md" in rates["benchmark"] and rates["featurize_images_per_s_per_core"] > 0
    small = _plan(core_count=2)
    assert small.run_estimate is None and "no duration estimate" in str(small)
    config = ClusterConfig(bucket=BUCKET, core_type="m5.2xlarge", core_count=4)
    run = plan(
        config, f"s3://{BUCKET}/m.parquet", f"s3://{BUCKET}/o", wheel_path=WHEEL, images=500_000
    )
    estimate = run.run_estimate
    assert estimate.cores == 4 * price_table()["vcpus"]["m5.2xlarge"]
    seconds = 500_000 / (rates["featurize_images_per_s_per_core"] * estimate.cores)
    assert estimate.minutes == pytest.approx(rates["startup_minutes"] + seconds / 60)
    assert estimate.cost == pytest.approx(run.cost.hourly * estimate.minutes / 60)
    headline = f"about {math.ceil(estimate.minutes)} min, about {estimate.cost:.2f} USD"
    assert headline in run.headline() and headline in str(run)
    assert rates["benchmark"] in str(run)
    bigger = plan(
        replace(config, core_count=8), run.input_uri, run.output_uri, wheel_path=WHEEL,
        images=500_000,
    ).run_estimate  # fmt: skip
    assert bigger.minutes < estimate.minutes and bigger.cost < 2 * estimate.cost
