"""Client for the sandbox's control endpoints (/_sandbox/...). Standard library only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class SandboxError(RuntimeError):
    pass


class SandboxClient:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise SandboxError(
                f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}"
            ) from error

    def health(self) -> dict:
        return self._call("GET", "/_sandbox/health")

    def wait_ready(self, timeout: float = 30.0) -> dict:
        """Poll the health endpoint until it answers; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (OSError, SandboxError) as error:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"sandbox at {self.url} not ready after {timeout}s: {error}") from error
                time.sleep(0.2)

    def faults(self) -> dict:
        return self._call("GET", "/_sandbox/faults")

    def set_faults(self, document: dict) -> dict:
        """Merge a whole fault document, e.g. {"codebuild": {"webapp-build": {"mode": "fail"}}}."""
        return self._call("PUT", "/_sandbox/faults", document)

    def set_fault(self, service: str, target: str, mode: str, **options) -> dict:
        """set_fault("codebuild", "webapp-build", "fail");
        set_fault("codedeploy", "webapp-ecs/production", "throttle", rate=0.5)."""
        return self.set_faults({service: {target: {"mode": mode, **options}}})

    def clear_fault(self, service: str, target: str) -> dict:
        return self.set_faults({service: {target: None}})

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/_sandbox/faults")

    def reset(self, moto: bool = False) -> None:
        """Forget builds, deployments and faults; with moto=True also every emulated AWS resource."""
        self._call("POST", "/_sandbox/reset")
        if moto:
            self._call("POST", "/moto-api/reset")
