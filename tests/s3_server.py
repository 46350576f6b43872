"""A real S3 server for the tests: moto's server mode on 127.0.0.1, started by the tests
themselves (nothing outside the machine), with the standard AWS variables pointing at it."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from unittest import mock

BUCKET = "metaft-tests"
SECRET = "metaft-secret-that-must-never-be-written"  # any key works against moto; this one is searched for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3:
    endpoint: str
    bucket: str
    env: dict

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key=SECRET, region_name="us-east-1")

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextlib.contextmanager
def s3_server():
    """Start the server, create the bucket, export the AWS variables; stop it after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request in the test output
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        with mock.patch.dict(os.environ, env):
            s3 = S3(endpoint, BUCKET, env)
            s3.client().create_bucket(Bucket=BUCKET)
            yield s3
    finally:
        server.stop()


@contextlib.contextmanager
def credentials_checked():
    """While inside, the server checks every request's credentials (moto's IAM mode); the tests'
    made-up keys are then rejected as a real S3 would reject wrong ones."""
    from moto import settings

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before
