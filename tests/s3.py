"""A real S3 over HTTP for the tests: moto's server mode, on 127.0.0.1 and a free port.

Not an in-process mock: the studio's storage (django-storages, boto3) and anyone holding a
presigned link (the simulator standing in for Kling, a test's HTTP client standing in for a
browser) talk to it over the network, as they would to a bucket elsewhere. ``conftest.py``
starts one server for the session (``s3_server``) and gives each test that asks a fresh,
empty bucket the studio is configured for (``bucket``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# moto takes any credentials; these are what the studio is configured with in the tests.
ACCESS_KEY = "studio-test-access"
SECRET_KEY = "studio-test-secret"


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free port for the block; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client of the server: how a test looks into a bucket behind the studio."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@dataclass(frozen=True)
class Bucket:
    """A bucket on the test server, the one the studio's storage writes to."""

    name: str
    endpoint: str
    client: Any

    def object_keys(self) -> list[str]:
        answer = self.client.list_objects_v2(Bucket=self.name)
        return sorted(entry["Key"] for entry in answer.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


def new_bucket(endpoint: str) -> Bucket:
    client = s3_client(endpoint)
    name = f"studio-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return Bucket(name=name, endpoint=endpoint, client=client)


def bucket_settings(bucket: Bucket) -> dict[str, Any]:
    """The settings ``lipsync_site/settings.py`` derives from the environment for ``bucket``
    (AWS_STORAGE_BUCKET_NAME and friends), as a test applies them."""
    return {
        "AWS_STORAGE_BUCKET_NAME": bucket.name,
        "AWS_S3_ENDPOINT_URL": bucket.endpoint,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_ACL": None,
        "AWS_QUERYSTRING_AUTH": True,
        "AWS_QUERYSTRING_EXPIRE": 48 * 3600,
        "AWS_S3_FILE_OVERWRITE": False,
        "AWS_S3_SIGNATURE_VERSION": "s3v4",
        "AWS_S3_MAX_MEMORY_SIZE": 5 * 1024 * 1024,
    }
