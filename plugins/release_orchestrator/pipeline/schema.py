"""A JSON Schema (draft-07) for pipeline specs, so editors complete and check them as they are typed.

`spec_schema()` builds it from what the loader and the validator read: the loader's field tables (top level,
pipeline, variables, notifications, stages, actions), the validator's limits and name patterns, the trigger
parsers' fields (webhooks/filters.py, events/spec.py) and the action-type table (`ACTION_TYPES`). Each action
type becomes an `if: {type: <name>}` / `then: {configuration: ...}` branch whose configuration lists the
type's keys with their descriptions, defaults, JSON types (from the key's kind), enums (from its choices),
minimum/maximum (from its range) and required keys, and allows no other key. Wherever the validator takes a
`#{Namespace.Variable}` reference in place of a typed value (any configuration key, whatever its kind), the
schema takes a string holding one. A field the loader reads as "not given" when it is empty (`schedule:`) may
be null.

The schema is draft-07 because every version of yaml-language-server (VS Code's YAML extension) supports it;
drafts 2019-09 and 2020-12 only arrived in its 1.20. The file shipped with the package,
pipeline-spec.schema.json next to this module, is `schema_json()`; `python -m release_orchestrator schema`
prints it, and tests/unit/test_spec_schema.py checks the two stay equal.

A spec that `load_spec` accepts validates against the schema (the tests hold every spec in the repository and
a table of cases to that). The converse does not hold: the schema checks shape (fields, types, names, enums,
ranges, required keys, the per-type and per-platform configuration keys, trigger fields), and the rules it
cannot express stay the validator's alone:

- uniqueness: pipeline names across files, stage names, action names in a stage (also after '.'/'@' become
  '_' in Airflow ids), namespaces, variable names; keys written twice in the YAML;
- references: that each `#{Namespace.Variable}` names a declared variable, a namespace set by an action that
  finishes earlier, and an output that action has;
- values the schema only shapes: cron expressions beyond their 5 fields, the approval timeout's 5 minutes to 60
  days (the schema checks the duration syntax), a `deploy.codedeploy` server revision given both from S3 and
  GitHub, a lambda deployment's "exactly one of target_version or publish_version: true";
- a trigger's `source_action` naming a source action of the right type; `file_paths` on webhooks that list no changed files (GitHub pull requests, Bitbucket);
- JSON has one number type, so `run_order: 2.0` passes the schema while the loader wants an integer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from release_orchestrator.events import spec as event_spec
from release_orchestrator.webhooks import filters

from . import loader
from .action_types import (
    _PLATFORM_KEYS,
    _REPOSITORY_RE,
    ACTION_TYPES,
    ENV_VAR_TYPES,
    HOOK_EVENTS,
    KINDS,
    ActionType,
    ConfigKey,
)
from .artifacts import ARTIFACT_NAME_RE
from .conditions import (
    ALARM_STATES,
    FAILURE_RESULTS,
    MAX_RETRY_ATTEMPTS,
    MAX_RULES,
    MAX_WAIT_MINUTES,
    RETRY_MODES,
    RULE_TYPES,
    SUCCESS_RESULTS,
    VARIABLE_OPERATORS,
    RuleType,
)
from .conditions import RESULTS as CONDITION_RESULTS
from .model import EXECUTION_MODES
from .syntax import NAME_RE, NAMESPACE_RE, REFERENCE_RE, VARIABLE_NAME_RE
from .validate import (
    CODEPIPELINE_NAMESPACE,
    MAX_ACTIONS_PER_STAGE,
    MAX_STAGES,
    NOTIFICATION_EVENTS,
    PIPELINE_VARIABLES_NAMESPACE,
    RUN_ORDER_RANGE,
    SCHEDULE_PRESETS,
)

__all__ = ["SCHEMA_FILE", "spec_schema", "schema_json"]

SCHEMA_FILE = Path(__file__).with_name("pipeline-spec.schema.json")
DIALECT = "http://json-schema.org/draft-07/schema#"
REFERENCE = {"$ref": "#/definitions/reference"}


# --- regular expressions --------------------------------------------------------------------------------------


def _js(regex: re.Pattern) -> str:
    """A Python regex written for re.match as an ECMA-262 pattern that accepts the same strings.

    A final `$` becomes `\\n?$`: Python's `$` also matches before a trailing newline, JavaScript's does not.
    """
    pattern = regex.pattern
    if not pattern.startswith("^"):
        pattern = "^" + pattern
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\n?$"
    return pattern


NAME_MESSAGE = "1-100 characters of letters, digits and . @ _ -"
# syntax.parse_duration: days, hours, minutes, seconds in that order, at least one, surrounding blanks allowed.
DURATION_PATTERN = r"^\s*(?=\d)(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?\s*$"
# validate._valid_cron wants 5 whitespace-separated fields (croniter then checks the values), or a preset.
SCHEDULE_PATTERN = "^(?:" + "|".join(SCHEDULE_PRESETS) + r"|\s*\S+(?:\s+\S+){4}\s*)$"
# events/spec.py: a trigger names what it watches literally, never empty.
LITERAL_PATTERN = r"^(?![\s\S]*#\{)[\s\S]*\S"
LITERAL_MESSAGE = "a non-empty value without #{...} references (a trigger names what it watches literally)"


# --- fields the loader reads ------------------------------------------------------------------------------------

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}

# One line per field the loader knows; a field missing here gets no description (a test asks for one).
FIELD_DOCS = {
    "pipeline": {
        "name": "Pipeline (and DAG) name: 1-100 characters of letters, digits and . @ _ -; unique across all specs.",
        "description": "What the pipeline is for.",
        "execution_mode": "How runs relate to each other: QUEUED (one run per stage at a time, first in, first "
        "out), SUPERSEDED (one run per stage at a time; a newer run waiting to enter a stage supersedes an older one "
        "waiting there, and at approvals) or PARALLEL (runs independent of each other).",
        "supersede_approvals": "A newer run reaching an approval, or waiting to enter its stage, ends an older run "
        "waiting there for a decision. Default: on in SUPERSEDED mode, off otherwise.",
        "schedule": "Cron expression with 5 fields (minute hour day-of-month month day-of-week), e.g. '0 6 * * 1-5', "
        "or @hourly, @daily, @weekly, @monthly, @yearly.",
        "variables": "Pipeline variables, used in configuration values as #{variables.NAME}.",
        "triggers": "What starts the pipeline: git webhooks (provider github, bitbucket or generic) or AWS source "
        "events (provider s3, ecr or codecommit).",
        "notifications": "SNS notifications of pipeline events.",
        "artifact_store": "Where each run keeps the artifacts its actions pass: s3://bucket/prefix, or a mapping of "
        "region to s3://bucket/prefix when actions that pass artifacts work in several regions (default: the "
        "ARTIFACT_STORE setting).",
        "artifact_kms_key": "KMS key (ARN, key id or alias/<name>) that encrypts the artifacts in the store (SSE-KMS), "
        "or a mapping of region to one when artifact_store is a mapping.",
        "aws_conn_id": "Airflow connection used by actions that do not set their own (default aws_default).",
        "region": "AWS region of the pipeline's actions (default: the connection's).",
        "tags": "Labels for the pipeline (its DAG's tags).",
        "preflight": "Start every run with a Preflight.Check task that looks up the resources the actions name "
        "(projects, applications and groups, buckets, repositories, topics) and the connections' credentials, and "
        "fails the run before any action when one is missing (python -m release_orchestrator check does the same).",
        "stages": f"1 to {MAX_STAGES} stages, run one after the other.",
    },
    "variable": {
        "name": "1-128 characters of letters, digits and @ _ -; unique in the pipeline.",
        "default": "Value used when a run does not set one; a number or boolean is read as its text.",
        "description": "What the variable is for.",
    },
    "notifications": {
        "topic_arn": "SNS topic to publish to.",
        "events": "Which events to publish (all of them when left out).",
        "aws_conn_id": "Airflow connection used to publish (default: the pipeline's).",
    },
    "stage": {
        "name": "1-100 characters of letters, digits and . @ _ -; unique in the pipeline.",
        "actions": f"1 to {MAX_ACTIONS_PER_STAGE} actions; those with the same run_order run in parallel.",
        "before_entry": "Entry conditions (CodePipeline V2): rules checked before the stage's actions; a "
        "DeploymentWindow holds the run until it opens, another rule failing fails the stage (result FAIL) or "
        "skips it (result SKIP).",
        "on_failure": "What a failed stage does (CodePipeline V2's onFailure): result FAIL (the default) fails the "
        "run; result ROLLBACK also starts a rollback run that deploys the stage of the latest run in which it "
        "succeeded; result RETRY runs the failed actions again, max_attempts times at most.",
        "on_success": "Success conditions (CodePipeline V2's onSuccess): rules checked once the stage's actions "
        "succeeded, before the run goes on (a CloudWatchAlarm with wait_time watches its alarm that many minutes); "
        "a rule failing fails the stage (result FAIL) or also rolls it back (result ROLLBACK).",
    },
    "action": {
        "name": "1-100 characters of letters, digits and . @ _ -; unique in its stage.",
        "type": "The action type; it decides which configuration keys apply.",
        "run_order": "Actions of a stage with the same run_order run in parallel; lower numbers run first.",
        "namespace": "Name under which the action's output variables are referenced (#{Namespace.Variable}); "
        "1-100 characters of letters, digits and @ _ -, unique in the pipeline; 'variables' and "
        "'codepipeline' are reserved.",
        "configuration": "The action type's configuration keys.",
        "input_artifacts": "Artifacts the action reads, each written by an action that finishes before it "
        "(an earlier stage, or a lower run_order).",
        "output_artifacts": "Artifacts the action writes to the artifact store (names unique in the pipeline: "
        "1-100 letters, digits, _ or -).",
        "region": "Cross-region actions: the region the action works in (default: the pipeline's).",
        "aws_conn_id": "Cross-account actions: an Airflow connection, typically one that assumes a role in the other "
        "account (default: the pipeline's).",
        "timeout_minutes": "Fail the action when it runs longer than this.",
    },
}

# What the loader passes as `required=` for each mapping (loader._Parser.pipeline, .stage, .action).
REQUIRED_FIELDS = {
    "pipeline": ("name", "stages"),
    "variable": ("name",),
    "notifications": ("topic_arn",),
    "stage": ("name", "actions"),
    "action": ("name", "type"),
}

LOADER_FIELDS = {
    "pipeline": loader._PIPELINE_FIELDS,
    "variable": loader._VARIABLE_FIELDS,
    "notifications": loader._NOTIFICATION_FIELDS,
    "stage": loader._STAGE_FIELDS,
    "action": loader._ACTION_FIELDS,
}

# What the validator (or the loader's list handling) adds to a field's type.
_STRINGS = {"items": {"type": "string"}}
_ARTIFACT_NAMES = {"items": {"type": "string", "pattern": _js(ARTIFACT_NAME_RE)}}
_STORE_PATTERN = "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"


def _rule_schema(rule_type: RuleType) -> dict:
    """One entry rule type (pipeline/conditions.py): its name, type and configuration keys."""
    values: dict[str, dict] = {"alarm_states": {"type": ["array", "string"], "items": {"enum": list(ALARM_STATES)}}}
    values["user_parameters"] = {"type": ["string", "object"]}
    values["operator"] = {"enum": list(VARIABLE_OPERATORS), "default": "EQ"}
    values["wait_time"] = {
        "type": ["number", "string"],
        "description": f"minutes (fractions allowed), above 0 and at most {MAX_WAIT_MINUTES}",
    }
    return {
        "type": "object",
        "description": f"{rule_type.name}: {rule_type.description}",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9.@\\-_]{1,100}$"},
            "type": {"const": rule_type.name},
            "configuration": {
                "type": "object",
                "properties": {key: values.get(key, {"type": "string"}) for key in rule_type.keys},
                "required": list(rule_type.required),
                "additionalProperties": False,
            },
            "region": {"type": "string"},
            "aws_conn_id": {"type": "string"},
        },
        "required": ["name", "type", "configuration"],
        "additionalProperties": False,
    }


def _condition_schema(results: tuple[str, ...], rule_types: Any) -> dict:
    """A stage condition (before_entry, on_success): its result and 1 to MAX_RULES rules."""
    return {
        "properties": {
            "result": {"enum": list(results), "default": results[0]},
            "rules": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_RULES,
                "items": {"oneOf": [_rule_schema(rule_type) for rule_type in rule_types]},
            },
        },
        "required": ["rules"],
        "additionalProperties": False,
    }


FIELD_RULES: dict[str, dict[str, dict]] = {
    "pipeline": {
        "name": {"pattern": _js(NAME_RE), "patternErrorMessage": NAME_MESSAGE},
        "execution_mode": {"enum": list(EXECUTION_MODES), "default": EXECUTION_MODES[0]},
        "schedule": {
            "pattern": SCHEDULE_PATTERN,
            "examples": ["0 6 * * 1-5", *SCHEDULE_PRESETS],
            "patternErrorMessage": "5 cron fields (minute hour day-of-month month day-of-week) or "
            + ", ".join(SCHEDULE_PRESETS),
        },
        "variables": {"items": {"$ref": "#/definitions/variable"}},
        "triggers": {"items": {"$ref": "#/definitions/trigger"}},
        "notifications": {"mapping": "notifications"},
        "artifact_store": {
            "pattern": _STORE_PATTERN,
            "additionalProperties": {"type": "string", "pattern": _STORE_PATTERN},
        },
        "aws_conn_id": {"default": "aws_default"},
        "tags": _STRINGS,
        "preflight": {"default": False},
        "stages": {"items": {"$ref": "#/definitions/stage"}, "minItems": 1, "maxItems": MAX_STAGES},
    },
    "variable": {
        "name": {
            "pattern": _js(VARIABLE_NAME_RE),
            "patternErrorMessage": "1-128 characters of letters, digits and @ _ -",
        },
    },
    "notifications": {
        "topic_arn": {"minLength": 1},
        "events": {"items": {"enum": list(NOTIFICATION_EVENTS)}},
    },
    "stage": {
        "name": {"pattern": _js(NAME_RE), "patternErrorMessage": NAME_MESSAGE},
        "actions": {"items": {"$ref": "#/definitions/action"}, "minItems": 1, "maxItems": MAX_ACTIONS_PER_STAGE},
        "before_entry": _condition_schema(CONDITION_RESULTS, RULE_TYPES.values()),
        "on_success": _condition_schema(
            SUCCESS_RESULTS, [rule_type for rule_type in RULE_TYPES.values() if rule_type.name != "DeploymentWindow"]
        ),
        "on_failure": {
            "properties": {
                "result": {"enum": list(FAILURE_RESULTS), "default": FAILURE_RESULTS[0]},
                "retry_mode": {"enum": list(RETRY_MODES), "default": RETRY_MODES[0]},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_RETRY_ATTEMPTS, "default": 1},
            },
            "required": ["result"],
            "additionalProperties": False,
        },
    },
    "action": {
        "name": {"pattern": _js(NAME_RE), "patternErrorMessage": NAME_MESSAGE},
        "type": {
            "enum": list(ACTION_TYPES),
            "enumDescriptions": [f"{t.category}: {t.description}" for t in ACTION_TYPES.values()],
        },
        "run_order": {"minimum": RUN_ORDER_RANGE[0], "maximum": RUN_ORDER_RANGE[1], "default": 1},
        "namespace": {
            "pattern": _js(NAMESPACE_RE),
            "not": {"enum": [PIPELINE_VARIABLES_NAMESPACE, CODEPIPELINE_NAMESPACE]},
            "patternErrorMessage": "1-100 characters of letters, digits and @ _ -",
        },
        "input_artifacts": _ARTIFACT_NAMES,
        "output_artifacts": _ARTIFACT_NAMES,
        "timeout_minutes": {"minimum": 1},
    },
}


def _field(kind: str, name: str, python_type: Any) -> dict:
    """One loader field: its JSON type(s), the validator's rules, and null when it may be left empty."""
    types = python_type if isinstance(python_type, tuple) else (python_type,)
    json_types = []
    for t in types:
        if _JSON_TYPES[t] not in json_types:
            json_types.append(_JSON_TYPES[t])
    if "integer" in json_types and "number" in json_types:
        json_types.remove("integer")
    rules = dict(FIELD_RULES.get(kind, {}).get(name, {}))
    nullable = name not in REQUIRED_FIELDS[kind]  # the loader reads `field:` (null) as "not given"
    out: dict[str, Any] = {}
    if kind in FIELD_DOCS and name in FIELD_DOCS[kind]:
        out["description"] = FIELD_DOCS[kind][name]
    if "mapping" in rules:  # a nested mapping of loader fields
        nested = _mapping(rules["mapping"])
        nested["type"] = ["object", "null"] if nullable else "object"
        return {**out, **nested}
    out["type"] = json_types + ["null"] if nullable else (json_types[0] if len(json_types) == 1 else json_types)
    if "enum" in rules and nullable:
        rules["enum"] = rules["enum"] + [None]
    out.update(rules)
    return out


