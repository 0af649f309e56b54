"""Look at, read the logs of, and terminate an EMR cluster after ``run`` has started it."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bucket import S3Uri
from .clients import Aws
from .config import DEFAULT_REGION, CloudError

TERMINAL_STEP_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})
ENDED_CLUSTER_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})
_APPLICATION_ID = re.compile(r"application_\d+_\d+")


@dataclass(frozen=True)
class StepStatus:
    """One step's state and, once it failed, EMR's account of why."""

    step_id: str
    name: str
    state: str
    reason: str = ""
    log_file: str | None = None


@dataclass(frozen=True)
class ClusterStatus:
    """A cluster's state, where its logs go and its steps, newest first."""

    cluster_id: str
    name: str
    state: str
    reason: str
    release_label: str
    log_uri: str | None
    steps: tuple[StepStatus, ...]

    def render(self) -> str:
        lines = [
            f"cluster {self.cluster_id} ({self.name}): {self.state}"
            + (f" - {self.reason}" if self.reason else ""),
            f"  release {self.release_label}; logs {self.log_uri or 'not kept'}",
        ]
        lines += [
            f"  step {s.step_id} {s.name}: {s.state}" + (f" - {s.reason}" if s.reason else "")
            for s in self.steps
        ]
        return "\n".join(lines)

    __str__ = render


@dataclass(frozen=True)
class StepLogs:
    """A step's log files as text, keyed by name (stderr, stdout, controller, driver-stderr...)."""

    cluster_id: str
    step_id: str
    texts: dict[str, str]
    sources: dict[str, str]
    saved: tuple[Path, ...] = ()

    def tail(self, name: str = "stderr", lines: int = 40) -> str:
        """The last ``lines`` lines of one log, the driver's stderr first when Spark had one."""
        preferred = "driver-stderr" if name == "stderr" and "driver-stderr" in self.texts else name
        return "\n".join(self.texts.get(preferred, "").splitlines()[-lines:])


def status(
    cluster_id: str, *, region: str = DEFAULT_REGION, aws: Aws | None = None
) -> ClusterStatus:
    """The cluster's state and its steps."""
    emr = (aws or Aws(region)).emr
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    steps = emr.get_paginator("list_steps").paginate(ClusterId=cluster_id)
    return ClusterStatus(
        cluster_id=cluster_id,
        name=cluster.get("Name", ""),
        state=cluster["Status"]["State"],
        reason=cluster["Status"].get("StateChangeReason", {}).get("Message") or "",
        release_label=cluster.get("ReleaseLabel", ""),
        log_uri=cluster.get("LogUri"),
        steps=tuple(_step(s) for page in steps for s in page["Steps"]),
    )


def step_status(emr: Any, cluster_id: str, step_id: str) -> StepStatus:
    """One step, read fresh from EMR."""
    return _step(emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"])


def down(cluster_id: str, *, region: str = DEFAULT_REGION, aws: Aws | None = None) -> str:
    """Terminate the cluster (idempotent) and return its state right after the request."""
    emr = (aws or Aws(region)).emr
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]


def logs(
    cluster_id: str,
    step_id: str | None = None,
    *,
    region: str = DEFAULT_REGION,
    aws: Aws | None = None,
    dest_dir: Path | None = None,
) -> StepLogs:
    """Fetch a step's logs (the newest step by default) from the cluster's log URI.

    With ``spark-submit --deploy-mode cluster`` the step's own stderr holds only the client's
    view; the Python traceback is in the driver's YARN container, so that is fetched too when
    the step's stderr names its application.
    """
    aws = aws or Aws(region)
    cluster = aws.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    if not cluster.get("LogUri"):
        raise CloudError(f"cluster {cluster_id} was started without a log URI")
    root = S3Uri.parse(cluster["LogUri"]).join(cluster_id)
    step_id = step_id or _newest_step(aws.emr, cluster_id)
    found = _read_logs(aws.s3, root.join("steps", step_id), lambda name: name)
    application = _APPLICATION_ID.search(found.get("stderr", ("", ""))[1])
    if application:
        containers = root.join("containers", application.group())
        found |= _read_logs(aws.s3, containers, _driver_log_name)
    if not found:
        raise CloudError(
            f"no logs yet under {root.join('steps', step_id)}/: EMR copies them to S3 about "
            "every five minutes and when the cluster ends"
        )
    saved = _save(dest_dir / cluster_id / step_id, found) if dest_dir else ()
    return StepLogs(
        cluster_id=cluster_id,
        step_id=step_id,
        texts={name: text for name, (_, text) in found.items()},
        sources={name: uri for name, (uri, _) in found.items()},
        saved=saved,
    )


def _step(step: dict[str, Any]) -> StepStatus:
    status_ = step["Status"]
    failure = status_.get("FailureDetails") or {}
    reason = failure.get("Message") or failure.get("Reason") or ""
    reason = reason or status_.get("StateChangeReason", {}).get("Message") or ""
    return StepStatus(
        step_id=step["Id"],
        name=step.get("Name", ""),
        state=status_["State"],
        reason=reason,
        log_file=failure.get("LogFile"),
    )


def _newest_step(emr: Any, cluster_id: str) -> str:
    steps = emr.list_steps(ClusterId=cluster_id)["Steps"]
    if not steps:
        raise CloudError(f"cluster {cluster_id} has no steps")
    return steps[0]["Id"]


def _driver_log_name(relative: str) -> str | None:
    """``container_..._01_000001/stderr`` (the application master, i.e. the driver) only."""
    container, _, name = relative.partition("/")
    return f"driver-{name}" if container.endswith("_000001") and "/" not in name else None


def _read_logs(
    s3: Any, folder: S3Uri, name_of: Callable[[str], str | None]
) -> dict[str, tuple[str, str]]:
    """Decompressed log files under ``folder`` as {name: (s3 uri, text)}."""
    found: dict[str, tuple[str, str]] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=folder.bucket, Prefix=folder.prefix)
    for obj in (o for page in pages for o in page.get("Contents", [])):
        relative = obj["Key"][len(folder.prefix) :].removesuffix(".gz")
        name = name_of(relative)
        if not name:
            continue
        body = s3.get_object(Bucket=folder.bucket, Key=obj["Key"])["Body"].read()
        if obj["Key"].endswith(".gz"):
            body = gzip.decompress(body)
        found[name] = (f"s3://{folder.bucket}/{obj['Key']}", body.decode("utf-8", "replace"))
    return found


def _save(folder: Path, found: dict[str, tuple[str, str]]) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, (_, text) in found.items():
        path = folder / f"{name.replace('/', '_')}.log"
        path.write_text(text, encoding="utf-8")
        saved.append(path)
    return tuple(saved)
