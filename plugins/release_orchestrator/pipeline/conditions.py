"""A stage's conditions and failure rule, CodePipeline V2's: what the spec says.

Entry conditions (`before_entry`), checked before the stage's actions:

    - name: Deploy
      before_entry:
        result: FAIL            # or SKIP (VariableCheck and LambdaInvoke rules only, as in CodePipeline)
        rules:                  # 1 to 5, all must pass
          - name: BusinessHours
            type: DeploymentWindow
            configuration: {cron: "* * 9-16 ? * MON-FRI", time_zone: Europe/Berlin}
          - name: ProductionHealthy
            type: CloudWatchAlarm
            configuration: {alarm_name: webapp-5xx}
          - name: FromMain
            type: VariableCheck
            configuration: {variable: "#{Source.BranchName}", operator: EQ, value: main}

A DeploymentWindow holds the run (at no cost) until the window opens; every other rule is checked once
when the run reaches the stage, after the window opened.

Success conditions (`on_success`), checked once every action of the stage succeeded, before the run goes
on; a CloudWatchAlarm rule with a `wait_time` (minutes) watches its alarm for that long:

      on_success:
        result: ROLLBACK        # or FAIL
        rules:
          - name: No5xx
            type: CloudWatchAlarm
            configuration: {alarm_name: webapp-5xx, wait_time: 10}

The failure rule (`on_failure`): result FAIL (the default), ROLLBACK, or RETRY (the failed actions run
again, `max_attempts` times at most).

Airflow-free: the runtime side is stages/conditions.py, the tasks operators/stage_conditions.py.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .syntax import did_you_mean, has_reference

CONDITIONS_TASK = "Conditions"  # task id of a stage's entry check, inside the stage's group
SUCCESS_CONDITIONS_TASK = "SuccessConditions"  # task id of its success check, after its actions
RESULTS = ("FAIL", "SKIP")
SUCCESS_RESULTS = ("FAIL", "ROLLBACK")
FAILURE_RESULTS = ("FAIL", "ROLLBACK", "RETRY")  # a stage's on_failure (CodePipeline's onFailure)
RETRY_MODES = ("FAILED_ACTIONS",)  # automatic retries; ALL_ACTIONS is a manual retry's only (stages/retry.py)
MAX_RETRY_ATTEMPTS = 5
MAX_WAIT_MINUTES = 24 * 60  # how long a success condition may watch an alarm
MAX_RULES = 5
VARIABLE_OPERATORS = ("EQ", "NE", "CONTAINS", "MATCHES")
DEFAULT_ALARM_STATES = ("ALARM",)
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


@dataclass(frozen=True)
class RuleType:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    skippable: bool  # may be used with result SKIP (CodePipeline allows it for these only)
    aws: bool  # calls AWS (takes region and aws_conn_id)
    description: str

    @property
    def keys(self) -> tuple[str, ...]:
        return self.required + self.optional


RULE_TYPES: dict[str, RuleType] = {
    t.name: t
    for t in (
        RuleType(
            "DeploymentWindow",
            ("cron",),
            ("time_zone",),
            skippable=False,
            aws=False,
            description="holds the run until the time matches `cron` (CodePipeline's cron: seconds, minutes, hours, "
            "day of month, month, day of week 1-7 or SUN-SAT, optional year) in `time_zone` (default UTC)",
        ),
        RuleType(
            "CloudWatchAlarm",
            ("alarm_name",),
            ("alarm_states", "wait_time"),
            skippable=False,
            aws=True,
            description="fails while the alarm is in one of `alarm_states` (default [ALARM]); in `on_success`, "
            "`wait_time` (minutes, fractions allowed) watches it for that long and fails when it gets there",
        ),
        RuleType(
            "VariableCheck",
            ("variable", "value"),
            ("operator",),
            skippable=True,
            aws=False,
            description="compares `variable` (a #{...} reference) with `value`: operator EQ (default), NE, "
            "CONTAINS or MATCHES (a regular expression)",
        ),
        RuleType(
            "LambdaInvoke",
            ("function_name",),
            ("user_parameters",),
            skippable=True,
            aws=True,
            description="invokes the function with the rule's event; it fails the rule by raising or returning "
            '{"status": "failed", "message": ...}',
        ),
    )
}
RULE_FIELDS = ("name", "type", "configuration", "region", "aws_conn_id")


@dataclass
class Rule:
    name: str
    type: str
    configuration: dict[str, Any] = field(default_factory=dict)
    region: str | None = None
    aws_conn_id: str | None = None


@dataclass
class EntryCondition:
    result: str = "FAIL"
    rules: list[Rule] = field(default_factory=list)


def parse_entry_condition(raw: Any) -> tuple[EntryCondition | None, list[tuple[str, str]]]:
    """The stage's `before_entry` as a model, and (field path under before_entry, message) for each problem."""
    return _parse_condition(raw, "before_entry", RESULTS)