def _mapping(kind: str, description: str | None = None) -> dict:
    fields = LOADER_FIELDS[kind]
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = {name: _field(kind, name, t) for name, t in fields.items()}
    out["required"] = list(REQUIRED_FIELDS[kind])
    out["additionalProperties"] = False
    return out


# --- action configurations --------------------------------------------------------------------------------------

# The JSON Schema of each configuration key kind (action_types.KIND_NAMES).
KIND_SCHEMAS: dict[str, dict] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "list[str]": {"type": "array", "items": {"type": "string"}},
    "mapping": {"type": "object"},
    "str|int": {"type": ["string", "integer"]},
    "str|mapping": {"type": ["string", "object"]},
    "list|mapping": {"type": ["array", "object"]},
    "str|list": {"type": ["string", "array"]},
}

_ENVIRONMENT_VARIABLES = {
    # a list of {name, value, type} ...
    "items": {
        "type": "object",
        "properties": {
            "name": {"description": "variable name"},
            "value": {"description": "its value, or the parameter / secret it comes from"},
            "type": {
                "enum": list(ENV_VAR_TYPES),
                "default": ENV_VAR_TYPES[0],
                "description": "where the value comes from",
            },
        },
        "required": ["name", "value"],
        "additionalProperties": False,
    },
    # ... or a mapping name -> plain value
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}

