"""Compute action ``compute.commands``: shell commands run in a CodeBuild project.

CodePipeline's Commands action runs them in CodeBuild compute it manages, without a project; here they
run in a project the spec names (one with no source works), as a buildspec override. Starting, waiting,
reattaching, stopping and links are build.codebuild's (CodeBuildOperator).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from release_orchestrator.operators.codebuild import CodeBuildOperator


def commands_buildspec(commands: Sequence[str], output_variables: Sequence[str] = ()) -> str:
    """A buildspec running ``commands`` in order in its build phase and exporting ``output_variables``."""
    spec: dict[str, Any] = {"version": 0.2}
    if output_variables:
        spec["env"] = {"exported-variables": [str(name) for name in output_variables]}
    spec["phases"] = {"build": {"commands": [str(command) for command in commands]}}
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=10_000)


def _as_list(value: Any, key: str) -> list[str]:
    """A list that may arrive as a rendered JSON string."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}: expected a list of strings, got {value!r}")
    return [str(item) for item in value]


class CommandsOperator(CodeBuildOperator):
    """Run shell commands in a CodeBuild project (action type ``compute.commands``).

    :param commands: shell commands, run in order in the build phase; the first to fail fails the action.
    :param output_variables: environment variables to export: they become the action's outputs.
    :param project_name: the CodeBuild project to run them in (its source, if any, is checked out first).
    :param environment_variables, build_timeout_minutes, poll_interval, deferrable: as CodeBuildOperator's.
    """

    template_fields: Sequence[str] = (*CodeBuildOperator.template_fields, "commands", "output_variables")
    template_fields_renderers = {**CodeBuildOperator.template_fields_renderers, "commands": "json"}
    ui_color = "#e0e7d5"

    def __init__(
        self,
        *,
        commands: list[str] | str,
        output_variables: list[str] | str | None = None,
        project_name: str | None = None,
        **kwargs,
    ) -> None:
        if not project_name:
            raise ValueError(
                "compute.commands needs project_name: the CodeBuild project the commands run in (a project "
                "with no source works; see docs/operators.md, compute.commands)"
            )
        super().__init__(project_name=project_name, **kwargs)
        self.commands = commands
        self.output_variables = output_variables

    def start_overrides(self, context, generation: int) -> dict[str, Any]:
        commands = _as_list(self.commands, "commands")
        if not commands:
            raise ValueError("commands: names no command")
        self.buildspec = commands_buildspec(commands, _as_list(self.output_variables or [], "output_variables"))
        return super().start_overrides(context, generation)
