"""Measure benchmark sections, save each one's result, render BENCHMARKS.md.

    PYTHONPATH=$PWD/src python -m benchmarks [--only ceiling,e2e] [--quick] [--render-only]

Without ``--only``, every section that exists is measured in ``sections.ORDER``; ``--quick``
skips the slow ones (``SLOW = True``) and lets sections use smaller sizes; ``--render-only``
measures nothing and rewrites BENCHMARKS.md from ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks import document, sections
from benchmarks.common import Context, SectionLoad, log, machine_info, utc_now, wait_for_quiet

MARKDOWN = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def measure_section(name: str, ctx: Context, machine: dict) -> dict:
    """``measure(ctx)`` of one section, with the runner's ``_run`` record added: machine,
    date, the load on the machine during the section, the run's options."""
    module = sections.load(name)
    assert module is not None
    date = utc_now()
    log(f"section {name}: measuring")
    with SectionLoad() as load:
        result = module.measure(ctx)
    result[document.RUN_KEY] = {
        "date": date,
        "machine": machine,
        "master": ctx.master,
        "quick": ctx.quick,
        "limit": ctx.limit,
        "load": load.result(),
    }
    log(f"section {name}: done, others used {load.result()['others_cores']} cores")
    return result


def chosen_sections(only: str | None, quick: bool) -> list[str]:
    names = [name.strip() for name in only.split(",")] if only else list(sections.ORDER)
    chosen = []
    for name in names:
        module = sections.load(name)
        if module is None:
            if only:
                raise SystemExit(f"section {name!r} is not written yet (benchmarks/sections/)")
            continue
        if quick and module.SLOW and not only:
            log(f"section {name}: skipped (--quick)")
            continue
        chosen.append(name)
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Context()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", metavar="A,B", help="measure only these sections")
    parser.add_argument("--quick", action="store_true", help="skip slow sections, smaller sizes")
    parser.add_argument("--render-only", action="store_true", help="render from saved results")
    parser.add_argument("--limit", type=int, help="use only about N images of the sample")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="first wait up to S seconds for a load average below 1.5",
    )
    parser.add_argument("--data", type=Path, default=defaults.data, help="Fruits-360 sample")
    parser.add_argument("--photos", type=Path, default=defaults.photos)
    parser.add_argument("--work", type=Path, default=defaults.work, help="scratch folder")
    parser.add_argument("--out", type=Path, default=MARKDOWN, help="the Markdown to write")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.render_only:
        ctx = Context(
            data=args.data.resolve(),
            photos=args.photos.resolve(),
            work=args.work,
            quick=args.quick,
            limit=args.limit,
        )
        names = chosen_sections(args.only, args.quick)
        if args.wait_quiet:
            wait_for_quiet(args.wait_quiet)
        machine, failed = machine_info(), []
        for name in names:
            try:
                document.save_result(name, measure_section(name, ctx, machine))
            except Exception:  # one failed section must not lose the others' results
                traceback.print_exc()
                failed.append(name)
        if failed:
            log(f"failed (results not saved): {', '.join(failed)}")
    args.out.write_text(document.render_document(document.load_results()))
    log(f"wrote {args.out}")
    return 1 if not args.render_only and failed else 0


if __name__ == "__main__":
    sys.exit(main())