# Rules on single keys that a type's check adds (action_types._check_github, _check_approval, _check_codebuild).
KEY_RULES: dict[tuple[str, str], dict] = {
    ("source.github", "repository"): {"pattern": _js(_REPOSITORY_RE), "patternErrorMessage": "'owner/name'"},
    ("approval.manual", "timeout"): {
        "pattern": DURATION_PATTERN,
        "patternErrorMessage": "a duration such as '30m', '12h', '7d' or '1d12h'",
    },
    ("build.codebuild", "environment_variables"): _ENVIRONMENT_VARIABLES,
    ("test.codebuild", "environment_variables"): _ENVIRONMENT_VARIABLES,
}

# deploy.codedeploy per platform (action_types._check_codedeploy): which keys each platform requires. Keys that
# belong to other platforms only (action_types._PLATFORM_KEYS) are refused; hooks take the platform's events.
PLATFORM_REQUIRED: dict[str, dict] = {
    # server: the revision is the input artifact, or these keys (the validator knows which: the schema of a
    # configuration does not see the action's input_artifacts).
    "server": {"dependencies": {"revision_s3_bucket": ["revision_s3_key"], "revision_s3_key": ["revision_s3_bucket"]}},
    # ecs: the container and port that take traffic, or the AppSpec template that names them.
    "ecs": {
        "required": ["task_definition_template", "image"],
        "anyOf": [{"required": ["appspec_template"]}, {"required": ["container_name", "container_port"]}],
    },
    "lambda": {"required": ["function_name", "alias"]},
}
DEFAULT_PLATFORM = "server"


