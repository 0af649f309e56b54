"""Run the pipeline on a fresh EMR cluster and bring its summary and report home.

Everything that can fail cheaply (region, files, bucket, data location) is checked before the
cluster starts. Once it has started, any failure, timeout or Ctrl-C terminates it before the
error reaches the caller: a failed run must never leave a cluster billing by the second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .bucket import S3Uri, ensure_bucket, require_eu_bucket
from .clients import Aws
from .cluster import ENDED_CLUSTER_STATES, TERMINAL_STEP_STATES, StepStatus, step_status
from .config import CloudError, ClusterConfig
from .plan import Plan, plan


class RunFailed(CloudError):
    """A run that started a cluster and did not complete; the message says if it was terminated."""

    def __init__(self, message: str, *, cluster_id: str, step_id: str | None = None) -> None:
        super().__init__(message)
        self.cluster_id = cluster_id
        self.step_id = step_id


@dataclass(frozen=True)
class RunProgress:
    """What ``on_state`` is told at every poll."""

    cluster_id: str
    step_id: str
    cluster_state: str
    step_state: str
    elapsed_s: float


@dataclass(frozen=True)
class RunResult:
    """A started (``wait=False``) or finished run; ``results`` are the downloaded files."""

    run_id: str
    cluster_id: str
    step_id: str
    state: str
    output_uri: str
    log_uri: str
    results: tuple[Path, ...] = ()


def run(
    config: ClusterConfig,
    input_uri: str,
    output_uri: str,
    run_args: Sequence[str] = (),
    *,
    wheel_path: Path,
    model_path: Path | None = None,
    wait: bool = True,
    on_state: Callable[[RunProgress], None] | None = None,
    aws: Aws | None = None,
    poll_s: float = 30.0,
    timeout_s: float = 12 * 3600.0,
    results_dir: Path | None = None,
    run_id: str | None = None,
    images: int | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunResult:
    """Run ``fruitspark run INPUT OUTPUT *run_args`` on EMR, as :func:`plan` describes.

    With ``wait`` the step is polled every ``poll_s`` seconds until it ends, then
    ``summary.json`` and ``report.html`` are downloaded into ``results_dir`` (default
    ``fruitspark-output/RUN_ID``). Without it the call returns once the cluster is requested;
    the cluster still ends itself after the step unless ``config.keep_alive``. ``on_plan`` sees
    the plan (its Spark version and estimate) before anything is created.
    """
    the_plan = plan(
        config,
        input_uri,
        output_uri,
        run_args,
        wheel_path=wheel_path,
        model_path=model_path,
        run_id=run_id,
        images=images,
    )
    if on_plan:
        on_plan(the_plan)
    aws = aws or Aws(config.region)
    _preflight(aws, the_plan)
    _upload(aws.s3, the_plan)
    cluster_id = aws.emr.run_job_flow(**the_plan.job_flow)["JobFlowId"]
    step_id: str | None = None
    try:
        step_id = aws.emr.list_steps(ClusterId=cluster_id)["Steps"][0]["Id"]
        if not wait:
            step = step_status(aws.emr, cluster_id, step_id)
            return _result(the_plan, cluster_id, step)
        step = _follow(aws.emr, cluster_id, step_id, poll_s, timeout_s, on_state)
        _require_completed(step, the_plan, cluster_id)
        folder = results_dir or Path("fruitspark-output", the_plan.run_id)
        return _result(the_plan, cluster_id, step, _download(aws.s3, the_plan, folder))
    except (CloudError, ClientError, BotoCoreError, OSError) as error:
        _, outcome = _terminate(aws.emr, cluster_id)
        raise RunFailed(
            f"run {the_plan.run_id} failed: {error}; {outcome}",
            cluster_id=cluster_id,
            step_id=step_id,
        ) from error
    except BaseException as interrupt:
        terminated, outcome = _terminate(aws.emr, cluster_id)
        if not terminated:
            raise RunFailed(outcome, cluster_id=cluster_id, step_id=step_id) from interrupt
        raise


def _require_completed(step: StepStatus, the_plan: Plan, cluster_id: str) -> None:
    """A step that ended any other way than COMPLETED fails the run, saying where its logs are."""
    if step.state != "COMPLETED":
        raise CloudError(
            f"step {step.step_id} {step.state}"
            + (f": {step.reason}" if step.reason else "")
            + f" (logs: fruitspark cloud logs {cluster_id}; EMR copies them to "
            f"{the_plan.log_uri} within about five minutes)"
        )


def _preflight(aws: Aws, the_plan: Plan) -> None:
    """Every check that needs no cluster: fail here, before anything is billed by the hour."""
    if aws.region != the_plan.config.region:
        raise CloudError(f"clients are for {aws.region} but the run is in {the_plan.config.region}")
    for artifact in the_plan.artifacts:
        if artifact.source is not None and not artifact.source.is_file():
            raise FileNotFoundError(f"no such file: {artifact.source}")
    for uri in (the_plan.input_uri, the_plan.output_uri):
        bucket = S3Uri.parse(uri).bucket
        if bucket != the_plan.bucket.name:
            require_eu_bucket(aws.s3, bucket)
    ensure_bucket(aws.s3, the_plan.bucket)


def _upload(s3: Any, the_plan: Plan) -> None:
    for artifact in the_plan.artifacts:
        if artifact.source is not None:
            s3.upload_file(str(artifact.source), artifact.uri.bucket, artifact.uri.key)
        else:
            s3.put_object(Bucket=artifact.uri.bucket, Key=artifact.uri.key, Body=artifact.body)


def _follow(
    emr: Any,
    cluster_id: str,
    step_id: str,
    poll_s: float,
    timeout_s: float,
    on_state: Callable[[RunProgress], None] | None,
) -> StepStatus:
    """Poll until the step ends; a cluster that ends first or a timeout is a failure."""
    started = time.monotonic()
    while True:
        step = step_status(emr, cluster_id, step_id)
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
        elapsed = time.monotonic() - started
        if on_state:
            on_state(RunProgress(cluster_id, step_id, cluster["State"], step.state, elapsed))
        if step.state in TERMINAL_STEP_STATES:
            return step
        if cluster["State"] in ENDED_CLUSTER_STATES:
            reason = cluster.get("StateChangeReason", {}).get("Message") or "no reason given"
            raise CloudError(f"cluster {cluster['State']} before the step ended: {reason}")
        if elapsed > timeout_s:
            raise CloudError(f"step still {step.state} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _download(s3: Any, the_plan: Plan, folder: Path) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for uri in the_plan.result_uris:
        target = folder / uri.key.rsplit("/", 1)[-1]
        try:
            s3.download_file(uri.bucket, uri.key, str(target))
        except ClientError as error:
            raise CloudError(f"the step completed but {uri} cannot be read: {error}") from error
        saved.append(target)
    return tuple(saved)


def _terminate(emr: Any, cluster_id: str) -> tuple[bool, str]:
    """Terminate the cluster; whether that worked, and a sentence saying so (loudly if not)."""
    try:
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
    except (ClientError, BotoCoreError) as error:
        return False, (
            f"COULD NOT TERMINATE cluster {cluster_id} ({error}): "
            f"run `fruitspark cloud down {cluster_id}` now, it is billed until it ends"
        )
    return True, f"cluster {cluster_id} was terminated"


def _result(
    the_plan: Plan, cluster_id: str, step: StepStatus, results: tuple[Path, ...] = ()
) -> RunResult:
    return RunResult(
        run_id=the_plan.run_id,
        cluster_id=cluster_id,
        step_id=step.step_id,
        state=step.state,
        output_uri=the_plan.output_uri,
        log_uri=str(the_plan.log_uri),
        results=results,
    )
