"""``fruitspark cloud plan|sync|run|status|logs|down``: arguments over the cloud functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fruitspark.cloud.config import DEFAULT_REGION, ClusterConfig
from fruitspark.options import add_options, build


def add_cloud_commands(commands) -> None:
    cloud = commands.add_parser(
        "cloud",
        help="run on AWS EMR in an EU region (plan, sync, run, status, logs, down)",
        epilog="plan and run pass what follows -- to `fruitspark run` on the cluster.",
        description="AWS EMR in an EU region. Credentials come only from boto3's standard chain "
        "(AWS_PROFILE, SSO, instance role); nothing prints or stores them.",
    )
    actions = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")

    for name, text in (
        (
            "plan",
            "print every resource a run would create, its Spark, cost and duration (no AWS "
            "call, except one read of a manifest input to count its images)",
        ),
        ("run", "create the bucket and an EMR cluster, run the job, fetch summary and report"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("input", help="s3:// image folder or manifest (.parquet/.csv)")
        action.add_argument("output", help="s3:// output location")
        action.add_argument("--bucket", required=True, help="work bucket (EU, created if absent)")
        action.add_argument("--wheel", type=Path, required=True, help="fruitspark wheel to ship")
        action.add_argument("--model", type=Path, help="an .onnx model (default: built-in)")
        action.add_argument("--images", type=int, help="image count for the estimate "
                            "(default: a manifest input's rows, read from S3)")  # fmt: skip
        add_options(action, ClusterConfig)
        if name == "run":
            action.add_argument("--no-wait", action="store_true", help="start and return")
            action.add_argument(
                "--poll", type=float, default=30.0, help="seconds between polls (default: 30)"
            )
            action.add_argument(
                "--timeout", type=float, default=43200.0, help="seconds to wait (default: 12 h)"
            )
            action.add_argument("--results", type=Path, help="where to download the results")

    sync = actions.add_parser("sync", help="upload an image folder to S3, skipping unchanged files")
    sync.add_argument("local_dir")
    sync.add_argument("s3_uri")
    sync.add_argument(
        "--manifest", help="also write a manifest (.parquet or .csv) to this s3:// URI"
    )
    sync.add_argument("--workers", type=int, default=8, help="parallel uploads (default: 8)")
    _region_option(sync)

    for name, text in (
        ("status", "cluster and step states"),
        ("logs", "fetch the step's logs and print their tail"),
        ("down", "terminate the cluster now"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("cluster_id")
        _region_option(action)
        if name == "logs":
            action.add_argument("--step", help="step id (default: the newest)")
            action.add_argument("--save", type=Path, help="folder to save the logs in")


def _region_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--region", default=DEFAULT_REGION, help=f"EU region (default: {DEFAULT_REGION})"
    )


def _config(args: argparse.Namespace) -> ClusterConfig:
    return build(ClusterConfig, args, bucket=args.bucket)


def _run_args(args: argparse.Namespace) -> list[str]:
    """What follows ``--`` on the command line: options of ``fruitspark run`` on the cluster."""
    return list(args.passthrough)


def _images(args: argparse.Namespace) -> int | None:
    """The image count for the estimate: given, or a manifest input's rows (one S3 read)."""
    from fruitspark.cloud import Aws
    from fruitspark.cloud.estimate import manifest_images

    if args.images is not None or not args.input.lower().endswith((".parquet", ".csv")):
        return args.images
    return manifest_images(Aws(args.region).s3, args.input)


def command_cloud(args: argparse.Namespace) -> int:
    from fruitspark import cloud

    action = args.cloud_command
    if action == "plan":
        print(
            cloud.plan(
                _config(args), args.input, args.output, _run_args(args),
                wheel_path=args.wheel, model_path=args.model, images=_images(args),
            ).render()
        )  # fmt: skip
    elif action == "sync":
        result = cloud.sync(
            args.local_dir,
            args.s3_uri,
            workers=args.workers,
            manifest_uri=args.manifest,
            region=args.region,
            progress=lambda done, total: print(f"\r{done}/{total} files", end="", file=sys.stderr),
        )
        print(
            f"\n{len(result.uploaded)} uploaded, {len(result.skipped)} unchanged"
            + (f"; manifest {result.manifest_uri}" if result.manifest_uri else "")
        )
    elif action == "run":
        result = cloud.run(
            _config(args), args.input, args.output, _run_args(args),
            wheel_path=args.wheel, model_path=args.model, wait=not args.no_wait,
            poll_s=args.poll, timeout_s=args.timeout, results_dir=args.results,
            images=_images(args), on_plan=lambda p: print(p.headline(), file=sys.stderr),
            on_state=lambda p: print(
                f"{p.elapsed_s:7.0f} s  cluster {p.cluster_state}  step {p.step_state}",
                file=sys.stderr,
            ),
        )  # fmt: skip
        print(f"cluster {result.cluster_id} step {result.step_id}: {result.state}")
        for path in result.results:
            print(f"  {path}")
    elif action == "status":
        print(cloud.status(args.cluster_id, region=args.region).render())
    elif action == "logs":
        found = cloud.logs(args.cluster_id, args.step, region=args.region, dest_dir=args.save)
        print(found.tail())
    elif action == "down":
        print(f"{args.cluster_id}: {cloud.down(args.cluster_id, region=args.region)}")
    return 0