def _key_schema(action_type: ActionType, key: ConfigKey) -> dict:
    if key.kind not in KIND_SCHEMAS:
        raise ValueError(
            f"{action_type.name}: configuration key {key.name!r} has kind {key.kind!r}, which the "
            f"schema does not know; add it to schema.KIND_SCHEMAS"
        )
    value = dict(KIND_SCHEMAS[key.kind])
    if key.choices:
        value["enum"] = list(key.choices)
    if key.range:
        value["minimum"], value["maximum"] = key.range
    value.update(KEY_RULES.get((action_type.name, key.name), {}))
    types = value["type"] if isinstance(value["type"], list) else [value["type"]]
    out: dict[str, Any] = {"description": key.description}
    if key.default is not None:
        out["default"] = key.default
    if "string" in types and not set(value) - {"type", "items"}:
        out.update(value)  # any string passes, references included
    else:
        # The validator skips its kind, choice and range checks for a value holding a reference.
        out["anyOf"] = [value, REFERENCE]
    return out


def _platform_rules(action_type: ActionType) -> list[dict]:
    owners: dict[str, list[str]] = {}
    for platform, keys in _PLATFORM_KEYS.items():
        for key in keys:
            owners.setdefault(key, []).append(platform)
    rules = []
    for platform in _PLATFORM_KEYS:
        condition: dict[str, Any] = {"properties": {"platform": {"const": platform}}}
        if platform != DEFAULT_PLATFORM:
            condition["required"] = ["platform"]
        then: dict[str, Any] = dict(PLATFORM_REQUIRED.get(platform, {}))
        properties: dict[str, Any] = {
            key: False for key, where in owners.items() if platform not in where and action_type.key(key) is not None
        }
        if platform in HOOK_EVENTS and action_type.key("hooks") is not None:
            properties["hooks"] = {
                "properties": {
                    event: {"type": "string", "description": "Lambda function to run"}
                    for event in HOOK_EVENTS[platform]
                },
                "additionalProperties": False,
            }
        then["properties"] = properties
        rules.append({"if": condition, "then": then})
    return rules


