"""Checks what a pipeline means: names, counts, action configurations, references, schedule, notifications.

Works on any model, whether it came from YAML (errors then carry file:line) or from the Python API.
"""

from __future__ import annotations

import reprlib
from typing import Any

from release_orchestrator.notifications.messages import EVENTS
from release_orchestrator.stages.entry import ENTER_TASK
from release_orchestrator.stages.rollback import ROLLBACK_TASK

from .action_types import ACTION_TYPES, KIND_NAMES, RETIRED_KEYS, ActionType
from .artifacts import artifact_problems
from .conditions import (
    CONDITIONS_TASK,
    SUCCESS_CONDITIONS_TASK,
    parse_entry_condition,
    parse_on_failure,
    parse_success_condition,
    rolls_back,
)
from .errors import SpecError
from .files import file_problems
from .model import EXECUTION_MODES, PREFLIGHT_GROUP, Action, Pipeline, Stage
from .syntax import (
    NAME_RE,
    NAMESPACE_RE,
    REFERENCE_RE,
    VARIABLE_NAME_RE,
    airflow_key,
    did_you_mean,
    find_references,
    has_reference,
    iter_strings,
    parse_duration,
)

__all__ = ["validate", "find_references", "parse_duration", "NOTIFICATION_EVENTS", "SCHEDULE_PRESETS"]

MAX_STAGES = 50
MAX_ACTIONS_PER_STAGE = 50
RUN_ORDER_RANGE = (1, 999)
MAX_TAG_LENGTH = 100  # Airflow's TAG_MAX_LEN: a longer tag makes the DAG itself fail to build

# The events a pipeline's notifications may name: those the messages module can write.
NOTIFICATION_EVENTS = EVENTS
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")

# Namespaces that are not set by actions.
PIPELINE_VARIABLES_NAMESPACE = "variables"
CODEPIPELINE_NAMESPACE = "codepipeline"
CODEPIPELINE_VARIABLES = ("PipelineExecutionId",)

_KIND_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "mapping": lambda v: isinstance(v, dict),
    "str|int": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "str|mapping": lambda v: isinstance(v, (str, dict)),
    "list|mapping": lambda v: isinstance(v, (list, dict)),
    "str|list": lambda v: isinstance(v, (str, list)),
}


def validate(pipeline: Pipeline) -> list[SpecError]:
    """Every problem in `pipeline`, in spec order; an empty list when it is valid."""
    return _Validator(pipeline).run()


def _name_problem(name: Any, what: str) -> str | None:
    if not isinstance(name, str):
        return f"{what} name must be a string"
    if not NAME_RE.match(name):
        return f"{what} name {name!r} must be 1-100 characters of letters, digits and . @ _ -"
    return None


