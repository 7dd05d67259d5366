"""Invoke actions: ``invoke.lambda``, a synchronous invoke of a Lambda function.

The function gets a CodePipeline-shaped job event and returns its result instead of calling
PutJobSuccessResult / PutJobFailureResult. The call holds the worker slot until the function returns (at
most its own timeout, 15 minutes at AWS). See docs/operators.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import ArtifactLocation, PassesArtifacts
from release_orchestrator.hooks.base import aws_call
from release_orchestrator.links import LambdaFunctionLink
from release_orchestrator.operators.reattach import stable_token

if TYPE_CHECKING:
    from airflow.sdk import Context

OUTPUTS = ("FunctionName", "ExecutedVersion", "StatusCode")
# Longer than the longest function timeout AWS allows (900 s): botocore's 60 s default would give up on a
# function that is still running. No retries: a retried Invoke after a read timeout would run it twice.
INVOKE_BOTOCORE_CONFIG = {"read_timeout": 910, "retries": {"total_max_attempts": 1}}


class LambdaFunctionFailed(AirflowException):
    """The function raised (FunctionError) or returned a failure."""


def job_event(
    job_id: str, function_name: str, user_parameters: str | None, inputs: list[ArtifactLocation] | None = None
) -> dict[str, Any]:
    """The event a CodePipeline Lambda action hands its function: its input artifacts' S3 locations (in the
    function's region), no output artifacts and no credentials (the function reads them with its own role)."""
    configuration = {"FunctionName": function_name}
    if user_parameters is not None:
        configuration["UserParameters"] = user_parameters
    return {
        "CodePipeline.job": {
            "id": job_id,
            "data": {
                "actionConfiguration": {"configuration": configuration},
                "inputArtifacts": [
                    {
                        "name": where.name,
                        "revision": where.version_id,
                        "location": {"type": "S3", "s3Location": {"bucketName": where.bucket, "objectKey": where.key}},
                    }
                    for where in inputs or []
                ],
                "outputArtifacts": [],
            },
        }
    }


def function_result(function_name: str, response: dict[str, Any], payload: bytes) -> dict[str, str]:
    """The output variables the function returned; LambdaFunctionFailed when it raised or reported a failure."""
    text = payload.decode("utf-8", "replace")
    try:
        result = json.loads(text) if text.strip() else None
    except ValueError:
        result = text
    if response.get("FunctionError"):
        if isinstance(result, dict):
            message = f"{result.get('errorType', response['FunctionError'])}: {result.get('errorMessage', '')}"
        else:
            message = f"{response['FunctionError']}: {text[:1000]}"
        raise LambdaFunctionFailed(f"Invoke of function '{function_name}' failed: {message.rstrip(': ')}")
    if not isinstance(result, dict):
        return {}
    if str(result.get("status", "")).lower() == "failed":
        raise LambdaFunctionFailed(
            f"Function '{function_name}' reported a failure: {result.get('message') or '(no message)'}"
        )
    variables = result.get("outputVariables")
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise LambdaFunctionFailed(
            f"Function '{function_name}' returned outputVariables as {type(variables).__name__}, "
            "expected a mapping name -> string"
        )
    out = {}
    for name, value in variables.items():
        if name in OUTPUTS:
            raise LambdaFunctionFailed(
                f"Function '{function_name}' returned output variable {name!r}, which the action sets itself "
                f"({', '.join(OUTPUTS)}): rename it"
            )
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise LambdaFunctionFailed(
                f"Function '{function_name}' returned output variable {name!r} as {type(value).__name__}, "
                "expected a string"
            )
        out[str(name)] = value
    return out


class LambdaInvokeOperator(PassesArtifacts, AwsBaseOperator[LambdaHook]):
    """Invoke a Lambda function and wait for its answer (action type ``invoke.lambda``).

    :param function_name: name, ARN, or ``name:alias`` / ``name:version``.
    :param user_parameters: text handed to the function as the job's UserParameters (a mapping is sent as
        its JSON text).

    The connection arguments are the amazon provider's; ``botocore_config`` defaults to a read timeout
    longer than any function's and no retries (a retried Invoke would run the function twice).
    """

    aws_hook_class = LambdaHook
    template_fields: Sequence[str] = aws_template_fields("function_name", "user_parameters")
    template_fields_renderers = {"user_parameters": "json"}
    ui_color = "#fdf0e0"
    operator_extra_links = (LambdaFunctionLink(),)

    def __init__(
        self,
        *,
        function_name: str,
        user_parameters: str | dict[str, Any] | None = None,
        botocore_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(botocore_config={**INVOKE_BOTOCORE_CONFIG, **(botocore_config or {})}, **kwargs)
        self.function_name = function_name
        self.user_parameters = user_parameters
        self._invoking = False

    def user_parameters_text(self) -> str | None:
        if self.user_parameters is None or isinstance(self.user_parameters, str):
            return self.user_parameters
        return json.dumps(self.user_parameters)

    def job_id(self, context: Context) -> str:
        """A UUID that stays the same for this task try (a retry gets another)."""
        ti = context["ti"]
        return str(uuid.UUID(stable_token(context, "invoke.lambda", getattr(ti, "try_number", 1))[:32]))

    def execute(self, context: Context) -> dict[str, Any]:
        function = str(self.function_name)
        inputs = [self.input_artifact(context, name) for name in self.input_names]
        event = job_event(self.job_id(context), function, self.user_parameters_text(), inputs)
        self.log.info("Invoking function %s (job %s)", function, event["CodePipeline.job"]["id"])
        LambdaFunctionLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            function_name=function,
        )
        self._invoking = True
        try:
            with aws_call("Invoke", f"function '{function}'"):
                response = self.hook.invoke_lambda(
                    function_name=function,
                    invocation_type="RequestResponse",
                    log_type="Tail",
                    payload=json.dumps(event),
                )
                payload = response["Payload"].read()
        finally:
            self._invoking = False
        self._log_tail(response.get("LogResult"))
        variables = function_result(function, response, payload)
        outputs = {
            "FunctionName": function,
            "ExecutedVersion": response.get("ExecutedVersion", ""),
            "StatusCode": str(response.get("StatusCode", "")),
            **variables,
        }
        self.log.info(
            "Function %s (version %s) returned %d output variable(s)",
            function,
            outputs["ExecutedVersion"],
            len(variables),
        )
        return outputs

    def _log_tail(self, log_result: str | None) -> None:
        if not log_result:
            return
        try:
            lines = self.hook.encode_log_result(log_result, keep_empty_lines=False) or []
        except ValueError:
            return
        self.log.info("Last 4 KB of the function's log:")
        for line in lines:
            self.log.info("  %s", line)

    def on_kill(self) -> None:
        # Lambda has no call to stop a running invocation: only the wait ends here.
        if self._invoking:
            self.log.warning(
                "Task killed while function %s runs: abandoning the wait for its response; the invocation "
                "keeps running at AWS until it returns or reaches its own timeout",
                self.function_name,
            )