def configuration_schema(action_type: ActionType) -> dict:
    """The `configuration` mapping of one action type."""
    outputs = action_type.outputs_text.replace("`", "")
    required = action_type.required_keys
    out: dict[str, Any] = {
        "type": "object" if required else ["object", "null"],
        "description": f"{action_type.name} ({action_type.category}): {action_type.description} Outputs: {outputs}.",
        "properties": {k.name: _key_schema(action_type, k) for k in action_type.keys},
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    if action_type.name == "deploy.codedeploy":
        out["allOf"] = _platform_rules(action_type)
    return out


def _action_type_branches() -> list[dict]:
    branches = []
    for action_type in ACTION_TYPES.values():
        then: dict[str, Any] = {"properties": {"configuration": configuration_schema(action_type)}}
        if action_type.required_keys:
            then["required"] = ["configuration"]
        branches.append(
            {"if": {"properties": {"type": {"const": action_type.name}}, "required": ["type"]}, "then": then}
        )
    return branches


# --- triggers ---------------------------------------------------------------------------------------------------


def _filter_list(definition: str, description: str) -> dict:
    """push: / pull_request: one filter, a non-empty list of them, or nothing (filters.Parser.filters)."""
    ref = {"$ref": f"#/definitions/{definition}"}
    return {
        "description": description,
        "anyOf": [ref, {"type": "array", "minItems": 1, "items": ref}, {"type": "null"}],
    }


def _git_trigger() -> dict:
    fields = filters._TRIGGER_FIELDS
    properties = {
        "provider": {
            "description": "The endpoint that delivers the webhooks (default github).",
            "enum": list(filters.PROVIDERS) + [None],
            "default": filters.PROVIDERS[0],
        },
        "repository": {
            "description": "The watched repository as 'owner/name' (or give source_action).",
            "type": ["string", "null"],
            "pattern": r"^[^/\s]+/[^/\s]+$",
            "patternErrorMessage": "'owner/name'",
        },
        "source_action": {
            "description": "A source action whose configuration names the repository.",
            "type": ["string", "null"],
        },
        "push": _filter_list("push_filter", "Pushes that start the pipeline: any one filter matching is enough."),
        "pull_request": _filter_list(
            "pull_request_filter", "Pull requests that start the pipeline: any one filter matching is enough."
        ),
        "from_forks": {
            "description": "Whether pull requests from forks (another repository's branch) may start the pipeline.",
            "type": ["boolean", "null"],
            "default": False,
        },
    }
    if set(properties) != set(fields):
        raise ValueError(f"webhooks/filters.py has trigger fields {fields}; the schema knows {list(properties)}")
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "allOf": [
            {"anyOf": [{"required": ["repository"]}, {"required": ["source_action"]}]},
            {"anyOf": [{"required": ["push"]}, {"required": ["pull_request"]}]},
        ],
    }


