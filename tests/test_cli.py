"""The command line: readable help, and one clear line with a non-zero exit for bad arguments."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from fruitspark.cli import main
from fruitspark.options import add_options, build
from fruitspark.pipeline import RunConfig


def _cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fruitspark.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_commands():
    result = _cli("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "evaluate", "predict", "report", "cloud"):
        assert command in result.stdout


def test_run_help_explains_the_options():
    result = _cli("run", "--help")
    assert result.returncode == 0
    for option in ("--pca-k", "--pca-variance", "--csv", "--overwrite", "--resume", "--model"):
        assert option in result.stdout
    assert "efficientnet_lite2" in result.stdout and "{fp32,int8}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "/no/such/folder", "/tmp/out"], "input not found: /no/such/folder"),
        (["run", ".", "/tmp/out", "--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["run", ".", "/tmp/out", "--model", "/no/model.onnx"], "model file not found"),
    ],
)
def test_bad_arguments_fail_in_one_line(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"fruitspark: error: {lines[0].removeprefix('fruitspark: error: ')}"]
    assert message in lines[0] and "Traceback" not in result.stderr


def test_existing_output_fails_in_one_line_without_java_trace(spark, subset, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "summary.json").write_text("{}")
    assert main(["run", str(subset), str(output)]) == 2
    error = capsys.readouterr().err
    assert "already holds results: use --overwrite" in error
    assert "at org.apache" not in error and "Traceback" not in error


def test_bad_option_value_is_an_argparse_error():
    result = _cli("run", "a", "b", "--pca-variance", "1.5")
    assert result.returncode == 2 and "must be in (0, 1]" in result.stderr
    result = _cli("run", "a", "b", "--precision", "int4")
    assert result.returncode == 2 and "invalid choice: 'int4'" in result.stderr


def test_cloud_plan_passes_what_follows_the_double_dash_to_the_job(tmp_path, capsys):
    wheel = tmp_path / "fruitspark-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    argv = ["cloud", "plan", "s3://b/in", "s3://b/out", "--bucket", "b", "--wheel", str(wheel)]
    assert main([*argv, "--", "--pca-k", "50"]) == 0
    printed = capsys.readouterr().out
    assert "eu-west-3" in printed and "run s3://b/in s3://b/out" in printed
    assert "--pca-k 50" in printed and "USD" in printed


def test_double_dash_is_refused_outside_cloud(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "out", "x.jpg", "--", "--oops"])
    assert exit_info.value.code == 2 and "unexpected arguments after --" in capsys.readouterr().err


@dataclasses.dataclass(frozen=True)
class Nested:
    new_knob: int = dataclasses.field(default=3, metadata={"help": "a knob"})
    undocumented: int = 1


@dataclasses.dataclass(frozen=True)
class Config:
    target: str = dataclasses.field(metadata={"help": "where"})
    loud: bool = dataclasses.field(default=True, metadata={"help": "say it"})
    nested: Nested = dataclasses.field(default_factory=Nested)


def test_options_derive_from_the_config_fields_and_show_their_default():
    """A field added with metadata help is an option, with no other edit."""
    parser = argparse.ArgumentParser()
    add_options(parser, Config)
    assert build(Config, parser.parse_args(["x", "--new-knob", "5", "--no-loud"])) == Config(
        "x", False, Nested(new_knob=5)
    )
    assert "a knob (default: 3)" in parser.format_help() and "--undocumented" not in (
        parser.format_help()
    )

    run_parser = argparse.ArgumentParser()
    add_options(run_parser, RunConfig)
    documented = {
        item.name
        for config in (RunConfig, RunConfig.__dataclass_fields__["featurize"].default_factory)
        for item in dataclasses.fields(config)
        if "help" in item.metadata
    }
    options = [action for action in run_parser._actions if action.option_strings]
    assert {action.dest.split(".")[-1] for action in options} - {"help"} == documented - {
        "input",
        "output",
    }
    for action in options:
        assert action.dest == "help" or "(default: " in action.help, action.option_strings


def _options_of(parser: argparse.ArgumentParser, name: str = "fruitspark"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                yield from _options_of(subparser, f"{name} {command}")
        elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            yield name, action


def test_every_option_of_every_command_shows_its_default():
    from fruitspark.cli import build_parser

    options = list(_options_of(build_parser()))
    assert len({name for name, _ in options}) >= 7  # run, demo, evaluate, predict, cloud's
    for name, action in options:
        assert "(default: " in (action.help or ""), (name, action.option_strings)
    cloud_plan = build_parser().parse_args(
        ["cloud", "plan", "s3://b/in", "s3://b/out", "--bucket", "b", "--wheel", "w.whl",
         "--spot", "--idle-timeout", "600", "--kms-key", "k"]
    )  # fmt: skip
    from fruitspark.cloud.cli import _config

    config = _config(cloud_plan)
    assert (config.core_spot, config.idle_timeout_s, config.kms_key_id) == (True, 600, "k")
    assert config.region == "eu-west-3" and config.bucket == "b"


def test_the_cli_starts_without_importing_the_aws_sdk():
    """Every ``fruitspark run`` imports the CLI; boto3 (half a second) waits for a cloud command."""
    code = (
        "import sys, fruitspark.cli; "
        "print(sorted(m for m in ('boto3', 'botocore.config') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