def _line(lines: dict[str, int], path: str, default: int | None) -> int | None:
    """The line of `path`, or of its nearest enclosing field that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default


class _Validator:
    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.errors: list[SpecError] = []

    def error(
        self, message: str, *, stage: Stage | None = None, action: Action | None = None, field: str | None = None
    ) -> None:
        if action is not None:
            line = _line(action.lines, field or "", action.line)
        elif stage is not None:
            line = _line(stage.lines, field or "", stage.line)
        else:
            line = _line(self.p.lines, field or "", None)
        self.errors.append(
            SpecError(
                message,
                file=self.p.source_file,
                line=line,
                pipeline=self.p.name if isinstance(self.p.name, str) else None,
                stage=stage.name if stage is not None else None,
                action=action.name if action is not None else None,
                field=field,
            )
        )

    def run(self) -> list[SpecError]:
        p = self.p
        if problem := _name_problem(p.name, "pipeline"):
            self.error(problem, field="name")
        if p.execution_mode not in EXECUTION_MODES:
            self.error(
                f"unknown execution mode {p.execution_mode!r}; use one of {', '.join(EXECUTION_MODES)}",
                field="execution_mode",
            )
        if p.supersede_approvals is not None and not isinstance(p.supersede_approvals, bool):
            self.error(
                f"supersede_approvals must be true or false, got {p.supersede_approvals!r}", field="supersede_approvals"
            )
        if p.preflight is not True and p.preflight is not False:
            self.error(f"preflight must be true or false, got {p.preflight!r}", field="preflight")
        for stage in p.stages if p.preflight is True else []:
            if isinstance(stage.name, str) and airflow_key(stage.name) == PREFLIGHT_GROUP:
                self.error(
                    f"with preflight: true the first task is {PREFLIGHT_GROUP}.Check; rename this stage",
                    stage=stage,
                    field="name",
                )
        if p.schedule is not None:
            self.check_schedule(p.schedule)
        self.check_tags()
        self.check_variables()
        self.check_notifications()
        self.check_triggers()
        self.check_stages()
        self.check_references()
        for stage, action, field, message in artifact_problems(self.p):
            self.error(message, stage=stage, action=action, field=field)
        return self.errors

    def check_tags(self) -> None:
        for index, tag in enumerate(self.p.tags):
            if isinstance(tag, str) and len(tag) > MAX_TAG_LENGTH:
                self.error(
                    f"a tag may have up to {MAX_TAG_LENGTH} characters, this one has {len(tag)}", field=f"tags[{index}]"
                )

    def check_schedule(self, schedule: Any) -> None:
        if not isinstance(schedule, str):
            self.error("expected a cron expression string", field="schedule")
        elif schedule not in SCHEDULE_PRESETS and not _valid_cron(schedule):
            self.error(
                f"invalid cron schedule {schedule!r}; expected 5 fields (minute hour day-of-month month "
                f"day-of-week), e.g. '0 6 * * 1-5', or one of {', '.join(SCHEDULE_PRESETS)}",
                field="schedule",
            )

    def check_variables(self) -> None:
        seen = set()
        for index, variable in enumerate(self.p.variables):
            field = f"variables[{index}].name"
            if not isinstance(variable.name, str) or not VARIABLE_NAME_RE.match(variable.name):
                self.error(
                    f"variable name {variable.name!r} must be 1-128 characters of letters, digits and @ _ -",
                    field=field,
                )
            elif variable.name in seen:
                self.error(f"variable '{variable.name}' is declared twice", field=field)
            seen.add(variable.name)

    def check_triggers(self) -> None:
        from release_orchestrator.webhooks.filters import parse_triggers

        for where, message in parse_triggers(self.p)[1]:
            self.error(message, field=where)

    def check_notifications(self) -> None:
        n = self.p.notifications
        if n is None:
            return
        if not isinstance(n.topic_arn, str) or not n.topic_arn:
            self.error("missing SNS topic ARN", field="notifications.topic_arn")
        for index, event in enumerate(n.events):
            if event not in NOTIFICATION_EVENTS:
                self.error(
                    f"unknown event {event!r}{did_you_mean(event, NOTIFICATION_EVENTS)}; known events: "
                    f"{', '.join(NOTIFICATION_EVENTS)}",
                    field=f"notifications.events[{index}]",
                )

    def check_stages(self) -> None:
        stages = self.p.stages
        if not 1 <= len(stages) <= MAX_STAGES:
            self.error(f"a pipeline needs 1 to {MAX_STAGES} stages, this one has {len(stages)}", field="stages")
        seen_stages: dict[str, str] = {}  # Airflow group id -> stage name
        for stage in stages:
            if problem := _name_problem(stage.name, "stage"):
                self.error(problem, stage=stage, field="name")
            elif stage.name in seen_stages.values():
                self.error(f"stage name '{stage.name}' is used twice", stage=stage, field="name")
            elif (other := seen_stages.get(airflow_key(stage.name))) is not None:
                self.error(
                    f"stage names '{other}' and '{stage.name}' both become Airflow group id "
                    f"'{airflow_key(stage.name)}' ('.' and '@' turn into '_'); rename one",
                    stage=stage,
                    field="name",
                )
            if isinstance(stage.name, str):
                seen_stages.setdefault(airflow_key(stage.name), stage.name)
            if stage.before_entry is not None:
                self.check_entry_condition(stage)
            if stage.on_failure is not None:
                self.check_on_failure(stage, first=stage is self.p.stages[0])
            if stage.on_success is not None:
                self.check_success_condition(stage, first=stage is self.p.stages[0])
            if not 1 <= len(stage.actions) <= MAX_ACTIONS_PER_STAGE:
                self.error(
                    f"a stage needs 1 to {MAX_ACTIONS_PER_STAGE} actions, this one has {len(stage.actions)}",
                    stage=stage,
                    field="actions",
                )
            seen_actions: dict[str, str] = {}  # Airflow task id -> action name
            for action in stage.actions:
                if problem := _name_problem(action.name, "action"):
                    self.error(problem, stage=stage, action=action, field="name")
                elif action.name in seen_actions.values():
                    self.error(
                        f"action name '{action.name}' is used twice in this stage",
                        stage=stage,
                        action=action,
                        field="name",
                    )
                elif (other := seen_actions.get(airflow_key(action.name))) is not None:
                    self.error(
                        f"action names '{other}' and '{action.name}' both become Airflow task id "
                        f"'{airflow_key(action.name)}' ('.' and '@' turn into '_'); rename one",
                        stage=stage,
                        action=action,
                        field="name",
                    )
                if isinstance(action.name, str):
                    seen_actions.setdefault(airflow_key(action.name), action.name)
                    if airflow_key(action.name) == CONDITIONS_TASK and stage.before_entry is not None:
                        self.error(
                            f"a stage with before_entry starts with the task {CONDITIONS_TASK}, which checks its "
                            "entry conditions; rename this action",
                            stage=stage,
                            action=action,
                            field="name",
                        )
                    if airflow_key(action.name) == SUCCESS_CONDITIONS_TASK and stage.on_success is not None:
                        self.error(
                            f"a stage with on_success ends with the task {SUCCESS_CONDITIONS_TASK}, which checks its "
                            "success conditions; rename this action",
                            stage=stage,
                            action=action,
                            field="name",
                        )
                    if airflow_key(action.name) == ROLLBACK_TASK and rolls_back(stage):
                        self.error(
                            f"a stage with a ROLLBACK result has the task {ROLLBACK_TASK}, which rolls it back "
                            "when it fails; rename this action",
                            stage=stage,
                            action=action,
                            field="name",
                        )
                    if airflow_key(action.name) == ENTER_TASK and self.p.execution_mode in ("QUEUED", "SUPERSEDED"):
                        self.error(
                            f"in a {self.p.execution_mode} pipeline each stage starts with the task "
                            f"{ENTER_TASK}, which lets one run into the stage at a time; rename this action",
                            stage=stage,
                            action=action,
                            field="name",
                        )
                self.check_action(stage, action)

    def check_entry_condition(self, stage: Stage) -> None:
        condition, problems = parse_entry_condition(stage.before_entry)
        for field, message in problems:
            self.error(message, stage=stage, field=field)
        if condition is not None and condition.result == "SKIP":
            if any(action.type == "approval.manual" for action in stage.actions):
                # A variable anyone starting a run can set would otherwise let the release past its approval.
                self.error(
                    "result SKIP cannot skip a stage with an approval (the release would go on unapproved); "
                    "use result FAIL, or move the approval to a stage of its own",
                    stage=stage,
                    field="before_entry.result",
                )

    def check_on_failure(self, stage: Stage, first: bool) -> None:
        rule, problems = parse_on_failure(stage.on_failure)
        for field, message in problems:
            self.error(message, stage=stage, field=field)
        if rule is not None and rule.result == "ROLLBACK" and first:
            self.error(
                "the first stage cannot be rolled back (it has no earlier stage whose results a rollback reuses); "
                "use result FAIL",
                stage=stage,
                field="on_failure.result",
            )

    def check_success_condition(self, stage: Stage, first: bool) -> None:
        condition, problems = parse_success_condition(stage.on_success)
        for field, message in problems:
            self.error(message, stage=stage, field=field)
        if condition is not None and condition.result == "ROLLBACK" and first:
            self.error(
                "the first stage cannot be rolled back (it has no earlier stage whose results a rollback reuses); "
                "use result FAIL",
                stage=stage,
                field="on_success.result",
            )

    def check_action(self, stage: Stage, action: Action) -> None:
        def error(message: str, field: str) -> None:
            self.error(message, stage=stage, action=action, field=field)

        ro = action.run_order
        if not isinstance(ro, int) or isinstance(ro, bool) or not RUN_ORDER_RANGE[0] <= ro <= RUN_ORDER_RANGE[1]:
            error(
                f"run_order must be an integer from {RUN_ORDER_RANGE[0]} to {RUN_ORDER_RANGE[1]}, got {ro!r}",
                "run_order",
            )
        if action.timeout_minutes is not None and (
            not isinstance(action.timeout_minutes, int) or action.timeout_minutes < 1
        ):
            error(f"timeout_minutes must be a positive integer, got {action.timeout_minutes!r}", "timeout_minutes")
        if action.namespace is not None and (
            not isinstance(action.namespace, str) or not NAMESPACE_RE.match(action.namespace)
        ):
            error(f"namespace {action.namespace!r} must be 1-100 characters of letters, digits and @ _ -", "namespace")
        elif action.namespace in (PIPELINE_VARIABLES_NAMESPACE, CODEPIPELINE_NAMESPACE):
            error(f"namespace '{action.namespace}' is reserved", "namespace")

        action_type = ACTION_TYPES.get(action.type) if isinstance(action.type, str) else None
        if action_type is None:
            error(
                f"unknown action type {action.type!r}{did_you_mean(str(action.type), ACTION_TYPES)}; known "
                f"types: {', '.join(ACTION_TYPES)}",
                "type",
            )
        elif not isinstance(action.configuration, dict):
            error("configuration must be a mapping", "configuration")
        else:
            for key, message in _configuration_problems(action_type, action.configuration):
                error(message, f"configuration.{key}")
            for key, message in file_problems(action_type.file_keys, action.configuration, self.p.source_file):
                error(message, f"configuration.{key}")

    def check_references(self) -> None:
        """#{Namespace.Variable}: the namespace must exist and be set by an action that has finished by then."""
        # namespace -> (stage index, run_order, stage, action, type); the first one wins, duplicates are errors.
        producers: dict[str, tuple[int, Any, Stage, Action, ActionType | None]] = {}
        for s_index, stage in enumerate(self.p.stages):
            for action in stage.actions:
                ns = action.namespace
                if not isinstance(ns, str):
                    continue
                if ns in producers:
                    first = producers[ns]
                    self.error(
                        f"namespace '{ns}' is already used by action '{first[3].name}' in stage '{first[2].name}'",
                        stage=stage,
                        action=action,
                        field="namespace",
                    )
                else:
                    producers[ns] = (s_index, action.run_order, stage, action, ACTION_TYPES.get(action.type))

        declared = {v.name for v in self.p.variables}
        for s_index, stage in enumerate(self.p.stages):
            for action in stage.actions:
                if not isinstance(action.configuration, dict):
                    continue
                for path, text in iter_strings(action.configuration, "configuration"):
                    for match in REFERENCE_RE.finditer(text):
                        problem = self.reference_problem(
                            match.group(1), match.group(2), s_index, action, producers, declared
                        )
                        if problem:
                            self.error(f"{match.group(0)}: {problem}", stage=stage, action=action, field=path)
            # Entry conditions are checked before any action of their stage: as if by an action running first.
            before_all = Action(name=f"{stage.name} entry conditions", type="", run_order=0)
            # ... and success conditions after all of them, as if by an action running last.
            after_all = Action(name=f"{stage.name} success conditions", type="", run_order=10**6)
            for key, reader in (("before_entry", before_all), ("on_success", after_all)):
                for path, text in iter_strings(getattr(stage, key) or {}, key):
                    for match in REFERENCE_RE.finditer(text):
                        problem = self.reference_problem(
                            match.group(1), match.group(2), s_index, reader, producers, declared
                        )
                        if problem:
                            self.error(f"{match.group(0)}: {problem}", stage=stage, field=path)

    def reference_problem(
        self, ns: str, var: str, s_index: int, action: Action, producers: dict, declared: set
    ) -> str | None:
        if ns == PIPELINE_VARIABLES_NAMESPACE:
            if var not in declared:
                known = ", ".join(sorted(n for n in declared if isinstance(n, str))) or "none"
                return f"pipeline variable '{var}' is not declared; declared variables: {known}"
            return None
        if ns == CODEPIPELINE_NAMESPACE:
            if var not in CODEPIPELINE_VARIABLES:
                return (
                    f"unknown variable; the {CODEPIPELINE_NAMESPACE} namespace has {', '.join(CODEPIPELINE_VARIABLES)}"
                )
            return None
        if ns not in producers:
            known = ", ".join(producers) or "none"
            return f"namespace '{ns}' is not set by any action{did_you_mean(ns, producers)}; namespaces: {known}"
        p_index, p_order, p_stage, p_action, p_type = producers[ns]
        earlier = p_index < s_index or (
            p_index == s_index
            and isinstance(p_order, int)
            and isinstance(action.run_order, int)
            and p_order < action.run_order
        )
        if not earlier:
            return (
                f"namespace '{ns}' is set by action '{p_action.name}' in stage '{p_stage.name}', which does "
                "not finish before this action (it must be in an earlier stage, or in this stage with a lower "
                "run_order)"
            )
        outputs = p_type.outputs_of(p_action.configuration) if p_type is not None else None
        if outputs is not None and var not in outputs:
            exported = f" ({p_type.outputs_key} names the variables it exports)" if p_type.outputs_key else ""
            return (
                f"{p_type.name} action '{p_action.name}' has no output '{var}'"
                f"{did_you_mean(var, outputs)}; its outputs: {', '.join(outputs)}{exported}"
            )
        return None