def _patterns(description: str) -> dict:
    glob_list = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}}
    fields = filters._PATTERN_FIELDS
    return {
        "type": "object",
        "description": description + " Excludes win over includes.",
        "properties": {
            "includes": {**glob_list, "description": "glob patterns that pass"},
            "excludes": {**glob_list, "description": "glob patterns that do not pass"},
        },
        "additionalProperties": False,
        "anyOf": [{"required": [f], "properties": {f: {"type": "array", "minItems": 1}}} for f in fields],
    }


def _pr_events_pattern() -> str:
    # filters: an event is any alias, in any case (CodePipeline writes OPEN, UPDATED, CLOSED).
    words = sorted(filters._PR_EVENT_ALIASES)
    return "^(?:" + "|".join("".join(f"[{c.lower()}{c.upper()}]" for c in w) for w in words) + ")$"


def _event_trigger(provider: str) -> dict:
    literal = {"type": ["string", "null"], "pattern": LITERAL_PATTERN, "patternErrorMessage": LITERAL_MESSAGE}
    docs = {
        "provider": {"const": provider},
        "source_action": {
            "type": ["string", "null"],
            "description": "A source action that names what is watched "
            f"(its type must be {event_spec.SOURCE_ACTIONS[provider][0]}).",
        },
        "queue": {
            "type": ["string", "null"],
            "description": "SQS queue (name or URL) the events arrive in.",
            "pattern": f"^(?:{event_spec.QUEUE_NAME_RE.pattern}|{event_spec.QUEUE_URL_RE.pattern})$",
            "patternErrorMessage": "an SQS queue name (letters, digits, - and _, at most 80) or a queue URL",
        },
        "aws_conn_id": {
            **literal,
            "description": "Airflow connection that reads the queue (default: the source "
            "action's, else the pipeline's).",
        },
        "region": {
            **literal,
            "description": "Region of the queue (default: the source action's, else the pipeline's).",
        },
        "bucket": {**literal, "description": "The watched S3 bucket."},
        "key": {**literal, "description": "The watched object key."},
        "repository": {**literal, "description": "The watched repository."},
        "image_tag": {**literal, "description": "The watched image tag.", "default": "latest"},
        "branches": {
            "description": "Branch globs: a list (includes), or a mapping with includes and/or excludes.",
            "anyOf": [
                {"$ref": "#/definitions/branch_globs"},
                {
                    "type": "object",
                    "properties": {
                        "includes": {"anyOf": [{"$ref": "#/definitions/branch_globs"}, {"type": "null"}]},
                        "excludes": {"anyOf": [{"$ref": "#/definitions/branch_globs"}, {"type": "null"}]},
                    },
                    "additionalProperties": False,
                    "anyOf": [
                        {"required": ["includes"], "properties": {"includes": {"type": "array"}}},
                        {"required": ["excludes"], "properties": {"excludes": {"type": "array"}}},
                    ],
                },
                {"type": "null"},
            ],
        },
    }
    fields = event_spec.FIELDS[provider]
    missing = [f for f in fields if f not in docs]
    if missing:
        raise ValueError(f"events/spec.py has {provider} trigger fields the schema does not know: {missing}")
    return {
        "type": "object",
        "properties": {f: docs[f] for f in fields},
        "additionalProperties": False,
        "anyOf": [{"required": ["source_action"]}, {"required": list(event_spec.REQUIRED[provider])}],
    }


