"""Lambda `Invoke` of python functions: moto would run the code in Docker, which is not here.

The function's code zip comes from moto's backend; its handler runs in a subprocess of this Python, in a
scratch folder holding the unzipped code, with the function's environment variables and Timeout. The answer
has Lambda's shape:

- 200, the handler's return value as JSON, `X-Amz-Executed-Version`;
- when the handler raises: 200 with `X-Amz-Function-Error: Unhandled` and `{errorMessage, errorType,
  stackTrace}`; past the Timeout: the same with errorType `Sandbox.Timedout`;
- with `X-Amz-Log-Type: Tail`, the last 4 KB of the log (START, what the handler printed, END, REPORT),
  base64, in `X-Amz-Log-Result`;
- unknown function or qualifier: moto's 404 ResourceNotFoundException; a non-python runtime:
  502 InvalidRuntimeException.

`Event` invocations answer 202 and run in a background thread (their result goes nowhere: no
destinations, no retries); `DryRun` answers 204 once the function is found.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from urllib.parse import parse_qs, unquote

from moto.core.exceptions import JsonRESTError

from include.sandbox.common import backend, region_of

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
LOG_TAIL_BYTES = 4096

# Runs in the subprocess: argv = handler ("module.function"), result file, function name, version, ARN,
# memory, timeout (s), request id. The event comes on stdin; what the handler prints goes to the log.
RUNNER = r"""
import importlib, json, sys, time, traceback
handler, result_path, name, version, arn, memory, timeout, request_id = sys.argv[1:9]
deadline = time.monotonic() + float(timeout)

class Context:
    function_name, function_version, invoked_function_arn = name, version, arn
    memory_limit_in_mb, aws_request_id = int(memory), request_id
    log_group_name, log_stream_name = "/aws/lambda/" + name, "sandbox/[" + version + "]" + request_id
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.monotonic()) * 1000))

def error(exc, error_type=None):
    # The frames of the function's code: the first one is this runner's.
    stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
    return {"errorMessage": str(exc), "errorType": error_type or type(exc).__name__, "stackTrace": stack}

try:
    module_name, _, function_name = handler.rpartition(".")  # "module.func" or "folder/module.func"
    result, failed = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)(json.load(sys.stdin), Context()), False
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        marshal = {"errorMessage": "Unable to marshal response: " + str(exc), "errorType": "Runtime.MarshalError"}
        text, failed = json.dumps({**marshal, "stackTrace": []}), True
except Exception as exc:
    failure = error(exc)
    print("[ERROR] " + failure["errorType"] + ": " + failure["errorMessage"], "Traceback (most recent call last):",
          *failure["stackTrace"], sep="\n", flush=True)
    text, failed = json.dumps(failure), True
with open(result_path, "w") as out:
    json.dump({"failed": failed, "payload": text}, out)
