"""One seeded sandbox per test session, on a free loopback port, with short lifecycles."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config

from include.sandbox import resources as r
from include.sandbox.client import SandboxClient
from include.sandbox.seed import seed
from include.sandbox.server import start_sandbox

BUILD_SECONDS = 2.0
DEPLOY_SECONDS = 2.0


@pytest.fixture(scope="session")
def sandbox():
    with start_sandbox(port=0, build_seconds=BUILD_SECONDS, deploy_seconds=DEPLOY_SECONDS) as running:
        seed(running.url)
        yield running


@pytest.fixture(scope="session")
def build_seconds() -> float:
    return BUILD_SECONDS


@pytest.fixture(scope="session")
def deploy_seconds() -> float:
    return DEPLOY_SECONDS


@pytest.fixture(scope="session")
def control(sandbox) -> SandboxClient:
    return SandboxClient(sandbox.url)


@pytest.fixture
def aws(sandbox, control):
    """aws("codebuild", region=..., retry=False): boto3 clients on the sandbox; faults cleared afterwards."""

    def make(service: str, region: str = r.REGION, retry: bool = True):
        # Without retries a throttled call surfaces instead of being retried away by botocore.
        retries = {"mode": "standard"} if retry else {"total_max_attempts": 1}
        return boto3.client(
            service,
            endpoint_url=sandbox.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries=retries),
        )

    yield make
    control.clear_faults()


@pytest.fixture(scope="session")
def wait_until():
    def wait(read, done, timeout: float = 15.0, interval: float = 0.2):
        """Call read() until done(value); returns the value, fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = read()
            if done(value):
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout}s; last value: {value!r}")
            time.sleep(interval)

    return wait
