"""The ``fruitspark`` command: a thin layer over the Python API, one clear line per failure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fruitspark import __version__
from fruitspark.cloud.cli import add_cloud_commands, command_cloud
from fruitspark.evaluate import QUICK_GRID, EvaluateOptions
from fruitspark.layout import REPORT
from fruitspark.options import add_options, build
from fruitspark.pipeline import RunConfig
from fruitspark.summary import Summary, variance_kept

EXAMPLES = """examples:
  fruitspark demo                                   216 real images, whole pipeline, report
  fruitspark run ../shared/data/fruits360-sample out --overwrite
  fruitspark evaluate out                           accuracy on the Test split, in the report
  fruitspark predict out photo.jpg other.png        top-5 fruit for new photos
  spark-submit --master yarn $(python -c 'import fruitspark.cli as c; print(c.__file__)') \\
      run s3://bucket/images s3://bucket/out        the same job on a cluster
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fruitspark",
        description="Labelled images → CNN features → PCA → Parquet, on Spark "
        "(local mode by default, or any cluster through spark-submit).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fruitspark {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="featurise a folder (or manifest) of images and reduce with PCA",
        description="Read INPUT (a folder tree Class/image.jpg, local, hdfs:// or s3://; or a "
        ".parquet/.csv manifest with a path column), extract features on the executors, fit a "
        "centred PCA and write OUTPUT/{features/, pca_model/, summary.json, report.html}.",
    )
    add_options(run, RunConfig)
    _add_master(run)

    demo = commands.add_parser(
        "demo", help="run everything on the small real image set shipped with fruitspark"
    )
    demo.add_argument(
        "--dir",
        default="fruitspark-demo",
        help="where to write images and results (default: %(default)s)",
    )
    _add_master(demo)

    evaluate = commands.add_parser(
        "evaluate", help="train a classifier on Training, score it on Test, update the report"
    )
    evaluate.add_argument("output", help="output folder of `fruitspark run`")
    add_options(evaluate, EvaluateOptions)
    _add_master(evaluate)

    predict = commands.add_parser("predict", help="top-k fruit for new photos (no Spark)")
    predict.add_argument("model_dir", help="output folder of `fruitspark run` + `evaluate`")
    predict.add_argument(
        "images", nargs="+", help="image files, or folders (every image in them, at any depth)"
    )
    predict.add_argument("--top-k", type=_positive, default=5, help="classes shown (default: 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")

    report = commands.add_parser("report", help="(re)write OUTPUT/report.html")
    report.add_argument("output")
    _add_master(report)

    add_cloud_commands(commands)
    return parser


def _add_master(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--master",
        help="Spark master (default: the spark-submit one, else local[*]); e.g. local[2]",
    )


def _session(args: argparse.Namespace):
    from fruitspark.session import spark_session

    return spark_session(args.master)