"""


def intercept(app, environ, start_response):
    """Answer an Invoke; None for every other request (moto answers it)."""
    match = INVOKE_PATH.match(environ.get("PATH_INFO", ""))
    if not match or environ.get("REQUEST_METHOD") != "POST":
        return None
    invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
    if invocation_type not in INVOCATION_TYPES:
        return None
    name = unquote(match["name"])
    qualifier = (parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier") or [None])[0]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        event = json.loads(body or b"{}")
    except ValueError:
        return _error(start_response, 400, "InvalidRequestContentException", "Could not parse request body into json")
    try:
        with app.lock:  # moto's state is shared with the ticker; the run itself happens outside the lock
            function = _function(backend("lambda", region_of(environ)), name, qualifier)
    except JsonRESTError as err:
        return _error(start_response, err.code, err.error_type, err.message)
    if not str(function["runtime"] or "").startswith("python"):
        return _error(
            start_response,
            502,
            "InvalidRuntimeException",
            f"The sandbox runs python functions only; {function['name']} has runtime {function['runtime']}",
        )
    if invocation_type == "DryRun":  # only checks that the function can be invoked
        start_response("204 No Content", [("Content-Length", "0"), ("x-amzn-RequestId", function["request_id"])])
        return [b""]
    if invocation_type == "Event":  # queued: runs in the background, its result goes nowhere
        threading.Thread(target=run, args=(function, event), name="sandbox-lambda-event", daemon=True).start()
        start_response("202 Accepted", [("Content-Length", "0"), ("x-amzn-RequestId", function["request_id"])])
        return [b""]
    failed, payload, log = run(function, event)
    headers = [
        ("Content-Type", "application/json"),
        ("X-Amz-Executed-Version", function["version"]),
        ("x-amzn-RequestId", function["request_id"]),
    ]
    if failed:
        headers.append(("X-Amz-Function-Error", "Unhandled"))
    if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail":
        tail = log.encode()[-LOG_TAIL_BYTES:]
        headers.append(("X-Amz-Log-Result", base64.b64encode(tail).decode()))
    data = payload.encode()
    headers.append(("Content-Length", str(len(data))))
    start_response("200 OK", headers)
    return [data]


def _function(lambda_backend, name: str, qualifier: str | None) -> dict:
    """What a run needs of moto's function (read under the lock, used without it)."""
    fn = lambda_backend.get_function(name, qualifier)
    return {
        "name": fn.function_name,
        "arn": fn.function_arn,
        "version": str(fn.version),
        "runtime": fn.run_time,
        "handler": fn.handler,
        "timeout": float(fn.timeout),
        "memory": int(fn.memory_size),
        "environment": dict(fn.environment_vars or {}),
        "region": fn.region,
        "code": fn.code_bytes,
        "request_id": str(uuid.uuid4()),
    }


def run(function: dict, event) -> tuple[bool, str, str]:
    """(failed, payload JSON, log) of one invocation of `function` with `event`."""
    request_id = function["request_id"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sandbox-lambda-") as folder:
        zipfile.ZipFile(io.BytesIO(function["code"])).extractall(os.path.join(folder, "task"))
        result_path = os.path.join(folder, "result.json")
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.path.join(folder, "task"),
            "AWS_REGION": function["region"],
            "AWS_DEFAULT_REGION": function["region"],
            "AWS_LAMBDA_FUNCTION_NAME": function["name"],
            "AWS_LAMBDA_FUNCTION_VERSION": function["version"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["memory"]),
            "_HANDLER": function["handler"],
            **function["environment"],
        }
        command = [sys.executable, "-c", RUNNER, function["handler"], result_path, function["name"]]
        command += [function["version"], function["arn"], str(function["memory"]), str(function["timeout"]), request_id]
        try:
            done = subprocess.run(
                command,
                input=json.dumps(event).encode(),
                capture_output=True,
                cwd=os.path.join(folder, "task"),
                env=environment,
                timeout=function["timeout"],
            )
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            if os.path.exists(result_path):
                with open(result_path) as result_file:
                    result = json.load(result_file)
                failed, payload = result["failed"], result["payload"]
            else:  # the process died before writing a result (sys.exit, a crash)
                failed = True
                payload = json.dumps(
                    {
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status "
                        f"{done.returncode}",
                        "errorType": "Runtime.ExitError",
                    }
                )
        except subprocess.TimeoutExpired as expired:
            output = ((expired.stdout or b"") + (expired.stderr or b"")).decode("utf-8", "replace")
            failed = True
            message = f"RequestId: {request_id} Error: Task timed out after {function['timeout']:.2f} seconds"
            payload = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message})
            output += f"{message}\n"
    duration = (time.monotonic() - started) * 1000
    log = (
        f"START RequestId: {request_id} Version: {function['version']}\n{output}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: {int(duration) + 1} ms\t"
        f"Memory Size: {function['memory']} MB\n"
    )
    return failed, payload, log


def _error(start_response, status: int, code: str, message: str):
    data = json.dumps({"Type": "User", "message": message}).encode()
    reason = {400: "Bad Request", 404: "Not Found", 502: "Bad Gateway"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]