def parse_success_condition(raw: Any) -> tuple[EntryCondition | None, list[tuple[str, str]]]:
    """The stage's `on_success` as a model, and (field path under on_success, message) for each problem."""
    return _parse_condition(raw, "on_success", SUCCESS_RESULTS)


def _parse_condition(raw: Any, key: str, results: tuple[str, ...]) -> tuple[EntryCondition | None, list]:
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        return None, [(key, "expected a mapping with result and rules")]
    for name in raw:
        if name not in ("result", "rules"):
            problems.append((f"{key}.{name}", f"unknown key{did_you_mean(str(name), ('result', 'rules'))}"))
    result = raw.get("result", "FAIL")
    if result not in results:
        problems.append((f"{key}.result", f"{result!r} is not one of {', '.join(results)}"))
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not 1 <= len(rules_raw) <= MAX_RULES:
        problems.append((f"{key}.rules", f"expected a list of 1 to {MAX_RULES} rules"))
        return None, problems
    condition = EntryCondition(result=result if isinstance(result, str) else "FAIL")
    names: set[str] = set()
    for index, item in enumerate(rules_raw):
        where = f"{key}.rules[{index}]"
        rule, rule_problems = _parse_rule(item, where)
        problems += rule_problems
        if rule is None:
            continue
        if rule.name in names:
            problems.append((f"{where}.name", f"rule name '{rule.name}' is used twice in this condition"))
        names.add(rule.name)
        if key == "before_entry":
            if result == "SKIP" and rule.type in RULE_TYPES and not RULE_TYPES[rule.type].skippable:
                allowed = ", ".join(t.name for t in RULE_TYPES.values() if t.skippable)
                problems.append(
                    (f"{where}.type", f"result SKIP takes {allowed} rules only (as CodePipeline); use result FAIL")
                )
            if "wait_time" in rule.configuration:
                problems.append(
                    (
                        f"{where}.configuration.wait_time",
                        "an entry rule is checked once when the run reaches the stage; wait_time (watching the "
                        "alarm) belongs to on_success rules",
                    )
                )
        elif rule.type == "DeploymentWindow":
            problems.append((f"{where}.type", "a DeploymentWindow holds runs before a stage: put it in before_entry"))
        condition.rules.append(rule)
    return condition, problems


def _parse_rule(item: Any, where: str) -> tuple[Rule | None, list[tuple[str, str]]]:
    if not isinstance(item, dict):
        return None, [(where, "expected a mapping with name, type and configuration")]
    problems = [
        (f"{where}.{key}", f"unknown key{did_you_mean(str(key), RULE_FIELDS)}; allowed keys: {', '.join(RULE_FIELDS)}")
        for key in item
        if key not in RULE_FIELDS
    ]
    name, kind, configuration = item.get("name"), item.get("type"), item.get("configuration", {})
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.@\-_]{1,100}", name):
        problems.append((f"{where}.name", "a rule needs a name of 1-100 letters, digits and . @ - _"))
    rule_type = RULE_TYPES.get(kind) if isinstance(kind, str) else None
    if rule_type is None:
        problems.append(
            (
                f"{where}.type",
                f"unknown rule type {kind!r}{did_you_mean(str(kind), RULE_TYPES)}; known: {', '.join(RULE_TYPES)}",
            )
        )
    if not isinstance(configuration, dict):
        problems.append((f"{where}.configuration", "expected a mapping"))
        configuration = {}
    for key in ("region", "aws_conn_id"):
        if key in item and not isinstance(item[key], str):
            problems.append((f"{where}.{key}", "expected a string"))
    if rule_type is not None:
        problems += [
            (f"{where}.configuration.{key}", message)
            for key, message in _configuration_problems(rule_type, configuration)
        ]
    if problems or rule_type is None:
        return (Rule(str(name), str(kind), configuration) if isinstance(name, str) else None), problems
    return Rule(name, kind, configuration, item.get("region"), item.get("aws_conn_id")), problems


