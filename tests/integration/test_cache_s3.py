"""s3:// through kserve-storage against a local S3-compatible server (moto)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness.process import PredictorProcess, free_port

from .cache_helpers import (
    MODEL_FILE,
    assert_serves_a_cache_hit,
    entry_files,
    kzero_cache,
    model_data,
    sha256,
)

pytestmark = pytest.mark.integration

BUCKET = "models"
KEY = f"smollm2/{MODEL_FILE}"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    # The test extra's moto[server] installs it next to this interpreter.
    moto_server = Path(sys.executable).with_name("moto_server")
    if not moto_server.exists():
        pytest.skip("moto_server not found: pip install 'moto[server]' (in the test extra)")
    port = free_port()
    process = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint)
        _upload(endpoint, model_data())
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(endpoint: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(endpoint, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("moto_server did not start")


def _upload(endpoint: str, data: bytes) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def test_s3_uri_is_warmed_then_served_from_the_cache(s3_endpoint: str, tmp_path: Path):
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    uri = f"s3://{BUCKET}/{KEY}"
    warm = kzero_cache(tmp_path, "warm", uri, env=env)
    assert warm.returncode == 0, warm.stderr
    assert [sha256(p.read_bytes()) for p in entry_files(tmp_path)] == [sha256(model_data())]

    # No endpoint this time: a hit must not touch S3 at all.
    assert_serves_a_cache_hit(
        PredictorProcess(["--model", uri, "--cache-dir", str(tmp_path)], env=CREDENTIALS)
    )


def test_a_missing_s3_object_is_a_clear_error(s3_endpoint: str, tmp_path: Path):
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    warm = kzero_cache(tmp_path, "warm", f"s3://{BUCKET}/nothing/here.gguf", env=env)
    assert warm.returncode == 1
    assert "download of s3://models/nothing/here.gguf failed" in warm.stderr
