"""The local sandbox: moto on loopback, plus CodeBuild, CodeDeploy, ECS, Step Functions, Elastic Beanstalk and
CloudFormation lifecycles that take time.

    python -m include.sandbox.server --port 5055 [--build-seconds 6] [--deploy-seconds 8] [--stack-seconds 4] [--seed]

A WSGI middleware sits in front of moto's app. Calls whose X-Amz-Target is a
build or deployment lifecycle operation are answered by include.sandbox.codebuild,
include.sandbox.codedeploy and include.sandbox.stepfunctions, Elastic Beanstalk's
query-protocol calls by include.sandbox.elasticbeanstalk, Lambda Invoke of python
functions by include.sandbox.lambda_invoke; ECS services' deployments in moto's answers
come from include.sandbox.ecs_rollout; CloudFormation calls reach moto through
include.sandbox.cloudformation, which holds stack operations in progress; everything
else reaches moto unchanged. Control
endpoints live under /_sandbox/ (health, faults, reset).
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import signal
import socket
import sys
import threading
import uuid

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from moto.server import DomainDispatcherApplication
from werkzeug.serving import make_server

from include.sandbox import (
    cloudformation,
    codebuild,
    codecommit,
    codedeploy,
    ecs_rollout,
    elasticbeanstalk,
    github,
    lambda_invoke,
    stepfunctions,
)
from include.sandbox import events as sandbox_events
from include.sandbox.common import ApiError, backend, now, region_of
from include.sandbox.faults import FaultError, Faults
from include.sandbox.resources import INBOX_QUEUE, REGION, SANDBOX_PORT, SNS_TOPIC_ARN

LOOPBACK = ("127.0.0.1", "localhost")
ALL_INTERFACES = "0.0.0.0"  # only for a container whose port is published; never on a shared host
TARGET_PREFIXES = {
    "CodeBuild_20161006": "codebuild",
    "CodeDeploy_20141006": "codedeploy",
    "AWSStepFunctions": "stepfunctions",
}
EMULATED = {
    "codebuild": codebuild.OPERATIONS,
    "codedeploy": codedeploy.OPERATIONS,
    "stepfunctions": stepfunctions.OPERATIONS,
}
# moto services our ticker writes to; their requests wait for the ticker. Others
# (SQS long polls especially) must not block the lifecycles.
SHARED_SERVICES = {"codebuild", "codedeploy", "logs", "s3", "lambda", "ecs", "states", "elasticbeanstalk"}
TICK_SECONDS = 0.2


class PortInUseError(RuntimeError):
    def __init__(self, host: str, port: int):
        super().__init__(f"port {port} on {host} is already in use; stop what holds it or choose another --port")
        self.port = port


class SandboxApp:
    """WSGI app: our emulation for lifecycle calls, moto for the rest."""

    def __init__(self, build_seconds: float, deploy_seconds: float, stack_seconds: float = 4.0):
        self.lock = threading.RLock()
        self.faults = Faults()
        self.codebuild = codebuild.CodeBuildEmulator(self.faults, build_seconds)
        self.codedeploy = codedeploy.CodeDeployEmulator(self.faults, deploy_seconds)
        # Executions and environment updates take as long as a deployment.
        self.stepfunctions = stepfunctions.StepFunctionsEmulator(deploy_seconds)
        self.elasticbeanstalk = elasticbeanstalk.ElasticBeanstalkEmulator(self.faults, deploy_seconds)
        self.cloudformation = cloudformation.CloudFormationEmulator(self.faults, stack_seconds)
        self.ecs = ecs_rollout.EcsRolloutEmulator(self.faults, deploy_seconds)
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.github = github.GitHubEmulator()
        self.codecommit = codecommit.CodeCommitEmulator()  # repositories' content (moto has none)

    def tick(self) -> None:
        with self.lock:
            at = now()
            self.codebuild.tick(at)
            self.codedeploy.tick(at)
            self.stepfunctions.tick(at)
            self.elasticbeanstalk.tick(at)
            self.cloudformation.tick(at)
            self.ecs.tick(at)

    def __call__(self, environ, start_response):
        if (handled := sandbox_events.intercept(self, environ, start_response)) is not None:
            return handled  # ECR PutImage and the CodeCommit push endpoint emit source change events
        if (handled := self.codecommit.intercept(environ, start_response)) is not None:
            return handled
        if (handled := lambda_invoke.intercept(self, environ, start_response)) is not None:
            return handled  # moto would run the function in Docker
        if environ.get("PATH_INFO", "").startswith(github.PREFIX + "/"):
            return self.github.serve(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/_sandbox/"):
            return self._control(environ, start_response)
        if _signed_service(environ) == "elasticbeanstalk":
            return self._elasticbeanstalk(environ, start_response)
        if _signed_service(environ) == "cloudformation":
            return self.cloudformation.serve(_read_body(environ), environ, start_response, self._moto, self.lock)
        prefix, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if prefix == ecs_rollout.TARGET_PREFIX and operation in ecs_rollout.OPERATIONS:
            return self._ecs(environ, start_response, operation)
        service = TARGET_PREFIXES.get(prefix)
        if service is None:
            if _signed_service(environ) in SHARED_SERVICES:
                with self.lock:
                    return self._moto(environ, start_response)
            return self.moto(environ, start_response)

        body = _read_body(environ)
        region = region_of(environ)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return _reply(start_response, 400, {"__type": "SerializationException", "message": "Invalid JSON"})
        emulator = getattr(self, service)
        try:
            with self.lock:
                if operation in EMULATED[service]:
                    return _reply(start_response, 200, emulator.handle(operation, params, region, _caller(environ)))
                emulator.throttle_check(operation, params)
                if service == "codedeploy" and operation == "GetDeploymentGroup":
                    return self._decorated_group(environ, start_response, region)
                return self._moto(environ, start_response)
        except ApiError as error:
            return _reply(start_response, error.status, {"__type": error.code, "message": error.message})

    def _elasticbeanstalk(self, environ, start_response):
        """Elastic Beanstalk speaks the query protocol: the operation is the form's Action."""
        params = elasticbeanstalk.parse_form(_read_body(environ))
        operation = params.get("Action", "")
        with self.lock:
            if operation not in elasticbeanstalk.OPERATIONS:
                return self._moto(environ, start_response)
            try:
                status, body = 200, self.elasticbeanstalk.handle(operation, params, region_of(environ), now())
            except ApiError as error:
                status, body = error.status, elasticbeanstalk.error_xml(error)
        reason = "OK" if status == 200 else "Bad Request"
        start_response(f"{status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _moto(self, environ, start_response):
        # Drain moto's answer while the caller still holds the lock.
        result = self.moto(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            if hasattr(result, "close"):
                result.close()

    def _ecs(self, environ, start_response, operation: str):
        """moto answers; ECS-controlled services' deployments in the answer are the rollout emulator's."""
        region = region_of(environ)
        try:
            params = json.loads(_read_body(environ) or b"{}")
        except ValueError:
            return _reply(start_response, 400, {"__type": "SerializationException", "message": "Invalid JSON"})
        try:
            with self.lock:
                self.ecs.before(operation, params, region)
                return self._moto_then(
                    environ, start_response, lambda body: self.ecs.after(operation, params, region, body)
                )
        except ApiError as error:
            return _reply(start_response, error.status, {"__type": error.code, "message": error.message})

    def _decorated_group(self, environ, start_response, region: str):
        return self._moto_then(environ, start_response, lambda body: self.codedeploy.decorate_group(body, region))

    def _moto_then(self, environ, start_response, change):
        """moto's answer, its JSON body passed through `change` when it succeeded."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None

        data = self._moto(environ, capture)[0]
        status, headers = captured["status"], captured["headers"]
        if status.startswith("200"):
            data = json.dumps(change(json.loads(data))).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    def _control(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "").rstrip("/")
        if path == "/_sandbox/health" and method == "GET":
            with self.lock:
                return _reply(
                    start_response,
                    200,
                    {
                        "status": "ok",
                        "buildSeconds": self.codebuild.build_seconds,
                        "deploySeconds": self.codedeploy.deploy_seconds,
                        "stackSeconds": self.cloudformation.stack_seconds,
                        "builds": len(self.codebuild.builds),
                        "deployments": len(self.codedeploy.deployments),
                        "runningExecutions": self.stepfunctions.running(),
                        "seeded": _seeded(),
                    },
                )
        if path == "/_sandbox/faults":
            if method == "GET":
                return _reply(start_response, 200, self.faults.snapshot())
            if method == "PUT":
                try:
                    return _reply(start_response, 200, self.faults.update(json.loads(_read_body(environ) or b"{}")))
                except (ValueError, FaultError) as error:
                    return _reply(start_response, 400, {"error": str(error)})
            if method == "DELETE":
                self.faults.clear()
                return _reply(start_response, 200, self.faults.snapshot())
            return _reply(start_response, 405, {"error": "use GET, PUT or DELETE"})
        if path == "/_sandbox/github/push" and method == "POST":
            try:
                request = json.loads(_read_body(environ) or b"{}")
                pushed = self.github.push(
                    request["repository"],
                    request.get("branch", "main"),
                    request.get("files") or {},
                    request.get("message") or "Change",
                    request.get("author") or "Demo Author",
                    request.get("delete"),
                )
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                return _reply(start_response, 400, {"error": f"expected repository, branch, files, message: {error}"})
            return _reply(start_response, 200, pushed)
        if path == "/_sandbox/reset" and method == "POST":
            with self.lock:
                self.codebuild.reset()
                self.codedeploy.reset()
                self.cloudformation.reset()
                self.ecs.reset()
                self.faults.clear()
            return _reply(start_response, 200, {"status": "reset"})
        return _reply(start_response, 404, {"error": f"no sandbox endpoint {method} {path}"})


class Sandbox:
    """A running sandbox: `.url`, `.stop()`; also a context manager."""

    def __init__(self, app: SandboxApp, server, host: str, port: int):
        self.app = app
        self.host = host
        self.port = port
        self._server = server
        self._stopped = threading.Event()
        self._serving = threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True)
        self._ticker = threading.Thread(target=self._tick, name="sandbox-ticker", daemon=True)
        self._serving.start()
        self._ticker.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host == ALL_INTERFACES else self.host
        return f"http://{host}:{self.port}"

    def _tick(self) -> None:
        # Lifecycles move on wall-clock time even when nobody polls.
        while not self._stopped.wait(TICK_SECONDS):
            try:
                self.app.tick()
            except Exception:
                logging.getLogger(__name__).exception("sandbox tick")

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._serving.join(timeout=5)
        self._ticker.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_sandbox(
    host: str = "127.0.0.1",
    port: int = SANDBOX_PORT,
    build_seconds: float = 6.0,
    deploy_seconds: float = 8.0,
    quiet: bool = True,
    stack_seconds: float = 4.0,
) -> Sandbox:
    """Serve the sandbox in background threads of this process; port 0 picks a free port.

    Listens on 127.0.0.1; 0.0.0.0 is accepted for a container. Raises
    PortInUseError at once when the port is taken. moto's state is per process,
    so two sandboxes in one process share it.
    """
    if host not in LOOPBACK + (ALL_INTERFACES,):
        raise ValueError(f"the sandbox listens on 127.0.0.1 (or 0.0.0.0 in a container), not {host!r}")
    host = ALL_INTERFACES if host == ALL_INTERFACES else "127.0.0.1"
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Bind ourselves: werkzeug would sys.exit() on a taken port instead of raising.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from error
        raise
    bound_port = listener.getsockname()[1]
    app = SandboxApp(build_seconds, deploy_seconds, stack_seconds)
    try:
        server = make_server(
            host, bound_port, app, threaded=True, request_handler=MotoRequestHandler, fd=listener.fileno()
        )
    finally:
        listener.close()  # werkzeug works on its own duplicate of the socket
    return Sandbox(app, server, host, bound_port)


def _read_body(environ) -> bytes:
    """Read the request body and put it back for whoever reads next (moto)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _reply(start_response, status: int, payload: dict):
    data = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    if status >= 400 and "__type" in payload:
        headers.append(("x-amzn-ErrorType", payload["__type"]))
    start_response(f"{status} {reason}", headers)
    return [data]


def _seeded() -> bool:
    """Whether the seed has finished: its last step subscribes the inbox queue to the topic."""
    try:
        subscriptions = backend("sns", REGION).subscriptions.values()
        return any(s.topic.arn == SNS_TOPIC_ARN and s.endpoint.endswith(f":{INBOX_QUEUE}") for s in subscriptions)
    except Exception:
        return False


def _signed_service(environ) -> str:
    parts = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[-1].split("/")
    return parts[3] if len(parts) > 3 else ""


def _caller(environ) -> str:
    """Who started a build: the access key of the request, as CodeBuild shows the IAM identity."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    return auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else "anonymous"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.sandbox.server", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="127.0.0.1 (default); 0.0.0.0 only inside a container whose port is published",
    )
    parser.add_argument("--port", type=int, default=SANDBOX_PORT)
    parser.add_argument("--build-seconds", type=float, default=6.0, help="wall-clock length of a build")
    parser.add_argument("--deploy-seconds", type=float, default=8.0, help="wall-clock length of a deployment")
    parser.add_argument(
        "--stack-seconds", type=float, default=4.0, help="wall-clock length of a CloudFormation stack operation"
    )
    parser.add_argument("--seed", action="store_true", help="create the example's resources once started")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    try:
        sandbox = start_sandbox(
            args.host,
            args.port,
            args.build_seconds,
            args.deploy_seconds,
            quiet=not args.verbose,
            stack_seconds=args.stack_seconds,
        )
    except (PortInUseError, ValueError) as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2

    if args.host == ALL_INTERFACES:
        print(
            "sandbox: listening on all interfaces; it has no authentication, use this only in a container",
            file=sys.stderr,
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"sandbox listening on {sandbox.url} (builds {args.build_seconds}s, deployments {args.deploy_seconds}s)",
        flush=True,
    )
    try:
        if args.seed:
            from include.sandbox.seed import seed

            seed(sandbox.url)
            print("sandbox seeded", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
