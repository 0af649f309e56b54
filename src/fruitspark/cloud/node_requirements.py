"""The requirements an EMR node installs: the wheel's own Requires-Dist, minus extras and pyspark.

One implementation for ``bootstrap.sh`` and for the tests that rebuild a node's environment. It
reads the wheel's metadata, so the list never drifts from ``pyproject.toml``; optional extras are
left out, and so is pyspark: the cluster's Spark provides it, and a second Spark from PyPI on
every node would shadow it.

Standard library only, and runnable as a plain file (``python node_requirements.py WHEEL``):
the bootstrap runs it from the unpacked wheel before any dependency is installed.
"""

from __future__ import annotations

import re
import sys
import zipfile

PROVIDED_BY_THE_CLUSTER = ("pyspark",)


def project_name(requirement: str) -> str:
    """``pandas<3,>=2.2; python_version < "3.11"`` -> ``pandas`` (PEP 503 normalised)."""
    name = re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def node_requirements(wheel: str, exclude: tuple[str, ...] = PROVIDED_BY_THE_CLUSTER) -> list[str]:
    """The wheel's Requires-Dist lines without extras and without ``exclude``, in order."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode("utf-8")
    found = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = line.split(":", 1)[1].strip()
        if "extra ==" not in requirement and project_name(requirement) not in exclude:
            found.append(requirement)
    return found


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: node_requirements.py WHEEL")
    print("\n".join(node_requirements(sys.argv[1])))
