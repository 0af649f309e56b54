"""Hourly cost of a cluster from the dated price table shipped in ``prices.json``.

A table in the repository, rather than the AWS Pricing API, keeps ``plan`` a dry run that works
offline and without pricing permissions; its date and source are printed with every estimate so
nobody mistakes it for a quote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .config import ClusterConfig


@dataclass(frozen=True)
class CostLine:
    """One instance group's share of the hourly cost."""

    role: str
    instance_type: str
    count: int
    spot: bool
    ec2_hourly: float
    emr_hourly: float

    @property
    def hourly(self) -> float:
        return self.count * (self.ec2_hourly + self.emr_hourly)


@dataclass(frozen=True)
class CostEstimate:
    """The hourly estimate, or the instance types the table has no price for."""

    lines: tuple[CostLine, ...]
    missing: tuple[str, ...]
    currency: str
    as_of: str
    source: str
    spot_note: str

    @property
    def hourly(self) -> float | None:
        return None if self.missing else sum(line.hourly for line in self.lines)

    def render(self) -> list[str]:
        if self.hourly is None:
            return [
                f"no price for {', '.join(self.missing)} in the table (as of {self.as_of}); "
                "known types are listed in fruitspark/cloud/prices.json"
            ]
        rows = [
            f"{line.count} x {line.instance_type} {line.role}"
            f"{' (spot estimate)' if line.spot else ''}: {line.hourly:.3f} {self.currency}/h "
            f"(EC2 {line.ec2_hourly:.3f} + EMR {line.emr_hourly:.3f} each)"
            for line in self.lines
        ]
        notes = [f"prices as of {self.as_of}: {self.source}"]
        if any(line.spot for line in self.lines):
            notes.append(self.spot_note)
        return [*rows, f"total about {self.hourly:.2f} {self.currency} per hour", *notes]


@cache
def price_table() -> dict[str, Any]:
    """The parsed ``prices.json`` shipped inside the package."""
    text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    return json.loads(text)


def estimate(config: ClusterConfig) -> CostEstimate:
    """The hourly cost of ``config``'s cluster: EC2 (On-Demand or Spot estimate) plus EMR."""
    table = price_table()
    region = table["regions"].get(config.region, {"ec2": {}, "emr": {}})
    groups = [
        ("primary", config.master_type, 1, False),
        ("core", config.core_type, config.core_count, config.core_spot),
    ]
    missing = sorted(
        {t for _, t, _, _ in groups if t not in region["ec2"] or t not in region["emr"]}
    )
    lines = tuple(
        CostLine(
            role=role,
            instance_type=itype,
            count=count,
            spot=spot,
            ec2_hourly=region["ec2"][itype] * (table["spot_fraction"] if spot else 1.0),
            emr_hourly=region["emr"][itype],
        )
        for role, itype, count, spot in groups
        if not missing
    )
    return CostEstimate(
        lines=lines,
        missing=tuple(f"{t} in {config.region}" for t in missing),
        currency=table["currency"],
        as_of=table["as_of"],
        source=table["source"],
        spot_note=table["spot_note"],
    )
