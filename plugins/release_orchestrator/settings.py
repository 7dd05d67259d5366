"""Every setting of the release orchestrator, in one place, read when it is used (never at import).

A setting ``NAME`` comes from the environment variable ``RELEASE_ORCHESTRATOR_NAME`` or, when that is
not set, from ``AIRFLOW__RELEASE_ORCHESTRATOR__NAME``: what an Airflow configuration option
``[release_orchestrator] name`` becomes as an environment variable (Amazon MWAA, for one, sets Airflow
configuration options but not arbitrary environment variables). Unset or empty: the default. A value
that does not parse is an error naming the variable, the value and what was expected.

docs/settings.md is the table of them all (``python -m release_orchestrator settings`` prints it;
a test keeps the two in sync).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "RELEASE_ORCHESTRATOR_"
AIRFLOW_PREFIX = "AIRFLOW__RELEASE_ORCHESTRATOR__"


class SettingError(ValueError):
    """A setting's value cannot be used."""


def _number(
    kind: Callable[[str], Any], minimum: float, what: str, maximum: float | None = None
) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(what)
        return value

    parse.__doc__ = what
    return parse


def _text(raw: str) -> str:
    """a string"""
    return raw


@dataclass(frozen=True)
class Setting:
    name: str  # e.g. POLL_INTERVAL
    default: Any
    parse: Callable[[str], Any]  # its docstring says what it expects
    description: str

    @property
    def env(self) -> str:
        return PREFIX + self.name

    @property
    def airflow_env(self) -> str:
        return AIRFLOW_PREFIX + self.name

    def get(self) -> Any:
        for variable in (self.env, self.airflow_env):
            raw = os.environ.get(variable, "").strip()
            if raw:
                try:
                    return self.parse(raw)
                except ValueError:
                    raise SettingError(f"{variable}={raw!r}: expected {self.parse.__doc__}") from None
        return self.default


PIPELINES_DIR = Setting(
    "PIPELINES_DIR",
    None,
    _text,
    "directories of pipeline specs, separated by `" + os.pathsep + "`; default: `include/pipelines` next to "
    "the `plugins/` folder the package is loaded from, else `$AIRFLOW_HOME/include/pipelines` "
    "(the layout of Astro projects and of the official image)",
)
ARTIFACT_STORE = Setting(
    "ARTIFACT_STORE",
    None,
    _text,
    "`s3://bucket/prefix` where runs keep the artifacts their actions pass, for pipelines whose spec sets "
    "no `artifact_store` (docs/pipeline-spec.md, Artifacts); default: none, such a pipeline may pass no "
    "artifacts",
)
POLL_INTERVAL = Setting(
    "POLL_INTERVAL",
    None,
    _number(float, 0.1, "a number of seconds, at least 0.1"),
    "seconds between two polls of waiting builds and deployments, and between a waiting approval's "
    "looks for a newer run; default: the operators' own (30 s builds, 15 s deployments, 30 s "
    "approvals); the local environment uses 1",
)
PARALLEL_RUNS = Setting(
    "PARALLEL_RUNS",
    16,
    _number(int, 1, "a whole number, at least 1"),
    "most runs of a PARALLEL or SUPERSEDED pipeline at once (the DAG's `max_active_runs`)",
)
EVENTS_QUEUE = Setting(
    "EVENTS_QUEUE",
    "release-source-events",
    _text,
    "default SQS queue that S3, ECR and CodeCommit change events are routed to (docs/triggers.md)",
)
EVENTS_WAIT_SECONDS = Setting(
    "EVENTS_WAIT_SECONDS",
    10,
    _number(int, 0, "a whole number of seconds, 0 to 20", maximum=20),
    "long-poll wait of each ReceiveMessage on the events queue",
)
EVENTS_VISIBILITY_TIMEOUT = Setting(
    "EVENTS_VISIBILITY_TIMEOUT",
    330,
    _number(int, 0, "a whole number of seconds"),
    "seconds a received event stays invisible to other triggerers before it is delivered again",
)
EVENTS_STARTUP_DELAY = Setting(
    "EVENTS_STARTUP_DELAY",
    2.0,
    _number(float, 0, "a number of seconds"),
    "seconds the events trigger waits after starting before its first receive",
)
APPROVAL_TIMEOUT_MIN_SECONDS = Setting(
    "APPROVAL_TIMEOUT_MIN_SECONDS",
    300,
    _number(int, 1, "a whole number of seconds, at least 1"),
    "shortest approval `timeout` a spec may set (CodePipeline's own, 5 minutes, by default); lower it only "
    "where approvals are tested, so a timeout can run out in seconds",
)
WEBHOOK_RETENTION_DAYS = Setting(
    "WEBHOOK_RETENTION_DAYS",
    30.0,
    _number(float, 0, "a number of days"),
    "days a webhook delivery id is remembered, so a replay within them starts nothing",
)
WEBHOOK_MAX_BODY_BYTES = Setting(
    "WEBHOOK_MAX_BODY_BYTES",
    25 * 1024 * 1024,
    _number(int, 1, "a whole number of bytes, at least 1"),
    "largest webhook body the receiver reads (GitHub's own cap on payloads, 25 MB, by default); a larger one "
    "is refused with 413, by its Content-Length before reading, else as soon as the bytes read pass it",
)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(parse.__doc__)
        return raw

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


WEBHOOK_STARTER = Setting(
    "WEBHOOK_STARTER",
    "api-server",
    _choice("api-server", "separate"),
    "where the runs of accepted webhook deliveries are created: `api-server`, a thread in each api-server "
    "process; `separate`, the api-server only records deliveries and `python -m "
    "release_orchestrator.webhooks.starter` creates the runs (the production setting: run creation does not "
    "slow the answers down)",
)
WEBHOOK_SECRET_CACHE_SECONDS = Setting(
    "WEBHOOK_SECRET_CACHE_SECONDS",
    10.0,
    _number(float, 0, "a number of seconds"),
    "seconds the webhook receiver reuses a secret it looked up (0: look up on every delivery); a delivery the "
    "reused secrets refuse is checked again with fresh lookups, so a secret just set works at once, and a "
    "replaced one stops working within this time",
)

SETTINGS = (
    PIPELINES_DIR,
    ARTIFACT_STORE,
    POLL_INTERVAL,
    PARALLEL_RUNS,
    EVENTS_QUEUE,
    EVENTS_WAIT_SECONDS,
    EVENTS_VISIBILITY_TIMEOUT,
    EVENTS_STARTUP_DELAY,
    APPROVAL_TIMEOUT_MIN_SECONDS,
    WEBHOOK_RETENTION_DAYS,
    WEBHOOK_MAX_BODY_BYTES,
    WEBHOOK_SECRET_CACHE_SECONDS,
    WEBHOOK_STARTER,
)


def default_pipelines_dir() -> Path:
    package_parent = Path(__file__).resolve().parents[1]
    if package_parent.name == "plugins":  # loaded from a project's plugins/ folder
        return package_parent.parent / "include" / "pipelines"
    airflow_home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(airflow_home) / "include" / "pipelines"


def pipelines_dirs() -> list[str]:
    """The spec directories: PIPELINES_DIR's entries, or the default one."""
    configured = PIPELINES_DIR.get()
    if configured:
        return [part for part in configured.split(os.pathsep) if part]
    return [str(default_pipelines_dir())]


def markdown_table() -> str:
    rows = ["| environment variable | default | expects | what it sets |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = "" if setting.default is None else f"`{setting.default}`"
        rows.append(f"| `{setting.env}` | {default} | {setting.parse.__doc__} | {setting.description} |")
    return "\n".join(rows)
