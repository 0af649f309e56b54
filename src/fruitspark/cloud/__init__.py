"""Run fruitspark on AWS EMR in an EU region: plan, sync, run, status, logs, down.

Plain functions for the ``fruitspark cloud`` commands. Credentials come only from boto3's
default chain; every function refuses a region outside the EU.
"""

from .bucket import BucketSpec, S3Uri, ensure_bucket
from .clients import Aws
from .cluster import ClusterStatus, StepLogs, StepStatus, down, logs, status
from .config import (
    DEFAULT_REGION,
    DEFAULT_RELEASE_LABEL,
    EU_REGIONS,
    CloudError,
    ClusterConfig,
    RegionError,
)
from .plan import MODEL_OPTION, Plan, plan
from .prices import CostEstimate, estimate
from .runner import RunFailed, RunProgress, RunResult, run
from .sync import SyncResult, sync

__all__ = [
    "DEFAULT_REGION",
    "DEFAULT_RELEASE_LABEL",
    "EU_REGIONS",
    "MODEL_OPTION",
    "Aws",
    "BucketSpec",
    "CloudError",
    "ClusterConfig",
    "ClusterStatus",
    "CostEstimate",
    "Plan",
    "RegionError",
    "RunFailed",
    "RunProgress",
    "RunResult",
    "S3Uri",
    "StepLogs",
    "StepStatus",
    "SyncResult",
    "down",
    "ensure_bucket",
    "estimate",
    "logs",
    "plan",
    "run",
    "status",
    "sync",
]
