"""A real S3-protocol server for tests and benchmarks: moto's standalone server on 127.0.0.1.

``shared_s3_server()`` starts one ``moto.server.ThreadedMotoServer`` per process on a free loopback port
(started once, stopped at exit) and returns an ``S3Server``: its endpoint URL, a boto3 client, a fresh
bucket per caller (``new_bucket``), public-read buckets for devices that fetch with plain HTTP GETs, and
the dummy credentials (``DUMMY_ENV``) every S3 client in a test needs. ``s3_server`` is the pytest
fixture (session-scoped; the function is ``s3_server_fixture``): it sets those dummy credentials in the
environment (they come first in the AWS chain), with ``AWS_EC2_METADATA_DISABLED`` so no client asks
an instance metadata service, and yields the shared server. Import it into a test module
(``from edgeloop.testkit.s3 import s3_server_fixture  # noqa: F401``).

moto is a functional S3 server, not a performance reference. Leaves out: other AWS services, and
running the server in its own process (``moto_server`` does that; the benchmark uses it).
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["DUMMY_ENV", "S3Server", "s3_server_fixture", "shared_s3_server"]

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - a dummy value moto accepts
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service for credentials
}

_lock = threading.Lock()
_shared: S3Server | None = None
_names = itertools.count(1)


@dataclass
class S3Server:
    endpoint_url: str  # http://127.0.0.1:<port>
    _server: Any = field(repr=False, default=None)
    _client: Any = field(repr=False, default=None)

    def client(self) -> Any:
        """A boto3 S3 client on this server (dummy credentials, path-style addressing)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def new_bucket(self, prefix: str = "edgeloop", public_read: bool = False) -> str:
        """A new empty bucket with a unique name; ``public_read``: anyone may GET its objects (a CDN origin)."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if public_read:
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*",
            }]}
            client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def http_url(self, bucket: str, prefix: str = "") -> str:
        """The plain HTTP URL of ``bucket``/``prefix`` (path style), as a device or a CDN would GET it."""
        return f"{self.endpoint_url}/{bucket}" + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def shared_s3_server() -> S3Server:
    """The process's one moto server, started on first use on a free 127.0.0.1 port."""
    global _shared
    with _lock:
        if _shared is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
            os.environ.update({k: v for k, v in DUMMY_ENV.items() if k not in os.environ})
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _shared = S3Server(f"http://{host}:{port}", server)
            atexit.register(_shared.stop)
        return _shared


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture() -> Iterator[S3Server]:
    """The shared moto server, with dummy AWS credentials in the environment for the session."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in DUMMY_ENV.items():
            patch.setenv(key, value)
        yield shared_s3_server()
