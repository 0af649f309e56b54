"""The output folder's life: refuse to clobber, stage, account for every image, commit.

A run writes everything under ``OUTPUT/_staging/<run id>/`` and commits by removing the old
``summary.json``, moving each staged part into place, and writing ``summary.json`` last. So an
output with a ``summary.json`` is complete; one without it is a partial result the next run names.
"""

from __future__ import annotations

from fruitspark.storage import Storage

SUMMARY = "summary.json"
STAGING = "_staging"
FEATURES = "features"


class OutputError(ValueError):
    """An output that must not be written as asked; one line for the user."""


def check_output(storage: Storage, *, overwrite: bool, resume: bool) -> bool:
    """Whether a complete previous output exists; raises when this run must not touch it."""
    if not storage.exists():
        return False
    complete = storage.exists(SUMMARY)
    leftovers = storage.list()
    if complete and not (overwrite or resume):
        raise OutputError(
            f"output {storage.root} already holds results: "
            "use --overwrite to replace them or --resume to update them"
        )
    if not complete and leftovers and not overwrite:
        raise OutputError(
            f"output {storage.root} holds a partial result of an interrupted run "
            f"(no {SUMMARY}; found {', '.join(leftovers[:5])}): use --overwrite to replace it"
        )
    return complete


def commit(storage: Storage, staging: str, parts: list[str], summary: dict) -> None:
    """Move the staged parts into place, then write the summary: the output is complete only now."""
    storage.delete(SUMMARY)
    keep = set(parts) | {STAGING}
    for name in storage.list():
        if name not in keep:
            storage.delete(name)
    for part in parts:
        storage.rename(f"{staging}/{part}", part)
    storage.delete(STAGING)
    storage.write_json(SUMMARY, summary)


def account(listed, written) -> dict:
    """Check that each listed path appears exactly once in ``written``; counts, never rows, return.

    ``listed`` and ``written`` are DataFrames with a ``path`` column.
    """
    from pyspark.sql import functions as F

    per_path = written.groupBy("path").agg(F.count(F.lit(1)).alias("copies"))
    joined = listed.select("path", F.lit(True).alias("is_listed")).join(
        per_path, "path", "full_outer"
    )
    counts = joined.agg(
        F.count(F.when(F.col("is_listed"), 1)).alias("listed"),
        F.coalesce(F.sum("copies"), F.lit(0)).alias("rows"),
        F.count(F.when(F.col("is_listed") & F.col("copies").isNull(), 1)).alias("missing"),
        F.coalesce(F.sum(F.when(F.col("copies") > 1, F.col("copies") - 1)), F.lit(0)).alias(
            "duplicated"
        ),
        F.count(F.when(F.col("is_listed").isNull(), 1)).alias("unexpected"),
    ).first()
    result = {name: int(counts[name]) for name in counts.asDict()}
    result["ok"] = result["missing"] == result["duplicated"] == result["unexpected"] == 0
    return result