def command_run(args: argparse.Namespace) -> int:
    from fruitspark.pipeline import run

    config = build(RunConfig, args)
    summary = run(config, master=args.master, jit="c1")  # a run's session does no Spark ML
    _print_summary(summary)
    if config.report:
        print(f"Report: {summary.output.rstrip('/')}/{REPORT}")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from fruitspark.demo import prepare_demo_images
    from fruitspark.evaluate import evaluate
    from fruitspark.pipeline import refresh_report, run

    root = Path(args.dir).resolve()
    images, output = root / "images", root / "output"
    count, real = prepare_demo_images(images)
    kind = "real Fruits-360 images (CC BY-SA 4.0)" if real else "SYNTHETIC images (drawn shapes)"
    print(f"{count} {kind} in {images}")
    spark = _session(args)
    summary = run(RunConfig(input=str(images), output=str(output), overwrite=True), spark)
    _print_summary(summary)
    scores = evaluate(str(output), spark, QUICK_GRID)
    refresh_report(str(output), spark)
    print(
        f"Test top-1 {scores['top1']:.3f}, top-5 {scores['top5']:.3f} on "
        f"{scores['tested_on']['images']} images, {scores['trained_on']['classes']} classes"
    )
    print(f"Report: {output / REPORT}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from fruitspark.evaluate import evaluate
    from fruitspark.pipeline import refresh_report

    options = build(EvaluateOptions, args)
    spark = _session(args)
    scores = evaluate(args.output, spark, options)
    report = refresh_report(args.output, spark)
    print(
        f"Test top-1 {_score(scores['top1'])}  top-5 {_score(scores['top5'])}  on "
        f"{scores['tested_on']['images']} images, {scores['trained_on']['classes']} classes"
    )
    selection = scores["model_selection"]
    rungs = " → ".join(f"{r['candidates']} on {r['rows']} rows" for r in selection["rungs"])
    print(f"  {selection['search']} search, {selection['folds']}-fold CV on train: {rungs}")
    print(f"  chosen: {selection['chosen']}")
    if "fruit_level" in scores:
        fruit = scores["fruit_level"]
        print(f"Fruit top-1 {_score(fruit['top1'])}  top-5 {_score(fruit['top5'])}", end=" ")
        print(f"on {fruit['tested']} images, {len(fruit['per_class'])} fruits")
    for name, part in scores.get("by_input", {}).items():
        print(
            f"  {name}: top-1 {_score(part['top1'])} on {part['tested']}, fruit top-1 "
            f"{_score(part['fruit_top1'])} on {part['fruit_tested']} of {part['images']} images"
        )
    for pair in scores["confused_pairs"][:5]:
        print(f"  {pair['count']:>3} x {pair['true']} taken for {pair['predicted']}")
    print(f"Details: {args.output}/evaluation.json  Report: {report}")
    return 0


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def command_predict(args: argparse.Namespace) -> int:
    from fruitspark.predict import predict

    predictions = predict(args.model_dir, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps([vars(item) for item in predictions], indent=2))
        return 0
    for item in predictions:
        if item.error:
            print(f"{item.path}: error: {item.error}")
            continue
        ranked = ", ".join(
            f"{label} {p:.1%}" for label, p in zip(item.labels, item.probabilities, strict=True)
        )
        print(f"{item.path}: {ranked}")
        if item.fruits:
            pairs = zip(item.fruits, item.fruit_probabilities, strict=True)
            print("  fruit: " + ", ".join(f"{fruit} {p:.1%}" for fruit, p in pairs))
    return 1 if any(item.error for item in predictions) else 0


def command_report(args: argparse.Namespace) -> int:
    from fruitspark.pipeline import refresh_report

    print(f"Report: {refresh_report(args.output, _session(args))}")
    return 0


def _print_summary(summary: Summary) -> None:
    images, pca = summary.images, summary.pca
    print(
        f"{images.listed} images: {images.featurised} featurised, {images.failed} "
        f"failed; {summary.throughput_images_per_s:.1f} images/s; "
        f"PCA k={pca.k} ({variance_kept(pca):.1%} variance); accounting "
        f"{'ok' if summary.accounting.ok else 'FAILED'}"
    )
    print(f"Results: {summary.output}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": command_run,
    "demo": command_demo,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "report": command_report,
    "cloud": command_cloud,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        argv, passthrough = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if passthrough and args.command != "cloud":
        parser.error(f"unexpected arguments after --: {' '.join(passthrough)}")
    args.passthrough = passthrough
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("fruitspark: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the one place that turns any failure into one line
        print(f"fruitspark: error: {_one_line(error)}", file=sys.stderr)
        if os.environ.get("FRUITSPARK_DEBUG"):
            raise
        return 1 if type(error).__name__ == "RunFailed" else 2


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if type(error).__name__ in ("Py4JJavaError", "AnalysisException") or "\n" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        causes = [line for line in lines if "Exception:" in line or "Error:" in line]
        text = (causes[-1] if causes else lines[0]) if lines else type(error).__name__
    return text[:400]


def entry_point() -> int:
    """The ``fruitspark`` command: :func:`main`, then the Spark session it started is stopped;
    the first time, its JVM's classes are kept for later starts (:mod:`.class_archive`)."""
    from fruitspark import class_archive

    class_archive.request_at_exit()
    try:
        return main()
    finally:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
        class_archive.finish()


if __name__ == "__main__":
    sys.exit(entry_point())