def _configuration_problems(action_type: ActionType, configuration: dict) -> list[tuple[str, str]]:
    """(key path, message) for missing, unknown and ill-typed keys, then the type's own check."""
    allowed = ", ".join(action_type.allowed_keys)
    problems = []
    ill_typed = False
    for key in action_type.required_keys:
        if key not in configuration:
            problems.append((key, f"missing required key; allowed keys: {allowed}"))
    for key, value in configuration.items():
        spec = action_type.key(key)
        if spec is None and key in RETIRED_KEYS:
            problems.append((key, f"not supported: {RETIRED_KEYS[key]}; remove it"))
        elif spec is None:
            problems.append((key, f"unknown key{did_you_mean(key, action_type.allowed_keys)}; allowed keys: {allowed}"))
        elif has_reference(value):
            continue  # only known at run time
        elif not _KIND_CHECKS[spec.kind](value):
            ill_typed = True
            problems.append((key, f"expected {KIND_NAMES[spec.kind]}, got {_short_repr(value)}"))
        elif spec.choices and value not in spec.choices:
            problems.append((key, f"{value!r} is not one of {', '.join(map(str, spec.choices))}"))
        elif spec.range and not spec.range[0] <= value <= spec.range[1]:
            problems.append((key, f"{value} is outside {spec.range[0]}-{spec.range[1]}"))
    # The type's own check reads values as their kind says (e.g. `platform` as a string to look up); with a
    # value of the wrong kind its rules cannot apply, and that value's problem is already reported.
    if action_type.check and not ill_typed:
        known = {k: v for k, v in configuration.items() if action_type.key(k) is not None}
        problems += action_type.check(known)
    return problems


# A value as written in an error message, cut short: a message quotes the value, not a whole document.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 40, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_short_repr = _SHORT.repr


def _valid_cron(expression: str) -> bool:
    if len(expression.split()) != 5:  # croniter also takes a 6th (seconds) field, Airflow does not
        return False
    try:
        from croniter import croniter  # lazily: only specs with a schedule pay for it
    except ImportError:
        return True  # the field count is all we can check
    return croniter.is_valid(expression)
