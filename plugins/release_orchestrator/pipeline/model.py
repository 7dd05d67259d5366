"""The pipeline model: what a YAML spec or the Python API describes, and what the compiler reads.

Kept free of Airflow imports so that loading and validating specs stays cheap at DAG-parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXECUTION_MODES = ("QUEUED", "PARALLEL", "SUPERSEDED")
PREFLIGHT_GROUP = "Preflight"  # `preflight: true`: the group of the first task of every run, Preflight.Check


@dataclass
class Action:
    name: str
    type: str  # e.g. "build.codebuild"; see pipeline/action_types.py
    configuration: dict[str, Any] = field(default_factory=dict)
    run_order: int = 1
    namespace: str | None = None  # exposes the action's outputs as #{namespace.Var}
    input_artifacts: list[str] = field(default_factory=list)
    output_artifacts: list[str] = field(default_factory=list)
    region: str | None = None  # cross-region: the action's own region
    aws_conn_id: str | None = None  # cross-account: an Airflow connection naming a role to assume
    timeout_minutes: int | None = None
    # Where things are in the spec file, for error messages; not part of the model's identity.
    line: int | None = field(default=None, compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # "configuration.x" -> line


@dataclass
class Stage:
    name: str
    actions: list[Action] = field(default_factory=list)
    # Entry conditions as written (pipeline/conditions.py reads and checks them): {result, rules}.
    before_entry: dict[str, Any] | None = None
    # What a failed stage does, as written: {result: FAIL | ROLLBACK} (pipeline/conditions.py reads it).
    on_failure: dict[str, Any] | None = None
    on_success: dict[str, Any] | None = None
    line: int | None = field(default=None, compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # "before_entry.x" -> line


@dataclass
class Variable:
    name: str
    default: str | None = None
    description: str = ""


@dataclass
class Notifications:
    topic_arn: str
    events: list[str] = field(default_factory=list)
    aws_conn_id: str | None = None


@dataclass
class Pipeline:
    name: str
    stages: list[Stage] = field(default_factory=list)
    description: str = ""
    execution_mode: str = "QUEUED"
    # A newer run reaching an approval supersedes an older run waiting there. None: on in SUPERSEDED
    # mode, off otherwise.
    supersede_approvals: bool | None = None
    schedule: str | None = None  # cron expression
    variables: list[Variable] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    notifications: Notifications | None = None
    # Where runs keep their artifacts: s3://bucket/prefix, or {region: s3://bucket/prefix} for actions in
    # several regions; None: the ARTIFACT_STORE setting (pipeline/artifacts.py).
    artifact_store: str | dict[str, str] | None = None
    # The KMS key (ARN or alias) that encrypts artifacts, for the store of the pipeline's region, or by region.
    artifact_kms_key: str | dict[str, str] | None = None
    aws_conn_id: str = "aws_default"
    region: str | None = None
    tags: list[str] = field(default_factory=list)
    preflight: bool = False  # every run first checks the resources the actions name (pipeline/preflight.py)
    # Where the pipeline was read from, for error messages; not part of the model's identity.
    source_file: str | None = field(default=None, compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # "schedule" -> line