def _trigger() -> dict:
    event_providers = list(filters.EVENT_PROVIDERS)
    branches = [
        {"if": {"properties": {"provider": {"const": p}}, "required": ["provider"]}, "then": _event_trigger(p)}
        for p in event_providers
    ]
    git = {
        "if": {"properties": {"provider": {"enum": event_providers}}, "required": ["provider"]},
        "else": _git_trigger(),
    }
    return {
        "type": "object",
        "description": "A git trigger (provider github, bitbucket or generic: webhooks filtered by push and "
        "pull_request) or an AWS source event (provider s3, ecr or codecommit).",
        "properties": {
            "provider": {
                "enum": list(filters.PROVIDERS) + event_providers + [None],
                "description": "github (default), bitbucket or generic: git webhooks; s3, ecr "
                "or codecommit: AWS source events.",
            }
        },
        "allOf": branches + [git],
    }


def _filter(fields: tuple, properties: dict, **rest) -> dict:
    if set(properties) != set(fields):
        raise ValueError(f"webhooks/filters.py has filter fields {fields}; the schema knows {list(properties)}")
    return {"type": "object", **rest, "properties": properties, "additionalProperties": False}


def _definitions() -> dict:
    return {
        "reference": {
            "type": "string",
            "pattern": REFERENCE_RE.pattern,
            "description": "#{Namespace.Variable}: an earlier action's output, #{variables.NAME} or "
            "#{codepipeline.PipelineExecutionId}; resolved when the action runs.",
        },
        "variable": _mapping("variable", "A pipeline variable."),
        "stage": _mapping("stage", "A stage: its actions run, by run_order, before the next stage starts."),
        "action": {**_mapping("action", "An action: one task of the pipeline."), "allOf": _action_type_branches()},
        "trigger": _trigger(),
        "push_filter": {
            **_filter(
                filters._PUSH_FIELDS,
                {
                    "branches": _patterns("Branches pushed to."),
                    "tags": _patterns("Tags pushed."),
                    "file_paths": _patterns("Changed files: at least one must pass."),
                },
                description="Either tags (tag pushes) or branches with optional file_paths (branch pushes).",
            ),
            "anyOf": [
                {"required": ["tags"], "not": {"anyOf": [{"required": ["branches"]}, {"required": ["file_paths"]}]}},
                {"required": ["branches"], "not": {"required": ["tags"]}},
            ],
        },
        "pull_request_filter": _filter(
            filters._PR_FIELDS,
            {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "description": "Pull request events (all when left out).",
                    "items": {
                        "type": "string",
                        "anyOf": [{"enum": list(filters.PR_EVENTS)}, {"pattern": _pr_events_pattern()}],
                    },
                },
                "branches": _patterns("The pull request's destination branch."),
                "file_paths": _patterns("Changed files: at least one must pass."),
            },
        ),
        "branch_globs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "string",
                "pattern": r"^(?![\s\S]*#\{)[\s\S]+$",
                "patternErrorMessage": "a non-empty glob without #{...} references",
            },
        },
    }


