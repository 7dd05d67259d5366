"""Fault injection: which CodeBuild projects, CodeDeploy groups, ECS services, Elastic Beanstalk environments and
stacks misbehave, and how.

Document shape (GET/PUT /_sandbox/faults):
    {"codebuild":  {"<project>": {"mode": "fail" | "hang" | "throttle" | "fail-tests" | "slow",
                                  "rate": 0.5, "seconds": 60, "times": 2}},
     "codedeploy": {"<application>/<group>" or "<application>": {"mode": ..., "event": "AfterInstall"}},
     "ecs":        {"<cluster>/<service>" or "<cluster>": {"mode": "fail" | "hang"}},
     "elasticbeanstalk": {"<application>/<environment>" or "<application>": {"mode": "fail" | "rollback" | "hang"}},
     "cloudformation": {"<stack name>": {"mode": "fail" | "hang"}}}
A PUT merges into what is set; `"mode": null` (or "none") removes one entry. A CodeBuild fault with `"times": n`
(not throttle) applies to the project's next n builds, then goes away (a build that fails, then passes on a retry).
"""

from __future__ import annotations

import math
import threading
from collections import Counter

MODES = {
    "codebuild": {"fail", "hang", "throttle", "fail-tests", "slow"},
    "codedeploy": {"fail", "hang", "throttle"},
    "ecs": {"fail", "hang"},
    "elasticbeanstalk": {"fail", "rollback", "hang"},
    "cloudformation": {"fail", "hang"},
}


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, dict]] = {service: {} for service in MODES}
        self._calls: Counter = Counter()

    def snapshot(self) -> dict:
        with self._lock:
            return {service: {k: dict(v) for k, v in entries.items()} for service, entries in self._faults.items()}

    def update(self, doc: dict) -> dict:
        # Validate everything first so a bad document changes nothing.
        if not isinstance(doc, dict):
            raise FaultError("expected a JSON object")
        changes = []
        for service, entries in doc.items():
            if service not in MODES:
                raise FaultError(f"unknown service {service!r}; use {', '.join(MODES)}")
            if not isinstance(entries, dict):
                raise FaultError(f"{service}: expected an object of targets")
            for target, spec in entries.items():
                changes.append((service, target, _validated(service, target, spec)))
        with self._lock:
            for service, target, spec in changes:
                self._calls.pop((service, target), None)
                if spec is None:
                    self._faults[service].pop(target, None)
                else:
                    self._faults[service][target] = spec
        return self.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._faults = {service: {} for service in MODES}
            self._calls.clear()

    def for_project(self, project: str) -> dict | None:
        """The fault of a build of `project` starting now (one of its `times`, if counted)."""
        with self._lock:
            spec = self._faults["codebuild"].get(project)
            if spec and "times" in spec:
                spec["times"] -= 1
                if spec["times"] <= 0:
                    del self._faults["codebuild"][project]
            return spec

    def for_group(self, application: str, group: str | None) -> dict | None:
        # The group-specific entry wins over an application-wide one.
        with self._lock:
            entries = self._faults["codedeploy"]
            return entries.get(f"{application}/{group}") or entries.get(application)

    def for_environment(self, application: str, environment: str) -> dict | None:
        # The environment-specific entry wins over an application-wide one.
        with self._lock:
            entries = self._faults["elasticbeanstalk"]
            return entries.get(f"{application}/{environment}") or entries.get(application)

    def for_stack(self, stack_name: str) -> dict | None:
        with self._lock:
            return self._faults["cloudformation"].get(stack_name)

    def for_ecs_service(self, cluster: str, service: str) -> dict | None:
        # The service-specific entry wins over a cluster-wide one.
        with self._lock:
            entries = self._faults["ecs"]
            return entries.get(f"{cluster}/{service}") or entries.get(cluster)

    def should_throttle(self, service: str, targets: list[str]) -> bool:
        """Count one API call against each throttled target; True when it must be refused.

        Deterministic: with rate r, call n is refused when floor(n*r) steps up,
        so rate 0.5 refuses every second call and the first call always passes.
        """
        refuse = False
        with self._lock:
            for target in dict.fromkeys(targets):
                spec = self._faults[service].get(target)
                if not spec or spec["mode"] != "throttle":
                    continue
                self._calls[(service, target)] += 1
                n, rate = self._calls[(service, target)], spec["rate"]
                if math.floor(n * rate) > math.floor((n - 1) * rate):
                    refuse = True
        return refuse


def _validated(service: str, target: str, spec) -> dict | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise FaultError(f'{service}/{target}: expected an object like {{"mode": "fail"}}')
    mode = spec.get("mode")
    if mode in (None, "none"):
        return None
    if mode not in MODES[service]:
        raise FaultError(f"{service}/{target}: mode must be one of {sorted(MODES[service])}")
    result = {"mode": mode}
    if mode == "throttle":
        rate = spec.get("rate", 0.5)
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise FaultError(f"{service}/{target}: rate must be a number in (0, 1]")
        result["rate"] = float(rate)
    if mode == "slow":
        result["seconds"] = _seconds(service, target, "seconds", spec.get("seconds", 60))
    if mode == "hang" and service == "codebuild" and "timeout_seconds" in spec:
        # Tests: the hung build times out after this many seconds instead of its timeoutInMinutes.
        result["timeout_seconds"] = _seconds(service, target, "timeout_seconds", spec["timeout_seconds"])
    if "times" in spec:
        times = spec["times"]
        if service != "codebuild" or mode == "throttle":
            raise FaultError(f"{service}/{target}: times counts CodeBuild builds (not throttled calls)")
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 100:
            raise FaultError(f"{service}/{target}: times must be a whole number from 1 to 100")
        result["times"] = times
    if service == "codedeploy" and spec.get("event"):
        result["event"] = str(spec["event"])
    return result


def _seconds(service: str, target: str, key: str, seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise FaultError(f"{service}/{target}: {key} must be a number in (0, 3600]")
    return float(seconds)
