"""Small helpers shared by the sandbox emulators."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from moto.backends import get_backend

from include.sandbox.resources import ACCOUNT_ID, REGION


class ApiError(Exception):
    """An AWS-style error answered as `{"__type": code, "message": ...}`."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def client(service: str, endpoint_url: str, region: str = REGION):
    """A boto3 client of the sandbox at `endpoint_url`, with its test credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard"}),
    )


def throttled() -> ApiError:
    return ApiError("ThrottlingException", "Rate exceeded")


def region_of(environ: dict) -> str:
    """The region the request was signed for (SigV4 credential scope)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", auth)
    return match.group(1) if match else REGION


def backend(service: str, region: str):
    """moto's in-process backend; the server shares the process with it."""
    return get_backend(service)[ACCOUNT_ID][region]


def ts(seconds: float) -> float:
    """Timestamps travel as epoch seconds in the JSON protocols."""
    return round(seconds, 3)


def log_clock(seconds: float) -> str:
    """CodeBuild's agent prefix format: 2024/05/01 10:00:00.123456."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y/%m/%d %H:%M:%S.%f")


def now() -> float:
    return time.time()
