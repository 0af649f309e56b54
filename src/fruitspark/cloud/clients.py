"""The boto3 clients a cloud command uses, made in one place.

Credentials come only from boto3's default chain (environment, shared config/SSO profile,
instance role): nothing here accepts, prints or stores a key. ``endpoint_url`` exists so tests can
point every client at a local moto server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_REGION, require_eu_region

if TYPE_CHECKING:
    import boto3

# Enough pooled connections for the parallel uploads of ``sync``; standard retries ride out the
# throttling that EMR's describe/list calls get under polling.
_RETRIES = {"mode": "standard", "max_attempts": 8}
_POOL = 64


class Aws:
    """The S3 and EMR clients of one EU region."""

    def __init__(
        self,
        region: str = DEFAULT_REGION,
        *,
        session: boto3.Session | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        # boto3 is imported here, not with the module: every ``fruitspark run`` builds the cloud
        # sub-commands' parser, and should not spend half a second importing boto3 to do it
        import boto3
        from botocore.config import Config

        self.region = require_eu_region(region)
        session = session or boto3.Session()
        config = Config(retries=_RETRIES, max_pool_connections=_POOL)
        self.s3: Any = session.client(
            "s3", region_name=region, endpoint_url=endpoint_url, config=config
        )
        self.emr: Any = session.client(
            "emr", region_name=region, endpoint_url=endpoint_url, config=config
        )
