#!/usr/bin/env bash
# EMR bootstrap action: install fruitspark and its runtime dependencies on this node.
#
# EMR runs it on every node before Spark starts; a non-zero exit fails the cluster at once
# (BOOTSTRAP_FAILURE) instead of failing later inside a Spark task.
#
# Usage: bootstrap.sh WHEEL_S3_URI [PYTHON]
#   PYTHON defaults to python3.11: EMR 7's python3 is 3.9, older than fruitspark supports.
set -euo pipefail

wheel_uri="${1:?usage: bootstrap.sh WHEEL_S3_URI [PYTHON]}"
python="${2:-python3.11}"

if ! command -v "${python}" >/dev/null 2>&1; then
  sudo dnf install -y "${python}"
fi
if ! "${python}" -m pip --version >/dev/null 2>&1; then
  sudo dnf install -y "${python}-pip"
fi

workdir="$(mktemp -d)"
trap 'rm -rf "${workdir}"' EXIT
wheel="${workdir}/$(basename "${wheel_uri}")"
aws s3 cp --only-show-errors "${wheel_uri}" "${wheel}"

# The wheel's own requirements (numpy, pandas<3, pyarrow, pillow, onnxruntime, ...), read from its
# metadata so this list never drifts from pyproject.toml; minus optional extras, and minus pyspark:
# the cluster's Spark provides it, and a second Spark from PyPI on every node would shadow it.
"${python}" - "${wheel}" >"${workdir}/requirements.txt" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(metadata).decode("utf-8").splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = line.split(":", 1)[1].strip()
            name = requirement.split(";")[0].strip().lower()
            if "extra ==" not in requirement and not name.startswith("pyspark"):
                print(requirement)
PY

# Binary wheels only: a source build on a cluster node would take minutes and may fail late.
sudo "${python}" -m pip install --no-cache-dir --only-binary=:all: \
  --requirement "${workdir}/requirements.txt"
sudo "${python}" -m pip install --no-cache-dir --no-deps "${wheel}"

"${python}" -c 'import numpy, pandas, pyarrow, PIL, onnxruntime'
"${python}" -m pip show --quiet fruitspark
