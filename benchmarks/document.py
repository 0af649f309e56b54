"""BENCHMARKS.md from the saved results: no measuring here, so it can be re-rendered any time.

Each section's result file holds its own ``_run`` record (machine, date, load during the
section, whether it was a quick run), written by the runner; the document shows it under the
section's heading, and one Targets table on top.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from benchmarks import sections, targets
from benchmarks.common import table

RESULTS = Path(__file__).resolve().parent / "results"
RUN_KEY = "_run"  # the runner's record in every result: machine, date, load


def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    """Section name -> result, for every ``<section>.json`` in ``folder``."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted(folder.glob("*.json"))
        if path.stem in sections.ORDER
    }


def save_result(name: str, result: Mapping, folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    return path


def machine_table(machine: Mapping) -> str:
    return table(
        ["machine", ""],
        [
            ["CPU", f"{machine['cpu']} ({machine['cpus']} vCPU)"],
            ["RAM", f"{machine['ram_gb']} GB"],
            ["OS", machine["os"]],
            ["Python / Spark / ONNX Runtime",
             f"{machine['python']} / {machine['spark']} / {machine['onnxruntime']}"],
            ["NumPy / Pillow / Java",
             f"{machine['numpy']} / {machine['pillow']} / {machine['java']}"],
        ],
    )  # fmt: skip


def _short_cpu(name: str) -> str:
    """The CPU's make, as the sessions' machines differ (an AMD EPYC one day, a Xeon the next):
    ratios measured on one are not to be compared with another's."""
    return name.replace("(R)", "").replace(" Processor", "").strip() or "?"


def run_line(run: Mapping | None) -> str:
    """One italic line: when, on what, how busy the machine was during the section."""
    if not run:
        return "_Measured before the sections framework: date and machine load not recorded._"
    load = run.get("load", {})
    machine = run.get("machine", {})
    others = load.get("others_cores")
    busy = "?" if others is None else f"{others:.2f}"
    quiet = others is not None and others < 0.1
    parts = [
        f"Measured {run['date']}",
        f"on {machine.get('cpus', '?')} vCPU of {_short_cpu(machine.get('cpu', '?'))}"
        f" ({run.get('master', '?')})",
        f"in {load.get('seconds', 0):.0f} s",
        f"other processes used {busy} cores on average (load {load.get('loadavg_start', 0):.2f}"
        f" → {load.get('loadavg_end', 0):.2f}): the machine was "
        + ("quiet" if quiet else "**shared**, compare only ratios measured side by side"),
    ]
    if run.get("quick"):
        parts.append("quick run (reduced sizes)")
    if run.get("limit"):
        parts.append(f"sample cut to about {run['limit']:,} images")
    return "_" + ", ".join(parts) + "._"


def render_section(name: str, result: Mapping) -> str:
    module = sections.module(name)
    if module is None:
        return f"## {name}\n\nResults saved, but `benchmarks/sections/{name}.py` is missing.\n"
    body = module.render(result).strip()
    return f"## {module.TITLE}\n\n{run_line(result.get(RUN_KEY))}\n\n{body}\n"


def render_document(results: Mapping[str, Mapping]) -> str:
    """The whole BENCHMARKS.md."""
    runs = [result[RUN_KEY] for result in results.values() if RUN_KEY in result]
    latest = max(runs, key=lambda run: run["date"]) if runs else None
    out = [
        "# Benchmarks",
        "",
        "Rendered by `python -m benchmarks --render-only` from `benchmarks/results/<section>.json`"
        " (re-measure a section with `python -m benchmarks --only <section>`; see "
        "`benchmarks/README.md`). Speeds are compared as ratios of things measured side by side "
        "in the same section run; each section says when it ran and how much CPU other "
        "processes took meanwhile, because the machine is shared. The machines also differ from "
        "session to session (each section names its CPU; the table below is the latest's).",
        "",
    ]
    if latest:
        out += [machine_table(latest["machine"]), ""]
    out += ["## Targets", "", targets.render(results), ""]
    missing = [name for name in sections.ORDER if name not in results]
    if missing:
        out += ["No results yet for: " + ", ".join(f"`{name}`" for name in missing) + ".", ""]
    for name in sections.ORDER:
        if name in results:
            out.append(render_section(name, results[name]))
    return "\n".join(out).rstrip() + "\n"
