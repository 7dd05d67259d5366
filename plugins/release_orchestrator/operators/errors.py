"""AWS errors that name the call and the resource, so a failed task says what it was doing."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from botocore.exceptions import BotoCoreError, ClientError


class AwsCallError(RuntimeError):
    def __init__(self, call: str, resource: str, cause: Exception):
        self.call, self.resource, self.cause = call, resource, cause
        if isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            detail = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
        else:
            detail = f"{type(cause).__name__}: {cause}"
        super().__init__(f"{call} on {resource} failed: {detail}")


@contextmanager
def aws_call(call: str, resource: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise AwsCallError(call, resource, err) from err
