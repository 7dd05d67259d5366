"""Shared pieces of the CodeBuild and CodeDeploy hooks."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from botocore.exceptions import ClientError

from airflow.providers.common.compat.sdk import AirflowException

WAITERS_DIR = Path(__file__).parents[1] / "waiters"


@contextmanager
def aws_call(operation: str, resource: str):
    """Re-raise an AWS error with the call and the resource it was about, e.g.

    ``StartBuild on project 'webapp-build' failed: AccessDeniedException: ...``
    """
    try:
        yield
    except ClientError as err:
        error = err.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", str(err))
        raise AirflowException(f"{operation} on {resource} failed: {code}: {message}") from err
