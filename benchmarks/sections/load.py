"""50,000-image load: ``fruitspark run`` on 5,000 and 50,000 distinct paths, a fresh JVM each.

The paths are hard links of the sample's files (no extra disk, not symlinks) under
``<work>/load-<n>/c<copy>/<split>/<Class>/``. What is checked: the run completes with its
accounting right, the cost per image does not grow, driver memory stays bounded.
"""

from __future__ import annotations

import shutil

from benchmarks.common import Context, link_tree, mb, ratio, role_value, spread, table
from benchmarks.sections.e2e import measured_run

TITLE = "50,000-image load"
SLOW = True
SIZES = (5_000, 50_000)


def measure(ctx: Context) -> dict:
    files = ctx.files()
    runs = []
    for size in SIZES:
        tree = ctx.work / "trees" / f"load-{size}"
        chosen = spread(files, size)
        link_tree(ctx.data, chosen, tree, total=size)
        runs.append(measured_run(ctx, tree, f"load-{size}"))
        shutil.rmtree(tree, ignore_errors=True)
    small, large = runs
    per_image = {key: ratio(large[key] / large["images"], small[key] / small["images"])
                 for key in ("wall_s", "outside_featurize_s")}  # fmt: skip
    return {"runs": runs, "large_vs_small_per_image": per_image}


def render(result: dict) -> str:
    rows = [
        [
            f"{run['images']:,}",
            f"{run['wall_s']:.1f}",
            f"{1000 * run['wall_s'] / run['images']:.2f}",
            f"{run['featurize_images_per_s']:.1f}",
            f"{run['cpu_ms_per_image']['all']:.2f}",
            run["settings"].get("featurize_partitions", "?"),
            mb(role_value(run["processes"], "driver JVM")),
            mb(role_value(run["processes"], "driver python")),
            mb(run["peak_worker_rss_mb"]),
            "ok" if run["accounting_ok"] else "**FAILED**",
            run["processes"]["others_cores"],
        ]
        for run in result["runs"]
    ]
    headers = [
        "images",
        "wall s",
        "wall ms/image",
        "featurize images/s",
        "CPU ms/image, all processes",
        "partitions",
        "driver JVM RSS",
        "driver Python RSS",
        "peak worker RSS",
        "accounting",
        "others' cores",
    ]
    per_image = result["large_vs_small_per_image"]
    return "\n".join([
        table(headers, rows),
        "",
        f"Per image, the large run against the small one: wall time {per_image['wall_s']:.2f} x, "
        f"time outside featurize {per_image['outside_featurize_s']:.2f} x.",
    ])  # fmt: skip
