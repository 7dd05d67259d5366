"""One seeded sandbox per test session, on a free loopback port, with short lifecycles.

It runs in a process of its own, as users run it: moto's state is per process, and every unit test's
`mock_aws()` resets moto in the test process, which would wipe what the sandbox seeded whenever a unit
test ran between two sandbox tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from include.localenv.environment import free_port
from include.sandbox import resources as r
from include.sandbox.client import SandboxClient

ROOT = Path(__file__).resolve().parents[2]

BUILD_SECONDS = 2.0
DEPLOY_SECONDS = 2.0


@dataclass(frozen=True)
class RunningSandbox:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    command = [sys.executable, "-m", "include.sandbox.server", "--port", str(port), "--seed"]
    command += ["--build-seconds", str(BUILD_SECONDS), "--deploy-seconds", str(DEPLOY_SECONDS)]
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"}
    with log.open("wb") as output:  # a file, not a pipe nobody drains
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    running = RunningSandbox(port)
    try:
        deadline = time.monotonic() + 120
        while not SandboxClient(running.url).wait_ready(timeout=120).get("seeded"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the sandbox did not start and seed; its output:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


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


@pytest.fixture
def airflow_aws(sandbox, monkeypatch):
    """The id of an Airflow AWS connection on the sandbox (as an AIRFLOW_CONN_ variable), for operators and triggers."""
    extra = {"endpoint_url": sandbox.url, "region_name": r.REGION}
    value = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})
    monkeypatch.setenv("AIRFLOW_CONN_SANDBOX_AWS", value)
    return "sandbox_aws"


@pytest.fixture
def task_xcoms(monkeypatch):
    """What triggers write as XCom of their task instance: {(item id, key): value}; a fresh poller registry."""
    from release_orchestrator.triggers import poller

    poller.reset_pollers()
    written: dict = {}
    monkeypatch.setattr(
        "release_orchestrator.triggers.base.BatchPolledTrigger.write_xcom",
        lambda self, key, value: written.__setitem__((self.item_id, key), value),
    )
    return written
