"""What a cloud run is configured with, and the rule that keeps it inside the EU.

The region check lives here, next to the defaults, so that every entry point (plan, sync, run,
status, logs, down) refuses a non-EU region before a single request leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_REGION = "eu-west-3"
DEFAULT_RELEASE_LABEL = "emr-7.12.0"

# AWS regions physically inside EU member states. London (eu-west-2) and Zurich (eu-central-2)
# are in Europe but outside the EU; the European Sovereign Cloud is a separate partition with its
# own accounts. Processing personal data there would need a separate legal basis, so they are
# refused rather than silently allowed.
EU_REGIONS = frozenset(
    {"eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2"}
)


class CloudError(RuntimeError):
    """A cloud operation that cannot go on; the message says what to do about it."""


class RegionError(CloudError, ValueError):
    """A region outside the EU was asked for."""


def require_eu_region(region: str) -> str:
    """Return ``region`` if it is an EU region, else raise :class:`RegionError` (GDPR)."""
    if region not in EU_REGIONS:
        allowed = ", ".join(sorted(EU_REGIONS))
        raise RegionError(
            f"region {region!r} is outside the EU; fruitspark keeps images, features and logs "
            f"in the EU (GDPR). Use one of: {allowed}"
        )
    return region


def _option(text: str, default, flag: str | None = None, **metadata):
    """A field that is also a ``fruitspark cloud plan|run`` option (fruitspark.options)."""
    metadata = {"help": text, **({"flag": flag} if flag else {}), **metadata}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ClusterConfig:
    """Where and on what an EMR run happens; every field is a CLI option with this default.

    ``keep_alive`` False makes the cluster end itself after its single step, so a closed laptop
    never leaves it running; ``idle_timeout_s`` is the second guard for clusters kept alive.
    ``python`` is the interpreter the bootstrap installs into and Spark runs: EMR 7's ``python3``
    is 3.9, older than the package's ``requires-python``, while 3.11 ships on EMR 7.1 and later.
    ``security_configuration`` names an existing EMR security configuration (for example one
    turning on local-disk and in-transit encryption).
    """

    bucket: str  # a required option of its own (--bucket): fields without a default are positional
    region: str = _option("EU region", DEFAULT_REGION)
    release_label: str = _option("EMR release", DEFAULT_RELEASE_LABEL)
    master_type: str = _option("primary node instance type", "m5.xlarge")
    core_type: str = _option("core node instance type", "m5.xlarge")
    core_count: int = _option("core nodes (Spark executors run there)", 2)
    core_spot: bool = _option("core nodes on Spot", False, flag="--spot")
    idle_timeout_s: int = _option("seconds idle before auto-termination", 3600, "--idle-timeout")
    keep_alive: bool = _option("keep the cluster after the step", False)
    service_role: str = _option("EMR service role", "EMR_DefaultRole")
    instance_profile: str = _option("EC2 instance profile of the nodes", "EMR_EC2_DefaultRole")
    kms_key_id: str | None = _option(
        "SSE-KMS key for the bucket", None, "--kms-key", default_text="SSE-S3"
    )
    subnet_id: str | None = _option("VPC subnet", None, "--subnet", default_text="the default VPC")
    security_configuration: str | None = _option("an existing EMR security configuration", None)
    python: str = "python3.11"
    name: str = "fruitspark"

    def __post_init__(self) -> None:
        require_eu_region(self.region)
        if not self.bucket:
            raise ValueError("a bucket name is required")
        if not self.release_label.startswith("emr-"):
            raise ValueError(f"release label {self.release_label!r} should look like 'emr-7.12.0'")
        if self.core_count < 1:
            raise ValueError("core_count must be at least 1: Spark executors run on core nodes")
        if not 60 <= self.idle_timeout_s <= 7 * 24 * 3600:
            raise ValueError("idle_timeout_s must be between 60 s and 7 days (EMR's limits)")