# --- the schema -------------------------------------------------------------------------------------------------


def _check_tables() -> None:
    """Fail loudly when the action-type table moved away from what this module adds to it."""
    for kind in KINDS:
        if kind not in KIND_SCHEMAS:
            raise ValueError(
                f"action_types.KINDS has {kind!r}, which the schema does not know; add it to schema.KIND_SCHEMAS"
            )
    for type_name, key in KEY_RULES:
        if type_name not in ACTION_TYPES or ACTION_TYPES[type_name].key(key) is None:
            raise ValueError(f"schema.KEY_RULES has a rule for {type_name} key {key!r}, which the table lacks")
    deploy = ACTION_TYPES.get("deploy.codedeploy")
    if deploy is not None:
        named = {
            k
            for rule in PLATFORM_REQUIRED.values()
            for r in [rule, *rule.get("anyOf", [])]
            for k in r.get("required", [])
        }
        unknown = sorted(k for k in named if deploy.key(k) is None)
        if unknown or set(PLATFORM_REQUIRED) != set(_PLATFORM_KEYS):
            raise ValueError(
                f"schema.PLATFORM_REQUIRED is out of step with deploy.codedeploy: {unknown or 'its platforms'}"
            )


def spec_schema() -> dict:
    """The JSON Schema of a pipeline spec file."""
    _check_tables()
    return {
        "$schema": DIALECT,
        "title": "Release orchestrator pipeline spec",
        "description": "A pipeline: stages of actions run as an Airflow DAG. Generated from the loader and the "
        "action-type table (python -m release_orchestrator schema); see docs/pipeline-spec.md.",
        "type": "object",
        "properties": {"pipeline": {"$ref": "#/definitions/pipeline"}},
        "required": ["pipeline"],
        "additionalProperties": False,
        "definitions": {"pipeline": _mapping("pipeline", "The pipeline."), **_definitions()},
    }


def schema_json() -> str:
    """spec_schema() as the text of pipeline-spec.schema.json."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"