def _configuration_problems(rule_type: RuleType, configuration: dict[str, Any]) -> list[tuple[str, str]]:
    allowed = ", ".join(rule_type.keys)
    problems = [
        (key, f"missing required key; allowed keys: {allowed}")
        for key in rule_type.required
        if key not in configuration
    ]
    for key, value in configuration.items():
        if key not in rule_type.keys:
            problems.append((key, f"unknown key{did_you_mean(str(key), rule_type.keys)}; allowed keys: {allowed}"))
        elif has_reference(value):
            continue  # only known at run time, checked then
        elif (problem := value_problem(rule_type.name, key, value)) is not None:
            problems.append((key, problem))
    operator, expected = configuration.get("operator", "EQ"), configuration.get("value")
    if operator == "MATCHES" and isinstance(expected, str) and not has_reference(expected):
        try:
            re.compile(expected)
        except re.error as error:
            problems.append(("value", f"not a regular expression ({error})"))
    return problems


def wait_minutes(value: Any) -> float | None:
    """A rule's wait_time in minutes, or None when it is no number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def value_problem(rule_type: str, key: str, value: Any) -> str | None:
    """What is wrong with one configuration value of a rule (also asked at run time, once references are
    resolved), or None."""
    if key == "alarm_states":
        if not isinstance(value, list) or not value or not all(state in ALARM_STATES for state in value):
            return f"expected a list of {', '.join(ALARM_STATES)}"
        return None
    if key == "user_parameters":
        return None if isinstance(value, (str, dict)) else "expected a string or a mapping"
    if key == "wait_time":  # a number, or its text (CodePipeline's WaitTime, a #{...} reference resolved)
        minutes = wait_minutes(value)
        if minutes is None or not 0 < minutes <= MAX_WAIT_MINUTES:
            return f"expected a number of minutes above 0 and at most {MAX_WAIT_MINUTES} (fractions allowed)"
        return None
    if not isinstance(value, str):
        return "expected a string"
    if key == "cron":
        try:
            window_cron(value)
        except ValueError as error:
            return str(error)
    elif key == "time_zone":
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin"
    elif key == "operator" and value not in VARIABLE_OPERATORS:
        return f"{value!r} is not one of {', '.join(VARIABLE_OPERATORS)}"
    return None


@dataclass(frozen=True)
class FailureRule:
    """A stage's `on_failure`: its result, and for RETRY how many more attempts a failed action gets."""

    result: str = "FAIL"
    retry_mode: str = "FAILED_ACTIONS"
    max_attempts: int = 1


ON_FAILURE_KEYS = ("result", "retry_mode", "max_attempts")


def parse_on_failure(value: Any) -> tuple[FailureRule | None, list[tuple[str, str]]]:
    """A stage's `on_failure` ({result: FAIL | ROLLBACK | RETRY, retry_mode?, max_attempts?}) as a model, and
    (field, message) for each problem."""
    if not isinstance(value, dict):
        return None, [("on_failure", "expected a mapping with result: FAIL, ROLLBACK or RETRY")]
    problems = [
        (
            f"on_failure.{key}",
            f"unknown key{did_you_mean(str(key), ON_FAILURE_KEYS)}; allowed keys: {', '.join(ON_FAILURE_KEYS)}",
        )
        for key in value
        if key not in ON_FAILURE_KEYS
    ]
    result = value.get("result")
    if result not in FAILURE_RESULTS:
        problems.append(("on_failure.result", f"{result!r} is not one of {', '.join(FAILURE_RESULTS)}"))
    mode, attempts = value.get("retry_mode", "FAILED_ACTIONS"), value.get("max_attempts", 1)
    if result != "RETRY":
        problems += [
            (f"on_failure.{key}", f"only result RETRY takes {key}")
            for key in ("retry_mode", "max_attempts")
            if key in value
        ]
    elif mode == "ALL_ACTIONS":
        problems.append(
            (
                "on_failure.retry_mode",
                "ALL_ACTIONS is not retried automatically (the actions that succeeded would have to run again in "
                "the same run); use FAILED_ACTIONS, or retry all actions by hand (docs/operations.md)",
            )
        )
    elif mode not in RETRY_MODES:
        problems.append(("on_failure.retry_mode", f"{mode!r} is not one of {', '.join(RETRY_MODES)}"))
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_RETRY_ATTEMPTS:
        problems.append(("on_failure.max_attempts", f"expected a whole number from 1 to {MAX_RETRY_ATTEMPTS}"))
    if problems:
        return None, problems
    return FailureRule(result, mode, attempts), []


def failure_rule(stage: Any) -> FailureRule:
    """What the (validated) stage does when one of its actions fails: FAIL (the default), ROLLBACK or RETRY."""
    rule = parse_on_failure(stage.on_failure)[0] if stage.on_failure is not None else None
    return rule or FailureRule()


