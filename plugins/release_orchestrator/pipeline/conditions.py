"""Entry conditions of a stage (`before_entry`), CodePipeline V2's stage conditions: what the spec says.

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
when the run reaches the stage, after the window opened. Airflow-free: the runtime side is
stages/conditions.py, the task operators/stage_conditions.py.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .syntax import did_you_mean, has_reference

CONDITIONS_TASK = "Conditions"  # task id of a stage's entry check, inside the stage's group
RESULTS = ("FAIL", "SKIP")
FAILURE_RESULTS = ("FAIL", "ROLLBACK")  # a stage's on_failure (CodePipeline's onFailure; RETRY not yet)
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
            ("alarm_states",),
            skippable=False,
            aws=True,
            description="fails while the alarm is in one of `alarm_states` (default [ALARM])",
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
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        return None, [("before_entry", "expected a mapping with result and rules")]
    for key in raw:
        if key not in ("result", "rules"):
            problems.append((f"before_entry.{key}", f"unknown key{did_you_mean(str(key), ('result', 'rules'))}"))
    result = raw.get("result", "FAIL")
    if result not in RESULTS:
        problems.append(("before_entry.result", f"{result!r} is not one of {', '.join(RESULTS)}"))
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not 1 <= len(rules_raw) <= MAX_RULES:
        problems.append(("before_entry.rules", f"expected a list of 1 to {MAX_RULES} rules"))
        return None, problems
    condition = EntryCondition(result=result if isinstance(result, str) else "FAIL")
    names: set[str] = set()
    for index, item in enumerate(rules_raw):
        where = f"before_entry.rules[{index}]"
        rule, rule_problems = _parse_rule(item, where)
        problems += rule_problems
        if rule is None:
            continue
        if rule.name in names:
            problems.append((f"{where}.name", f"rule name '{rule.name}' is used twice in this condition"))
        names.add(rule.name)
        if result == "SKIP" and rule.type in RULE_TYPES and not RULE_TYPES[rule.type].skippable:
            allowed = ", ".join(t.name for t in RULE_TYPES.values() if t.skippable)
            problems.append(
                (f"{where}.type", f"result SKIP takes {allowed} rules only (as CodePipeline); use result FAIL")
            )
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


def value_problem(rule_type: str, key: str, value: Any) -> str | None:
    """What is wrong with one configuration value of a rule (also asked at run time, once references are
    resolved), or None."""
    if key == "alarm_states":
        if not isinstance(value, list) or not value or not all(state in ALARM_STATES for state in value):
            return f"expected a list of {', '.join(ALARM_STATES)}"
        return None
    if key == "user_parameters":
        return None if isinstance(value, (str, dict)) else "expected a string or a mapping"
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


def parse_on_failure(value: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """A stage's `on_failure` ({result: FAIL | ROLLBACK}) as its result, and (field, message) for each problem."""
    if not isinstance(value, dict):
        return None, [("on_failure", "expected a mapping with result: FAIL or ROLLBACK")]
    problems = [
        (f"on_failure.{key}", f"unknown key{did_you_mean(str(key), ('result',))}") for key in value if key != "result"
    ]
    result = value.get("result")
    if result == "RETRY":
        problems.append(("on_failure.result", "RETRY is not supported yet; use FAIL or ROLLBACK"))
    elif result not in FAILURE_RESULTS:
        problems.append(("on_failure.result", f"{result!r} is not one of {', '.join(FAILURE_RESULTS)}"))
    return (result if not problems else None), problems


def on_failure_result(stage: Any) -> str:
    """What the (validated) stage does when one of its actions fails: FAIL (the default) or ROLLBACK."""
    return parse_on_failure(stage.on_failure)[0] or "FAIL" if stage.on_failure is not None else "FAIL"


def entry_rule_permissions(stage: Any) -> list[tuple[Rule, Any]]:
    """(rule, Permission) for each rule of the stage's entry condition that calls AWS (pipeline/iam.py)."""
    from .action_types import Permission

    condition, _ = parse_entry_condition(stage.before_entry) if stage.before_entry is not None else (None, [])
    out = []
    for rule in condition.rules if condition is not None else []:
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
