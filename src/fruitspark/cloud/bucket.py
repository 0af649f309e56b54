"""S3 locations and the bucket rules: EU region, no public access, encryption, versioning.

A bucket fruitspark creates gets all four settings. A bucket that already exists is checked, not
changed: silently turning on versioning (which can never be turned off again) or blocking public
access on someone's existing bucket could break what else uses it, so a non-compliant bucket is
refused with the commands that would fix it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .config import EU_REGIONS, CloudError

_SCHEMES = ("s3://", "s3a://", "s3n://")
_MISSING = {"404", "NoSuchBucket", "NotFound"}
_PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/key`` location; ``s3a://`` and ``s3n://`` (Hadoop's spellings) parse too."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        scheme = next((s for s in _SCHEMES if uri.startswith(s)), None)
        bucket, _, key = uri[len(scheme) :].partition("/") if scheme else ("", "", "")
        if not bucket:
            raise ValueError(f"not an S3 location: {uri!r} (expected s3://bucket/prefix)")
        return cls(bucket, key)

    def join(self, *parts: str) -> S3Uri:
        """The location of ``parts`` under this one, treating the key as a folder."""
        segments = [self.key.strip("/"), *(p.strip("/") for p in parts)]
        return S3Uri(self.bucket, "/".join(s for s in segments if s))

    @property
    def prefix(self) -> str:
        """The key as a folder prefix: empty, or ending in one slash."""
        key = self.key.strip("/")
        return f"{key}/" if key else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class BucketSpec:
    """The bucket a run writes to, with the exact settings payloads sent to S3."""

    name: str
    region: str
    kms_key_id: str | None = None

    @property
    def public_access_block(self) -> dict[str, bool]:
        return dict.fromkeys(_PUBLIC_ACCESS_FLAGS, True)

    @property
    def encryption(self) -> dict[str, Any]:
        if self.kms_key_id:
            default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self.kms_key_id}
            rule = {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
        else:
            rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        return {"Rules": [rule]}

    def describe(self) -> list[str]:
        """One line per setting, for the plan."""
        sse = f"SSE-KMS (key {self.kms_key_id})" if self.kms_key_id else "SSE-S3 (AES256)"
        return [
            f"s3://{self.name}  region {self.region}  (created if missing, else checked)",
            "public access block: all four flags on; object ownership: bucket owner enforced",
            f"default encryption: {sse}; versioning: enabled",
        ]


def ensure_bucket(s3: Any, spec: BucketSpec) -> bool:
    """Create ``spec`` with every setting, or check an existing one; True if it was created."""
    region = bucket_region(s3, spec.name)
    if region is None:
        try:
            _create(s3, spec)
            return True
        except ClientError as error:
            if _code(error) != "BucketAlreadyOwnedByYou":
                raise CloudError(f"cannot set up bucket {spec.name!r}: {error}") from error
            region = bucket_region(s3, spec.name)
    _check_existing(s3, spec, region)
    return False


def bucket_region(s3: Any, bucket: str) -> str | None:
    """The region a bucket lives in, or None if it does not exist."""
    try:
        response = s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if _code(error) in _MISSING:
            return None
        if _code(error) in {"403", "AccessDenied"}:
            raise CloudError(
                f"bucket {bucket!r} exists but this account may not use it (403): "
                "choose another name or ask its owner for access"
            ) from error
        raise
    headers = response["ResponseMetadata"].get("HTTPHeaders", {})
    return response.get("BucketRegion") or headers.get("x-amz-bucket-region")


def require_eu_bucket(s3: Any, bucket: str) -> str:
    """Return the region of an existing bucket, refusing a missing or non-EU one."""
    region = bucket_region(s3, bucket)
    if region is None:
        raise CloudError(f"bucket {bucket!r} does not exist")
    if region not in EU_REGIONS:
        raise CloudError(
            f"bucket {bucket!r} is in {region}, outside the EU: copy the data to an EU bucket "
            "first (GDPR)"
        )
    return region


def _create(s3: Any, spec: BucketSpec) -> None:
    s3.create_bucket(
        Bucket=spec.name,
        CreateBucketConfiguration={"LocationConstraint": spec.region},
        ObjectOwnership="BucketOwnerEnforced",
    )
    s3.put_public_access_block(
        Bucket=spec.name, PublicAccessBlockConfiguration=spec.public_access_block
    )
    s3.put_bucket_encryption(Bucket=spec.name, ServerSideEncryptionConfiguration=spec.encryption)
    s3.put_bucket_versioning(Bucket=spec.name, VersioningConfiguration={"Status": "Enabled"})


def _check_existing(s3: Any, spec: BucketSpec, region: str | None) -> None:
    if region != spec.region:
        raise CloudError(
            f"bucket {spec.name!r} is in {region}, not {spec.region}: pass --region {region} "
            "(if it is an EU region) or choose another bucket, so that data, cluster and logs "
            "share one region"
        )
    fixes = [
        fix
        for check in (_public_access_fix, _encryption_fix, _versioning_fix)
        if (fix := check(s3, spec))
    ]
    if fixes:
        raise CloudError(
            f"bucket {spec.name!r} exists but is not set up for personal data; fruitspark does "
            "not change an existing bucket. Use a new bucket name, or fix it with:\n  "
            + "\n  ".join(fixes)
        )


def _public_access_fix(s3: Any, spec: BucketSpec) -> str | None:
    try:
        current = s3.get_public_access_block(Bucket=spec.name)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if _code(error) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(flag) for flag in _PUBLIC_ACCESS_FLAGS):
        return None
    flags = ",".join(f"{flag}=true" for flag in _PUBLIC_ACCESS_FLAGS)
    return (
        f"aws s3api put-public-access-block --bucket {spec.name} "
        f"--public-access-block-configuration {flags}"
    )


def _encryption_fix(s3: Any, spec: BucketSpec) -> str | None:
    try:
        rules = s3.get_bucket_encryption(Bucket=spec.name)["ServerSideEncryptionConfiguration"]
    except ClientError as error:
        if _code(error) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = {"Rules": []}
    algorithms = {
        rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        for rule in rules["Rules"]
    }
    wanted = (
        {"aws:kms", "aws:kms:dsse"} if spec.kms_key_id else {"AES256", "aws:kms", "aws:kms:dsse"}
    )
    if algorithms & wanted:
        return None
    return (
        f"aws s3api put-bucket-encryption --bucket {spec.name} "
        f"--server-side-encryption-configuration '{json.dumps(spec.encryption)}'"
    )


def _versioning_fix(s3: Any, spec: BucketSpec) -> str | None:
    if s3.get_bucket_versioning(Bucket=spec.name).get("Status") == "Enabled":
        return None
    return (
        f"aws s3api put-bucket-versioning --bucket {spec.name} "
        "--versioning-configuration Status=Enabled"
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
