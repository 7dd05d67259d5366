"""Shared pieces of the CodeBuild and CodeDeploy hooks, and the error of every AWS call we make."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow.providers.common.compat.sdk import AirflowException
from botocore.exceptions import BotoCoreError, ClientError

WAITERS_DIR = Path(__file__).parents[1] / "waiters"


class AwsCallError(AirflowException):
    """An AWS call failed; the message names the call and the resource it was about, e.g.

    ``StartBuild on project 'webapp-build' failed: AccessDeniedException: ...``

    ``code`` is AWS's error code (None when the call never got an answer, e.g. no connection),
    ``operation`` and ``resource`` what was called on what; the original error is ``__cause__``.
    """

    def __init__(self, operation: str, resource: str, code: str | None, message: str):
        self.operation, self.resource, self.code = operation, resource, code
        super().__init__(f"{operation} on {resource} failed: {message}")

    @property
    def cause(self) -> BaseException | None:
        """The botocore error this one was raised from."""
        return self.__cause__


@contextmanager
def aws_call(operation: str, resource: str) -> Iterator[None]:
    """Re-raise a botocore error of the calls inside as an `AwsCallError` naming `operation` and `resource`."""
    try:
        yield
    except ClientError as err:
        error = err.response.get("Error", {})
        code = error.get("Code", "Unknown")
        raise AwsCallError(operation, resource, code, f"{code}: {error.get('Message', str(err))}") from err
    except BotoCoreError as err:
        raise AwsCallError(operation, resource, None, f"{type(err).__name__}: {err}") from err
