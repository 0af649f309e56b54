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

# The wheel's own requirements (numpy, pandas<3, pyarrow, pillow, onnxruntime, ...) minus extras
# and pyspark, by fruitspark/cloud/node_requirements.py from the wheel itself: the same code the
# tests use to rebuild this environment. It needs only the standard library, so it runs from the
# unpacked wheel before anything is installed.
"${python}" -m zipfile -e "${wheel}" "${workdir}/unpacked"
"${python}" "${workdir}/unpacked/fruitspark/cloud/node_requirements.py" "${wheel}" \
  >"${workdir}/requirements.txt"

# Binary wheels only: a source build on a cluster node would take minutes and may fail late.
sudo "${python}" -m pip install --no-cache-dir --only-binary=:all: \
  --requirement "${workdir}/requirements.txt"
sudo "${python}" -m pip install --no-cache-dir --no-deps "${wheel}"

"${python}" -c 'import numpy, pandas, pyarrow, PIL, onnxruntime'
"${python}" -m pip show --quiet fruitspark
