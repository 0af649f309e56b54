"""Which Spark a release ships, and how long and how much a run will take, from dated tables.

``emr_releases.json`` maps release labels to the Spark they ship; ``throughput.json`` holds the
per-core featurize rate that a named benchmark measured (BENCHMARKS.md); ``prices.json`` the
hourly prices and vCPUs. Tables in the package keep ``plan`` a dry run that works offline; each
is printed with its date and source so that nobody takes an estimate for a quote.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .bucket import S3Uri
from .config import ClusterConfig
from .prices import CostEstimate, price_table

# The Spark versions the test suite runs on in CI: PySpark 3.5.x and 4.x.
COVERED_SPARK = ((3, 5), (5, 0))
COVERED_TEXT = "3.5 and 4.x"


@cache
def _table(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class SparkRelease:
    """The Spark of one EMR release label, and whether the suite covers it (None: unknown)."""

    release_label: str
    spark: str | None
    as_of: str

    @property
    def covered(self) -> bool | None:
        if self.spark is None:
            return None
        version = tuple(int(part) for part in self.spark.split(".")[:2])
        return COVERED_SPARK[0] <= version < COVERED_SPARK[1]

    def render(self) -> list[str]:
        if self.spark is None:
            return [
                f"WARNING: {self.release_label} is not in fruitspark's release table (as of "
                f"{self.as_of}): its Spark version is unknown; the suite covers Spark "
                f"{COVERED_TEXT}"
            ]
        line = f"{self.release_label} ships Spark {self.spark} (release table as of {self.as_of})"
        if self.covered:
            return [f"{line}: covered by the test suite (Spark {COVERED_TEXT})"]
        return [f"WARNING: {line}, outside what the test suite covers (Spark {COVERED_TEXT})"]


def spark_release(release_label: str) -> SparkRelease:
    table = _table("emr_releases.json")
    return SparkRelease(release_label, table["spark"].get(release_label), table["as_of"])


@dataclass(frozen=True)
class RunEstimate:
    """Duration and cost of featurising ``images`` on the cluster's core vCPUs."""

    images: int
    cores: int
    rate_per_core: float
    startup_minutes: float
    hourly: float | None
    currency: str
    benchmark: str
    notes: tuple[str, ...]

    @property
    def minutes(self) -> float:
        return self.startup_minutes + self.images / (self.rate_per_core * self.cores) / 60

    @property
    def cost(self) -> float | None:
        return None if self.hourly is None else self.hourly * self.minutes / 60

    def headline(self) -> str:
        cost = "cost unknown" if self.cost is None else f"about {self.cost:.2f} {self.currency}"
        return f"about {math.ceil(self.minutes)} min, {cost}"

    def render(self) -> list[str]:
        return [
            f"{self.images} images on {self.cores} core vCPUs at {self.rate_per_core} images/s "
            f"per core, plus {self.startup_minutes:g} min start-up: {self.headline()}",
            f"rate: {self.benchmark}",
            *self.notes,
        ]


def run_estimate(config: ClusterConfig, images: int, cost: CostEstimate) -> RunEstimate | None:
    """The estimate for ``images``, or None if the core nodes' vCPUs are not in the table."""
    vcpus = price_table().get("vcpus", {}).get(config.core_type)
    if vcpus is None:
        return None
    rates = _table("throughput.json")
    return RunEstimate(
        images=images,
        cores=vcpus * config.core_count,
        rate_per_core=rates["featurize_images_per_s_per_core"],
        startup_minutes=rates["startup_minutes"],
        hourly=cost.hourly,
        currency=cost.currency,
        benchmark=rates["benchmark"],
        notes=(rates["per_core_note"], f"start-up: {rates['startup_note']}"),
    )


def manifest_images(s3: Any, uri: str) -> int:
    """Rows of a Parquet or CSV manifest on S3 (one read-only GET), for the estimate."""
    location = S3Uri.parse(uri)
    body = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    if uri.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_metadata(io.BytesIO(body)).num_rows
    lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
    return max(0, len(lines) - 1)  # the header
