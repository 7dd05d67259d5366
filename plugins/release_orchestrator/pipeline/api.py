"""Building pipelines in Python: the same model as a YAML spec, validated the same way.

    from release_orchestrator.pipeline.api import action, pipeline, stage

    webapp = pipeline("webapp", stages=[
        stage("Source", [action("Checkout", "source.github", repository="acme/webapp", branch="main",
                                namespace="Source")]),
        stage("Build", [action("Compile", "build.codebuild", project_name="webapp-build",
                               source_version="#{Source.CommitId}")]),
    ])

Configuration keys are keyword arguments of action(); `configuration={...}` works too (and wins).
Strings are literal text except #{...} references, as in a YAML spec (the compiler keeps them so).
Files a pipeline names (an ECS task definition template) are read from the folder of its
`source_file`: pass `source_file=__file__` to name files beside the DAG file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .errors import SpecError
from .model import Action, Notifications, Pipeline, Stage, Variable
from .syntax import did_you_mean
from .validate import validate

__all__ = ["pipeline", "stage", "action", "variable", "notifications", "Variable", "Notifications"]


def action(
    name: str,
    type: str,
    *,
    run_order: int = 1,
    namespace: str | None = None,
    input_artifacts: Iterable[str] = (),
    output_artifacts: Iterable[str] = (),
    region: str | None = None,
    aws_conn_id: str | None = None,
    timeout_minutes: int | None = None,
    configuration: dict[str, Any] | None = None,
    **config: Any,
) -> Action:
    return Action(
        name=name,
        type=type,
        configuration={**config, **(configuration or {})},
        run_order=run_order,
        namespace=namespace,
        input_artifacts=list(input_artifacts),
        output_artifacts=list(output_artifacts),
        region=region,
        aws_conn_id=aws_conn_id,
        timeout_minutes=timeout_minutes,
    )


def stage(name: str, actions: Iterable[Action]) -> Stage:
    return Stage(name=name, actions=list(actions))


def variable(name: str, default: str | None = None, description: str = "") -> Variable:
    return Variable(name=name, default=default, description=description)


def notifications(topic_arn: str, events: Iterable[str] = (), aws_conn_id: str | None = None) -> Notifications:
    return Notifications(topic_arn=topic_arn, events=list(events), aws_conn_id=aws_conn_id)


_PIPELINE_FIELDS = [f.name for f in dataclasses.fields(Pipeline) if f.name not in ("name", "stages", "lines")]


def pipeline(name: str, stages: Iterable[Stage], **fields: Any) -> Pipeline:
    """A validated Pipeline; raises SpecError listing every problem.

    `fields` are the other Pipeline fields (description, execution_mode, schedule, variables, ...). Variables
    may be Variable objects or plain names; notifications a Notifications or a dict.
    """
    unknown = [key for key in fields if key not in _PIPELINE_FIELDS]
    if unknown:
        raise SpecError.combine(
            [
                SpecError(
                    f"unknown field '{key}'{did_you_mean(key, _PIPELINE_FIELDS)}; allowed fields: "
                    f"{', '.join(_PIPELINE_FIELDS)}",
                    pipeline=name,
                )
                for key in unknown
            ]
        )
    fields["variables"] = [v if isinstance(v, Variable) else Variable(name=v) for v in fields.get("variables", [])]
    if isinstance(fields.get("notifications"), dict):
        fields["notifications"] = notifications(**fields["notifications"])
    result = Pipeline(name=name, stages=list(stages), **fields)
    errors = validate(result)
    if errors:
        raise SpecError.combine(errors)
    return result