def on_failure_result(stage: Any) -> str:
    return failure_rule(stage).result


def success_condition(stage: Any) -> EntryCondition | None:
    """The (validated) stage's `on_success`, or None."""
    return parse_success_condition(stage.on_success)[0] if stage.on_success is not None else None


def rolls_back(stage: Any) -> bool:
    """Whether the stage has a Rollback task: on_failure ROLLBACK, or on_success ROLLBACK."""
    condition = success_condition(stage)
    return on_failure_result(stage) == "ROLLBACK" or (condition is not None and condition.result == "ROLLBACK")


def entry_rule_permissions(stage: Any) -> list[tuple[Rule, Any]]:
    """(rule, Permission) for each rule of the stage's entry and success conditions that calls AWS
    (pipeline/iam.py)."""
    from .action_types import Permission

    entry, _ = parse_entry_condition(stage.before_entry) if stage.before_entry is not None else (None, [])
    rules = [
        rule for condition in (entry, success_condition(stage)) if condition is not None for rule in condition.rules
    ]
    out = []
    for rule in rules:
        if rule.type == "CloudWatchAlarm":
            resource = f"arn:aws:cloudwatch:{{region}}:{{account}}:alarm:{rule.configuration.get('alarm_name')}"
            out.append(
                (rule, Permission("cloudwatch", ("cloudwatch:DescribeAlarms",), resource, "EntryRuleReadsTheAlarm"))
            )
        elif rule.type == "LambdaInvoke":
            function = str(rule.configuration.get("function_name"))
            resource = (
                function
                if function.startswith("arn:")
                else f"arn:aws:lambda:{{region}}:{{account}}:function:{function}"
            )
            out.append(
                (rule, Permission("lambda", ("lambda:InvokeFunction",), resource, "EntryRuleInvokesTheFunction"))
            )
    return out


# ---- deployment windows ---------------------------------------------------------------------------
_DAY_OF_WEEK_NUMBER = re.compile(r"(?<![/#\d])([1-7])(?![\d])")


def window_cron(expression: str) -> str:
    """CodePipeline's DeploymentWindow cron (6 fields, seconds first, day of week 1-7 = SUN-SAT, optional
    7th field year '*') as a 5-field cron expression (day of week 0-6 = SUN-SAT); ValueError if it is not one."""
    fields = expression.split()
    if len(fields) not in (6, 7):
        raise ValueError(
            f"cron {expression!r}: expected 6 fields (seconds minutes hours day-of-month month day-of-week) and "
            "an optional year, e.g. '* * 9-16 ? * MON-FRI'"
        )
    seconds, minutes, hours, day, month, weekday = fields[:6]
    if seconds not in ("*", "0"):
        raise ValueError(f"cron {expression!r}: the seconds field must be '*' (windows are by the minute)")
    if len(fields) == 7 and fields[6] != "*":
        raise ValueError(f"cron {expression!r}: the year field must be '*' or left out")
    if "?" in (day, weekday) and day == weekday:
        raise ValueError(f"cron {expression!r}: only one of day-of-month and day-of-week may be '?'")
    weekday = _DAY_OF_WEEK_NUMBER.sub(lambda m: str(int(m.group(1)) - 1), weekday.replace("?", "*"))
    converted = " ".join((minutes, hours, day.replace("?", "*"), month, weekday))
    from croniter import croniter

    if not croniter.is_valid(converted):
        raise ValueError(f"cron {expression!r} is not a valid cron expression")
    return converted


def window_is_open(expression: str, time_zone: str, at: datetime) -> bool:
    from croniter import croniter

    return bool(croniter.match(window_cron(expression), at.astimezone(zoneinfo.ZoneInfo(time_zone))))


def window_opens(expression: str, time_zone: str, after: datetime) -> datetime:
    """The next minute after `after` at which the window is open, in UTC."""
    from croniter import croniter

    local = after.astimezone(zoneinfo.ZoneInfo(time_zone))
    return croniter(window_cron(expression), local).get_next(datetime).astimezone(timezone.utc)


def variable_check(variable: str, operator: str, value: str) -> bool:
    if operator == "EQ":
        return variable == value
    if operator == "NE":
        return variable != value
    if operator == "CONTAINS":
        return value in variable
    if operator == "MATCHES":
        return re.search(value, variable) is not None
    raise ValueError(f"unknown operator {operator!r}; use one of {', '.join(VARIABLE_OPERATORS)}")
