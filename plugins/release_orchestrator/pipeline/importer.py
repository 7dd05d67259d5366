"""Importing an AWS CodePipeline definition (the JSON of `aws codepipeline get-pipeline`) as a pipeline spec.

Each CodePipeline action whose provider has an action type here becomes that type, with its configuration
renamed to the spec's keys. Actions that cannot be mapped are left out of the spec, written in place as
comments holding their original definition, and listed in ImportResult.unmapped. Anything the user has to
finish by hand (a placeholder, a dropped setting, a connection to create) is an ImportResult note and a
comment above the action concerned. docs/import.md describes the mapping.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

from .action_types import ACTION_TYPES
from .errors import SpecError

PLACEHOLDER = "REPLACE_ME"  # marks values the CodePipeline definition does not hold


class ImportInputError(Exception):
    """The input is not a readable CodePipeline definition."""


@dataclass
class Unmapped:
    stage: str
    action: str
    provider: str  # "Category/Owner/Provider vN"
    reason: str

    def __str__(self) -> str:
        return f"stage '{self.stage}', action '{self.action}' ({self.provider}): {self.reason}"


@dataclass
class NotCarried:
    """A stage rule (V2 conditions, failure and success rules) this version cannot run: left out, shown as a comment."""

    stage: str
    rule: str  # beforeEntry, onSuccess, onFailure
    reason: str

    def __str__(self) -> str:
        return f"stage '{self.stage}', {self.rule}: {self.reason}"


@dataclass
class ImportResult:
    name: str
    spec: dict[str, Any]  # {"pipeline": {...}}, as written to `yaml`
    yaml: str
    unmapped: list[Unmapped] = field(default_factory=list)
    not_carried: list[NotCarried] = field(default_factory=list)
    connections: dict[str, str] = field(default_factory=dict)  # Airflow connection id -> IAM role ARN
    notes: list[str] = field(default_factory=list)  # what to review or finish by hand
    errors: list[SpecError] = field(default_factory=list)  # problems the written spec still has

    @property
    def complete(self) -> bool:
        return not self.unmapped and not self.not_carried and not self.errors


def read_codepipeline_json(path: str | Path) -> dict[str, Any]:
    """The pipeline definition in a get-pipeline JSON file, with or without the outer {"pipeline": ...}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImportInputError(f"cannot read {path}: {e}") from e
    return parse_codepipeline_json(text, str(path))


def parse_codepipeline_json(text: str, source: str = "<input>") -> dict[str, Any]:
    """The pipeline definition in get-pipeline JSON text; ImportInputError naming `source` if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportInputError(f"cannot read {source}: {e}") from e
    except RecursionError:  # the decoder stops at the interpreter's recursion limit, cleanly
        raise ImportInputError(f"cannot read {source}: JSON nested deeper than {MAX_DEPTH} levels") from None
    return _unwrap(data, source)


def _unwrap(data: Any, source: str) -> dict[str, Any]:
    if problem := _depth_problem(data):
        raise ImportInputError(f"{source}: {problem}")
    if isinstance(data, dict) and isinstance(data.get("pipeline"), dict):
        metadata = data.get("metadata") or {}
        data = {**data["pipeline"], "metadata": metadata}
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data.get("name"):
        raise ImportInputError(
            f"{source}: not a CodePipeline definition (expected the JSON of `aws codepipeline "
            "get-pipeline`, with a name and a list of stages)"
        )
    problems = sorted(_DEFINITION.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if problems:
        lines = [f"{_json_path(e.absolute_path) or 'the definition'}: {_shape_problem(e)}" for e in problems[:10]]
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ImportInputError(
            f"{source}: not a CodePipeline definition as `aws codepipeline get-pipeline` writes it:\n  "
            + "\n  ".join(lines)
            + more
        )
    return data


# --- the shape of a definition --------------------------------------------------------------------------------

# A get-pipeline document is about 8 levels deep (stages[i].actions[j].configuration, trigger filters); deeper
# input is refused before anything recurses into it.
MAX_DEPTH = 32


def _depth_problem(data: Any) -> str | None:
    """Why `data` cannot be imported as it stands: nested too deeply, or a string that is not valid Unicode
    (a lone surrogate, from a JSON escape such as \\ud800, which no file or terminal can hold). Not recursive."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items = [*value, *value.values()]
        elif isinstance(value, list):
            items = value
        else:
            if isinstance(value, str) and not _encodable(value):
                return f"not valid Unicode: {value.encode('utf-8', 'backslashreplace').decode()[:80]!r}"
            continue
        if depth >= MAX_DEPTH:
            return f"JSON nested deeper than {MAX_DEPTH} levels"
        stack += [(item, depth + 1) for item in items]
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What the importer reads of a definition, and the type it must have (other fields are ignored). CodePipeline
# writes configuration values as strings; a hand-edited true or 3 is read as CodePipeline would read it.
_STRING = {"type": "string"}
_NAMED_LIST = {"type": "array", "items": {"type": "object", "properties": {"name": _STRING}}}
_FILTER = {
    "type": "object",
    "properties": {"includes": {"type": "array", "items": _STRING}, "excludes": {"type": "array", "items": _STRING}},
}
_GIT_FILTERS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "branches": _FILTER,
            "tags": _FILTER,
            "filePaths": _FILTER,
            "events": {"type": "array", "items": _STRING},
        },
    },
}
_DEFINITION_SCHEMA = {
    "type": "object",
    "required": ["name", "stages"],
    "properties": {
        "name": _STRING,
        "pipelineType": _STRING,
        "executionMode": _STRING,
        "roleArn": _STRING,
        "metadata": {"type": "object", "properties": {"pipelineArn": _STRING}},
        "artifactStore": {"type": "object", "properties": {"location": _STRING}},
        "artifactStores": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"location": _STRING}},
        },
        "variables": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": _STRING, "defaultValue": _STRING, "description": _STRING},
            },
        },
        "triggers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "providerType": _STRING,
                    "gitConfiguration": {
                        "type": "object",
                        "properties": {"sourceActionName": _STRING, "push": _GIT_FILTERS, "pullRequest": _GIT_FILTERS},
                    },
                },
            },
        },
        "stages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _STRING,
                    "beforeEntry": {"type": "object"},
                    "onSuccess": {"type": "object"},
                    "onFailure": {"type": "object"},
                    "actions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": _STRING,
                                "actionTypeId": {
                                    "type": "object",
                                    "properties": {
                                        "category": _STRING,
                                        "owner": _STRING,
                                        "provider": _STRING,
                                        "version": _STRING,
                                    },
                                },
                                "runOrder": {"type": "integer"},
                                "timeoutInMinutes": {"type": "integer"},
                                "namespace": _STRING,
                                "region": _STRING,
                                "roleArn": _STRING,
                                "inputArtifacts": _NAMED_LIST,
                                "commands": {"type": "array", "items": _STRING},
                                "outputVariables": {"type": "array", "items": _STRING},
                                "environmentVariables": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {"name": _STRING, "value": _STRING, "type": _STRING},
                                    },
                                },
                                "outputArtifacts": _NAMED_LIST,
                                "configuration": {
                                    "type": "object",
                                    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
_DEFINITION = Draft7Validator(_DEFINITION_SCHEMA)
_JSON_TYPES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer"}


def _json_path(path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _shape_problem(error) -> str:
    """jsonschema's complaint in a few words, without quoting the (possibly large) value."""
    if error.validator == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        return f"expected {' or '.join(_JSON_TYPES.get(t, t) for t in expected)}, got {_json_type(error.instance)}"
    if error.validator == "required":
        return "missing " + ", ".join(f"'{k}'" for k in error.validator_value if k not in error.instance)
    return error.message[:200]


def _json_type(value: Any) -> str:
    for t, name in (
        (bool, "true/false"),
        ((int, float), "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "an object"),
        (type(None), "null"),
    ):
        if isinstance(value, t):
            return name
    return type(value).__name__


def import_codepipeline(definition: dict[str, Any], source: str = "<input>") -> ImportResult:
    """The spec equivalent to `definition` (a get-pipeline JSON document, wrapped or not)."""
    return _Importer(_unwrap(definition, source), source).run()


# --- mapping ------------------------------------------------------------------------------------------------


def _bool(value: Any) -> Any:
    """CodePipeline writes booleans as "true"/"false"; anything else (a #{...} reference) stays as it is."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# The fields of a CodePipeline action the importer reads (others are named in a note).
_ACTION_FIELDS = frozenset(
    {
        "name",
        "actionTypeId",
        "runOrder",
        "namespace",
        "region",
        "roleArn",
        "inputArtifacts",
        "outputArtifacts",
        "configuration",
        "timeoutInMinutes",
    }
)

# CodePipeline V2 stage rules, and why each is not carried (beforeEntry: when a rule cannot be).
_STAGE_RULES = {
    "beforeEntry": "entry conditions with rules that have no equivalent here are not carried: "
    "the stage starts as soon as the previous one succeeds",
    "onSuccess": "success conditions with rules that have no equivalent here are not carried: the stage "
    "succeeds when its actions do",
    "onFailure": "results FAIL, ROLLBACK and RETRY of failed actions are carried; failure conditions, and a "
    "retry of all actions, are not",
}

# A stage entry rule's configuration keys (pipeline/conditions.py).
_RULE_KEYS = {
    "Cron": "cron",
    "TimeZone": "time_zone",
    "AlarmName": "alarm_name",
    "AlarmStates": "alarm_states",
    "Variable": "variable",
    "Value": "value",
    "Operator": "operator",
    "FunctionName": "function_name",
    "UserParameters": "user_parameters",
    "WaitTime": "wait_time",
}

# Why a provider has no action type (for providers without a mapper below).
_UNSUPPORTED = {
    "Jenkins": "Jenkins jobs are custom actions; there is no Jenkins action type (run the job from a CodeBuild "
    "project, or add an action type)",
    "CloudFormationStackSet": "there is no StackSet action type (deploy.cloudformation deploys one stack)",
    "CloudFormationStackInstances": "there is no StackSet action type (deploy.cloudformation deploys one stack)",
    "ServiceCatalog": "there is no Service Catalog action type",
    "AppConfig": "there is no AppConfig action type",
    "DeviceFarm": "there is no Device Farm action type",
    "CodeStarSourceConnection": "only Source actions use connections",
}


# Fields of a CodePipeline action declaration that the mappers read as configuration keys.
_ACTION_LEVEL_KEYS = {
    "commands": "Commands",
    "outputVariables": "OutputVariables",
    "environmentVariables": "EnvironmentVariables",
}


class _Importer:
    def __init__(self, definition: dict[str, Any], source: str):
        self.d = definition
        self.source = source
        self.unmapped: list[Unmapped] = []
        self.not_carried: list[NotCarried] = []
        self.stage_comments: dict[str, list[str]] = {}  # stage name -> comment lines above it
        self.stage_fields: dict[str, dict] = {}  # stage name -> its before_entry, on_success and on_failure
        self.connections: dict[str, str] = {}
        self.notes: list[str] = []  # pipeline-wide
        self.change_triggers: list[dict[str, Any]] = []  # source actions that detect changes, as triggers
        self.producers: dict[str, tuple[str, dict | None]] = {}  # artifact -> (provider, spec action or None)
        self.namespaces = {a.get("namespace") for s in definition["stages"] for a in s.get("actions", [])}
        # CodePipeline provider ("Category/Owner/Provider") -> (action type, the method of this class that maps
        # its configuration), as each entry of the action-type table declares it (ActionType.imported_from).
        self.mappers: dict[str, tuple[str, Callable]] = {
            provider: (t.name, getattr(self, method))
            for t in ACTION_TYPES.values()
            for provider, method in t.imported_from.items()
        }

    def run(self) -> ImportResult:
        d = self.d
        spec: dict[str, Any] = {"name": d["name"]}
        arn = (d.get("metadata") or {}).get("pipelineArn", "")
        region = arn.split(":")[3] if arn.count(":") >= 5 else None
        mode = d.get("executionMode") or "SUPERSEDED"  # CodePipeline's default
        spec["execution_mode"] = mode
        if d.get("roleArn"):
            spec["aws_conn_id"] = self.connection(d["roleArn"])
        if region:
            spec["region"] = region
        store = self.artifact_store(region)
        if store:
            spec["artifact_store"] = store
        if kms_key := self.artifact_kms_key():
            spec["artifact_kms_key"] = kms_key
        variables = [
            {"name": v.get("name"), "default": v.get("defaultValue"), "description": v.get("description")}
            for v in d.get("variables", [])
        ]
        if variables:
            spec["variables"] = [{k: v for k, v in var.items() if v is not None} for var in variables]
        stages = [self.stage(s) for s in d["stages"]]
        self.drop_unwritten_inputs(stages)
        self.stage_comments = {s["name"]: self.stage_rules(s, s is d["stages"][0]) for s in d["stages"]}
        triggers = [self.trigger(t) for t in d.get("triggers") or []]
        # CodePipeline starts a run on a source change when the action detects changes and no trigger of
        # the pipeline names that action (a trigger overrides DetectChanges): the same, as a trigger.
        named = {t.get("source_action") for t in triggers}
        triggers += [t for t in self.change_triggers if t["source_action"] not in named]
        if triggers:
            spec["triggers"] = triggers
        text = _render(d, self.source, spec, stages, self)
        spec["stages"] = [
            {
                "name": name,
                **self.stage_fields.get(name, {}),
                "actions": [item[1] for item in items if item[0] == "action"],
            }
            for name, items in stages
            if any(item[0] == "action" for item in items)
        ]
        action_notes = [
            f"stage '{s}', action '{a['name']}': {note}"
            for s, items in stages
            for kind, a, notes in items
            if kind == "action"
            for note in notes
        ]

        from .loader import parse_spec_text  # here, not at the top: the loader does not need the importer

        _, errors = parse_spec_text(text, self.source)
        return ImportResult(
            name=d["name"],
            spec={"pipeline": spec},
            yaml=text,
            unmapped=self.unmapped,
            not_carried=self.not_carried,
            connections=self.connections,
            notes=self.notes + action_notes,
            errors=errors,
        )

    def artifact_store(self, region: str | None) -> str | dict[str, str] | None:
        """artifactStore becomes one store; artifactStores (a pipeline acting in several regions) a mapping."""
        self.bucket = None
        if self.d.get("artifactStore"):
            self.bucket = self.d["artifactStore"].get("location")
            return f"s3://{self.bucket}" if self.bucket else None
        stores = {name: f"s3://{store.get('location')}" for name, store in (self.d.get("artifactStores") or {}).items()}
        if stores:
            self.bucket = (stores.get(region) or next(iter(stores.values()))).removeprefix("s3://")
            return stores
        return None

    def artifact_kms_key(self) -> str | dict[str, str] | None:
        """The stores' encryptionKey ids (CodePipeline's customer managed keys), shaped as artifact_store."""

        def key_of(store: Any) -> str | None:
            key = store.get("encryptionKey") if isinstance(store, dict) else None
            return key.get("id") if isinstance(key, dict) and isinstance(key.get("id"), str) else None

        if self.d.get("artifactStore"):
            return key_of(self.d["artifactStore"])
        stores = self.d.get("artifactStores") or {}
        keys = {region: key_of(store) for region, store in stores.items()} if isinstance(stores, dict) else {}
        return {region: key for region, key in keys.items() if key} or None

    def drop_unwritten_inputs(self, stages: list) -> None:
        """An input artifact whose writer was not carried (an unmapped action, or a type that writes no
        artifacts here) is left out of its readers, saying so: the spec would not validate with it."""
        actions = [action for _, items in stages for kind, action, _ in items if kind == "action"]
        written = {name for action in actions for name in action.get("output_artifacts") or [] if isinstance(name, str)}
        for _, items in stages:
            for kind, action, notes in items:
                inputs = (action.get("input_artifacts") or []) if kind == "action" else []
                missing = [n for n in inputs if isinstance(n, str) and n not in written]
                if missing:
                    action["input_artifacts"] = [n for n in inputs if n not in missing]
                    if not action["input_artifacts"]:
                        del action["input_artifacts"]
                    notes.append(f"input artifact(s) {', '.join(missing)} left out: no carried action writes them")

    def fit_artifacts(self, action: dict, type_name: str, notes: list) -> None:
        """Leave out the artifacts an action type does not pass (yet), saying so."""
        slots = ACTION_TYPES[type_name].artifacts
        for key, most, what in (
            ("input_artifacts", slots.inputs[1], "input"),
            ("output_artifacts", slots.outputs[1], "output"),
        ):
            names = action.get(key) or []
            if len(names) > most:
                action[key] = names[:most]
                if not action[key]:
                    del action[key]
                dropped = names[most:]
                notes.append(
                    f"{what} artifact(s) {', '.join(map(str, dropped))} left out: {type_name} "
                    + (f"passes at most {most} {what} artifact" if most else f"passes no {what} artifacts")
                )

    def connection(self, role_arn: str) -> str:
        """The Airflow connection to create for a role CodePipeline assumed (named after the role)."""
        for conn_id, arn in self.connections.items():
            if arn == role_arn:
                return conn_id
        parts = role_arn.split(":")
        account = parts[4] if len(parts) > 5 else ""
        conn_id = f"aws_{_slug(role_arn.rsplit('/', 1)[-1])}"
        if conn_id in self.connections:  # same role name in another account
            conn_id = f"{conn_id}_{account}"
        self.connections[conn_id] = role_arn
        return conn_id

    def trigger(self, t: dict) -> dict:
        git = t.get("gitConfiguration") or {}
        out: dict[str, Any] = {"source_action": git.get("sourceActionName")}
        if t.get("providerType", "CodeStarSourceConnection") != "CodeStarSourceConnection":
            self.notes.append(f"trigger provider {t['providerType']} imported as a git trigger")
        for cp_key, key in (("push", "push"), ("pullRequest", "pull_request")):
            if git.get(cp_key):
                out[key] = [_trigger_filter(f) for f in git[cp_key]]
        for index, pr_filter in enumerate(out.get("pull_request", [])):
            # Pull-request webhooks carry no list of changed files, so such a filter could never be checked.
            if pr_filter.pop("file_paths", None) is not None:
                self.notes.append(
                    f"trigger on {out['source_action']}: the file path filter of pull request filter "
                    f"{index} was left out (pull request webhooks do not list changed files)"
                )
        return out

    def stage_rules(self, stage: dict, first: bool) -> list[str]:
        """The stage's V2 rules (beforeEntry, onSuccess, onFailure), each carried or listed as not carried;
        returns the comment lines that show the ones left out in the written spec."""
        shown = []
        for rule in _STAGE_RULES:
            value = stage.get(rule)
            if not value:
                continue
            if rule == "onFailure" and set(value) == {"result"} and value["result"] == "FAIL":
                continue  # what a failed stage does here anyway: the run fails and later stages do not start
            reason = _STAGE_RULES[rule]
            if rule == "onFailure" and set(value) == {"result"} and value["result"] == "ROLLBACK":
                if not first:
                    self.stage_fields.setdefault(stage["name"], {})["on_failure"] = {"result": "ROLLBACK"}
                    continue
                reason = "the first stage cannot be rolled back here (there is no earlier stage to reuse)"
            if (
                rule == "onFailure"
                and value.get("result") == "RETRY"
                and set(value) <= {"result", "retryConfiguration"}
            ):
                mode = (value.get("retryConfiguration") or {}).get("retryMode") or "FAILED_ACTIONS"
                if mode == "FAILED_ACTIONS":
                    carried = {"result": "RETRY", "retry_mode": mode, "max_attempts": 1}
                    self.stage_fields.setdefault(stage["name"], {})["on_failure"] = carried
                    continue
                reason = f"retry mode {mode} is not retried automatically here (retry all actions by hand)"
            if rule in ("beforeEntry", "onSuccess"):
                condition, problem = self.condition(value, rule)
                if condition is not None and rule == "onSuccess" and condition.get("result") == "ROLLBACK" and first:
                    condition, problem = None, "the first stage cannot be rolled back here"
                if condition is not None:
                    key = "before_entry" if rule == "beforeEntry" else "on_success"
                    self.stage_fields.setdefault(stage["name"], {})[key] = condition
                    continue
                then = (
                    "starts as soon as the previous one succeeds"
                    if rule == "beforeEntry"
                    else "succeeds when its actions do"
                )
                reason = f"{problem}; the stage {then}"
            self.not_carried.append(NotCarried(stage["name"], rule, reason))
            shown.append(f"NOT CARRIED: {rule}: {reason}")
            shown.append(f"  {rule}: {json.dumps(value, separators=(',', ':'))}")
        return shown

    def condition(self, value: dict, rule_name: str) -> tuple[dict | None, str | None]:
        """beforeEntry as `before_entry`, onSuccess as `on_success` (pipeline/conditions.py), or None and why it
        cannot be carried."""
        from .conditions import RESULTS, RULE_TYPES, SUCCESS_RESULTS

        entry = rule_name == "beforeEntry"
        results = RESULTS if entry else SUCCESS_RESULTS
        conditions = value.get("conditions") if isinstance(value, dict) else None
        if not isinstance(conditions, list) or len(conditions) != 1 or not isinstance(conditions[0], dict):
            return None, f"{rule_name} holds one condition"
        result = conditions[0].get("result") or "FAIL"
        if result not in results:
            return None, f"result {result} has no equivalent ({' or '.join(results)})"
        rules = []
        for rule in conditions[0].get("rules") or []:
            provider = (rule.get("ruleTypeId") or {}).get("provider")
            if provider not in RULE_TYPES or (provider == "DeploymentWindow" and not entry):
                return None, f"rule {rule.get('name')!r}: rule type {provider} has no equivalent"
            configuration = {}
            for key, item in (rule.get("configuration") or {}).items():
                if key == "WaitTime" and entry:
                    continue  # how long an alarm is watched after a stage: entry rules are checked once
                if key not in _RULE_KEYS:
                    return None, f"rule {rule.get('name')!r}: configuration key {key} has no equivalent"
                if key == "AlarmStates" and isinstance(item, str):
                    item = [state.strip() for state in item.split(",") if state.strip()]
                if key == "WaitTime":
                    try:
                        item = float(item) if "." in str(item) else int(item)
                    except ValueError:
                        return None, f"rule {rule.get('name')!r}: WaitTime {item!r} is not a number of minutes"
                configuration[_RULE_KEYS[key]] = item
            carried: dict[str, Any] = {"name": rule.get("name"), "type": provider, "configuration": configuration}
            if rule.get("region"):
                carried["region"] = rule["region"]
            if rule.get("roleArn"):
                carried["aws_conn_id"] = self.connection(rule["roleArn"])
            rules.append(carried)
        return ({"result": result, "rules": rules} if result != "FAIL" else {"rules": rules}), None

    def stage(self, stage: dict) -> tuple[str, list]:
        """(name, items); an item is ("action", spec action, notes) or ("unmapped", CodePipeline action, reason)."""
        items = []
        for cp in stage.get("actions", []):
            type_id = cp.get("actionTypeId") or {}
            key = (type_id.get("category"), type_id.get("owner"), type_id.get("provider"))
            provider = f"{'/'.join(str(k) for k in key)} v{type_id.get('version', '1')}"
            type_name, mapper = self.mappers.get("/".join(str(k) for k in key), (None, None))
            if mapper is None:
                reason = _UNSUPPORTED.get(type_id.get("provider"), "no action type for this provider")
                if type_id.get("owner") == "Custom" and type_id.get("provider") not in _UNSUPPORTED:
                    reason = "custom action types have no equivalent"
                self.unmapped.append(Unmapped(stage["name"], cp.get("name"), provider, reason))
                items.append(("unmapped", cp, f"{provider}: {reason}"))
                for artifact in cp.get("outputArtifacts", []):
                    self.producers[artifact.get("name")] = (key[2], None)
                continue
            action, notes = self.action(cp, type_name, mapper)
            for artifact in action.get("output_artifacts", []):
                self.producers[artifact] = (key[2], action)
            items.append(("action", action, notes))
        return stage["name"], items

    def action(self, cp: dict, type_name: str, mapper: Callable) -> tuple[dict, list[str]]:
        notes: list[str] = []
        action: dict[str, Any] = {"name": cp.get("name"), "type": type_name}
        if cp.get("runOrder", 1) != 1:
            action["run_order"] = cp["runOrder"]
        if cp.get("namespace"):
            action["namespace"] = cp["namespace"]
        if cp.get("region"):
            action["region"] = cp["region"]
        if cp.get("roleArn"):
            action["aws_conn_id"] = self.connection(cp["roleArn"])
            notes.append(f"ran as {cp['roleArn']}: create Airflow connection '{action['aws_conn_id']}' for it")
        for cp_key, key in (("inputArtifacts", "input_artifacts"), ("outputArtifacts", "output_artifacts")):
            names = [a.get("name") for a in cp.get(cp_key, [])]
            if names:
                action[key] = names
        if cp.get("timeoutInMinutes") is not None:
            action["timeout_minutes"] = cp["timeoutInMinutes"]
        cfg = dict(cp.get("configuration") or {})
        # Compute actions (Commands) carry these beside their configuration: mapped with it.
        for cp_key, key in _ACTION_LEVEL_KEYS.items():
            if cp_key in cp:
                cfg.setdefault(key, cp[cp_key])
        for key in sorted(set(cp) - _ACTION_FIELDS - set(_ACTION_LEVEL_KEYS)):
            notes.append(f"CodePipeline action field {key}={cp[key]!r} has no equivalent and was left out")
        action["configuration"] = mapper(cfg, action, notes)
        self.fit_artifacts(action, type_name, notes)
        for key in cfg:  # whatever the mapper did not consume
            notes.append(f"CodePipeline configuration {key}={cfg[key]!r} has no equivalent and was left out")
        return action, notes

    # One method per provider (named by its action type's `imported_from`): the action's configuration,
    # consuming from `cfg` the CodePipeline keys it maps; `notes` collects what the reader should know.

    def github(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {"repository": cfg.pop("FullRepositoryId", PLACEHOLDER), "branch": cfg.pop("BranchName", PLACEHOLDER)}
        if cfg.pop("ConnectionArn", None) is not None:
            notes.append(
                "ConnectionArn left out: pushes reach the pipeline at the webhook endpoint "
                "(add the repository's webhook and secret, docs/triggers.md)"
            )
        if cfg.pop("OutputArtifactFormat", "CODE_ZIP") != "CODE_ZIP":
            notes.append(
                "OutputArtifactFormat CODEBUILD_CLONE_REF left out: the source writes the commit's files (CODE_ZIP); "
                "a build that must clone gets the commit through source_version"
            )
        if _bool(cfg.pop("DetectChanges", True)) is not False:  # CodePipeline's default: true
            self.change_triggers.append(
                {"source_action": action["name"], "push": [{"branches": {"includes": [out["branch"]]}}]}
            )
        return out

    def github_v1(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {
            "repository": f"{cfg.pop('Owner', PLACEHOLDER)}/{cfg.pop('Repo', PLACEHOLDER)}",
            "branch": cfg.pop("Branch", PLACEHOLDER),
        }
        if _bool(cfg.pop("PollForSourceChanges", True)) is not False:  # CodePipeline's default: true
            self.change_triggers.append(
                {"source_action": action["name"], "push": [{"branches": {"includes": [out["branch"]]}}]}
            )
        if cfg.pop("OAuthToken", None) is not None:
            notes.append(
                "GitHub (version 1) used an OAuth token, left out: pushes reach the pipeline at the webhook "
                "endpoint (add the repository's webhook and secret, docs/triggers.md)"
            )
        return out

    def codecommit(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {"repository": cfg.pop("RepositoryName", PLACEHOLDER), "branch": cfg.pop("BranchName", PLACEHOLDER)}
        self.poll(cfg, action, "codecommit")
        if cfg.get("OutputArtifactFormat") == "CODE_ZIP":
            cfg.pop("OutputArtifactFormat")
        return out

    def s3(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {"bucket": cfg.pop("S3Bucket", PLACEHOLDER), "object_key": cfg.pop("S3ObjectKey", PLACEHOLDER)}
        self.poll(cfg, action, "s3")
        return out

    def poll(self, cfg: dict, action: dict, provider: str) -> None:
        """PollForSourceChanges: true becomes an event trigger on the action's source. False usually means
        an EventBridge rule starts the pipeline, which is what the event trigger is here too, so only true maps."""
        if _bool(cfg.pop("PollForSourceChanges", None)) is True:
            self.change_triggers.append({"provider": provider, "source_action": action["name"]})

    def ecr(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {"repository": cfg.pop("RepositoryName", PLACEHOLDER)}
        if "ImageTag" in cfg:
            out["image_tag"] = cfg.pop("ImageTag")
        return out

    def codebuild(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {"project_name": cfg.pop("ProjectName", PLACEHOLDER)}
        self.environment_variables(cfg, out, notes)
        if "PrimarySource" in cfg:
            out["primary_source"] = cfg.pop("PrimarySource")
        if _bool(cfg.get("BatchEnabled")) is False:
            cfg.pop("BatchEnabled")
        if _bool(cfg.get("CombineArtifacts")) is False:
            cfg.pop("CombineArtifacts")
        return out

    def environment_variables(self, cfg: dict, out: dict, notes: list) -> None:
        """CodeBuild's EnvironmentVariables (a JSON string or a list of {name, value, type}) into `out`."""
        if "EnvironmentVariables" not in cfg:
            return
        raw = cfg.pop("EnvironmentVariables")
        try:
            env = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(env, list) or not all(isinstance(e, dict) and "name" in e for e in env):
                raise ValueError("expected a list of {name, value, type}")
            if problem := _depth_problem(env):
                raise ValueError(problem)
        except RecursionError:  # the decoder stops at the interpreter's recursion limit, cleanly
            notes.append(f"EnvironmentVariables nested deeper than {MAX_DEPTH} levels were left out")
        except ValueError as e:
            notes.append(f"EnvironmentVariables could not be read ({e}) and were left out: {raw!r}")
        else:
            if all(e.get("type", "PLAINTEXT") == "PLAINTEXT" for e in env):
                out["environment_variables"] = {e["name"]: e.get("value", "") for e in env}
            else:
                out["environment_variables"] = [
                    {"name": e["name"], "value": e.get("value", ""), "type": e.get("type", "PLAINTEXT")} for e in env
                ]

    def commands(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {"commands": _string_list(cfg.pop("Commands", None), "Commands", notes)}
        if not out["commands"]:
            out["commands"] = [f"echo {PLACEHOLDER}"]
            notes.append("the action had no commands: commands is a placeholder")
        variables = _string_list(cfg.pop("OutputVariables", None), "OutputVariables", notes)
        if variables:
            out["output_variables"] = variables
        out["project_name"] = PLACEHOLDER
        notes.append(
            "project_name is a placeholder: CodePipeline ran the commands in CodeBuild compute it manages; name "
            "a CodeBuild project to run them in (one with no source works, see docs/operators.md, compute.commands)"
        )
        self.environment_variables(cfg, out, notes)
        for key in sorted(cfg):  # compute settings: the project's environment decides them here
            notes.append(f"{key}={cfg.pop(key)!r} was left out: set it on the CodeBuild project's environment")
        return out

    def ecs(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {
            "cluster_name": cfg.pop("ClusterName", PLACEHOLDER),
            "service_name": cfg.pop("ServiceName", PLACEHOLDER),
        }
        file_name = cfg.pop("FileName", "imagedefinitions.json")
        artifact = (action.get("input_artifacts") or ["?"])[0]
        read: list[str] = []
        if self.producers.get(artifact, (None, None))[0] == "ECR":
            out["image_definitions"] = [{"name": PLACEHOLDER, "imageUri": self.image(artifact, notes)}]
            notes.append(
                "image_definitions: the container name is a placeholder: name the container of the service's "
                "task definition that runs this image"
            )
        else:
            out["image_definitions"] = self.artifact_file(artifact, file_name, "image_definitions", read, notes)
        self.keep_read_inputs(action, read, notes)
        if "DeploymentTimeout" in cfg:
            raw = cfg.pop("DeploymentTimeout")
            try:
                out["deployment_timeout"] = int(raw)
            except (TypeError, ValueError):
                notes.append(f"DeploymentTimeout={raw!r} is not a number of minutes and was left out")
        return out

    def manual(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {}
        for cp_key, key in (
            ("NotificationArn", "sns_topic_arn"),
            ("CustomData", "custom_data"),
            ("ExternalEntityLink", "external_entity_link"),
        ):
            if cp_key in cfg:
                out[key] = cfg.pop(cp_key)
        return out

    def codedeploy(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {
            "application_name": cfg.pop("ApplicationName", PLACEHOLDER),
            "deployment_group_name": cfg.pop("DeploymentGroupName", PLACEHOLDER),
            "platform": "server",
        }
        artifact = (action.get("input_artifacts") or [None])[0]
        if not self.carried(artifact):  # the revision is the input artifact; without one carried, name it
            out.update({"revision_s3_bucket": self.bucket or PLACEHOLDER, "revision_s3_key": f"{PLACEHOLDER}.zip"})
            notes.append(
                f"the revision was artifact '{artifact or '?'}', which no imported action writes: revision_s3_key "
                "is a placeholder, name the bundle"
            )
        return out

    def codedeploy_ecs(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {
            "application_name": cfg.pop("ApplicationName", PLACEHOLDER),
            "deployment_group_name": cfg.pop("DeploymentGroupName", PLACEHOLDER),
            "platform": "ecs",
        }
        taskdef_artifact = cfg.pop("TaskDefinitionTemplateArtifact", "?")
        taskdef_path = cfg.pop("TaskDefinitionTemplatePath", "taskdef.json")
        read: list[str] = []  # the input artifacts the deployment reads files from
        out["task_definition_template"] = self.artifact_file(
            taskdef_artifact, taskdef_path, "task_definition_template", read, notes
        )
        # The container and port that take traffic are in the AppSpec template, which the definition only names.
        appspec = cfg.pop("AppSpecTemplatePath", "appspec.yaml")
        appspec_artifact = cfg.pop("AppSpecTemplateArtifact", "?")
        if self.carried(appspec_artifact):  # the container, port and hooks are read from it, as in CodePipeline
            out["appspec_template"] = f"{appspec_artifact}::{appspec}"
            read.append(appspec_artifact)
        else:
            out["container_name"] = PLACEHOLDER
            out["container_port"] = 80
            notes.append(
                f"container_name and container_port are placeholders: use LoadBalancerInfo's ContainerName "
                f"and ContainerPort from {appspec} in artifact '{appspec_artifact}' (its Hooks go in hooks)"
            )
        # Image1ContainerName is the placeholder CodePipeline replaced in the task definition, not a container.
        placeholder = cfg.pop("Image1ContainerName", "IMAGE1_NAME")
        image_artifact = cfg.pop("Image1ArtifactName", None)
        if self.producers.get(image_artifact, (None, None))[0] != "ECR" and self.carried(image_artifact):
            out["image"] = f"{image_artifact}::imageDetail.json"
            read.append(image_artifact)
        else:
            out["image"] = self.image(image_artifact, notes)
        if placeholder != "IMAGE1_NAME":  # the deployment replaces <IMAGE1_NAME>, else sets container_name's image
            notes.append(
                f"the task definition's <{placeholder}> was replaced by the image in CodePipeline; here the "
                "image replaces <IMAGE1_NAME>, or else is set on container_name: rename the placeholder"
            )
        extra = sorted(k for k in cfg if re.fullmatch(r"Image[2-4](ArtifactName|ContainerName)", k))
        if extra:
            notes.append(f"only one image is set per deployment; {', '.join(extra)} were left out")
            for k in extra:
                cfg.pop(k)
        self.keep_read_inputs(action, read, notes)
        return out

    def carried(self, artifact: Any) -> bool:
        """Whether an imported action writes `artifact` (its writer was mapped to a type that writes artifacts)."""
        return isinstance(artifact, str) and self.producers.get(artifact, (None, None))[1] is not None

    def artifact_file(self, artifact: Any, path: str, key: str, read: list[str], notes: list) -> str:
        """`key`'s value for the file CodePipeline read from `artifact`: 'Artifact::path' when the artifact is
        carried (then noted in `read`), else the path of a file to put next to the spec."""
        if self.carried(artifact):
            read.append(artifact)
            return f"{artifact}::{path}"
        notes.append(
            f"{key}: CodePipeline read {path} from artifact '{artifact or '?'}', which no imported action writes; "
            "put that file next to this spec (the path is relative to the spec's directory)"
        )
        return path

    def keep_read_inputs(self, action: dict, read: list[str], notes: list) -> None:
        """Leave out the input artifacts the action reads no file of (its type reads inputs only that way)."""
        inputs = action.get("input_artifacts") or []
        unread = [a for a in inputs if a not in read]
        action["input_artifacts"] = [a for a in inputs if a in read]
        if not action["input_artifacts"]:
            del action["input_artifacts"]
        if unread:
            notes.append(f"input artifact(s) {', '.join(map(str, unread))} left out: the action reads no file of them")

    def s3_deploy(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {"bucket_name": cfg.pop("BucketName", PLACEHOLDER)}
        out.update(self.bundle_source(action, notes))
        out["extract"] = _bool(cfg.pop("Extract", True))
        for cp_key, key in (
            ("ObjectKey", "object_key"),
            ("KMSEncryptionKeyARN", "kms_encryption_key_arn"),
            ("CannedACL", "canned_acl"),
            ("CacheControl", "cache_control"),
        ):
            if cp_key in cfg:
                out[key] = cfg.pop(cp_key)
        return out

    def bundle_source(self, action: dict, notes: list) -> dict[str, str]:
        """deploy.s3 and deploy.elasticbeanstalk deploy their input artifact; one no carried action writes
        gets a `source` to fill in."""
        artifact = (action.get("input_artifacts") or [None])[0]
        if self.carried(artifact):
            return {}
        notes.append(
            f"CodePipeline deployed artifact '{artifact or 'the input artifact'}', which no imported action writes: "
            "set source to the s3:// URI of that zip (its key is a placeholder)"
        )
        return {"source": f"s3://{self.bucket or PLACEHOLDER}/{PLACEHOLDER}/{artifact or 'bundle'}.zip"}

    def lambda_invoke(self, cfg: dict, action: dict, notes: list) -> dict:
        out = {"function_name": cfg.pop("FunctionName", PLACEHOLDER)}
        if "UserParameters" in cfg:
            out["user_parameters"] = cfg.pop("UserParameters")
        if action.get("output_artifacts"):
            notes.append(
                "the function gets no output artifacts (the job's outputArtifacts is empty): return results as "
                "outputVariables"
            )
        notes.append(
            "the function must return its result instead of calling PutJobSuccessResult / PutJobFailureResult "
            '(return {"status": "failed", "message": ...} or raise to fail), see docs/operators.md'
        )
        return out

    def stepfunctions(self, cfg: dict, action: dict, notes: list) -> dict:
        out: dict[str, Any] = {"state_machine_arn": cfg.pop("StateMachineArn", PLACEHOLDER)}
        if cfg.get("ExecutionNamePrefix"):
            out["execution_name_prefix"] = cfg.pop("ExecutionNamePrefix")
        cfg.pop("ExecutionNamePrefix", None)
        input_type = cfg.pop("InputType", "Literal")
        value = cfg.pop("Input", None)
        read: list[str] = []
        if input_type == "FilePath" and value:
            artifact = (action.get("input_artifacts") or [None])[0]
            out["input"] = self.artifact_file(artifact, value, "input", read, notes)
        elif value:
            try:
                parsed = json.loads(value) if isinstance(value, str) else None
            except (ValueError, RecursionError):  # not JSON, or nested beyond the decoder's limit
                parsed = None
            if isinstance(parsed, (dict, list)) and not _depth_problem(parsed):
                out["input"] = parsed
            else:
                notes.append(
                    f"Input is not a JSON object or array, which input takes, and was left out (the execution "
                    f"gets {{}}): {value!r}"
                )
        self.keep_read_inputs(action, read, notes)
        if action.get("output_artifacts"):
            notes.append(
                "the execution's output is not written to an output artifact: its top-level keys are the "
                "action's output variables (#{Namespace.Key})"
            )
        return out

    def elasticbeanstalk(self, cfg: dict, action: dict, notes: list) -> dict:
        return {
            "application_name": cfg.pop("ApplicationName", PLACEHOLDER),
            "environment_name": cfg.pop("EnvironmentName", PLACEHOLDER),
            **self.bundle_source(action, notes),
        }

    def cloudformation(self, cfg: dict, action: dict, notes: list) -> dict:
        mode = cfg.pop("ActionMode", PLACEHOLDER)
        out: dict[str, Any] = {"action_mode": mode, "stack_name": cfg.pop("StackName", PLACEHOLDER)}
        if mode in ("CHANGE_SET_REPLACE", "CHANGE_SET_EXECUTE"):
            out["change_set_name"] = cfg.pop("ChangeSetName", PLACEHOLDER)
        if "RoleArn" in cfg:
            out["role_arn"] = cfg.pop("RoleArn")
        if "OutputFileName" in cfg:
            notes.append(
                f"OutputFileName {cfg.pop('OutputFileName')} left out: the stack's outputs are this action's "
                "output variables (#{Namespace.OutputKey}) instead of a file in an output artifact"
            )
        content = ("TemplatePath", "TemplateConfiguration", "ParameterOverrides", "Capabilities")
        if mode not in ("CREATE_UPDATE", "REPLACE_ON_FAILURE", "CHANGE_SET_REPLACE"):
            left = [key for key in content if key in cfg]
            for key in left:
                cfg.pop(key)
            if left:
                notes.append(f"{', '.join(left)} left out: not used by ActionMode {mode}")
            return out
        read: list[str] = []
        for cp_key, key in (("TemplatePath", "template"), ("TemplateConfiguration", "template_configuration")):
            if cp_key not in cfg:
                continue
            artifact, _, path = str(cfg.pop(cp_key)).rpartition("::")
            out[key] = self.artifact_file(artifact, path, key, read, notes) if path else PLACEHOLDER
        self.keep_read_inputs(action, read, notes)
        if "template" not in out:
            out["template"] = PLACEHOLDER
        if "ParameterOverrides" in cfg:
            out["parameter_overrides"] = self.parameter_overrides(cfg.pop("ParameterOverrides"), notes)
        if "Capabilities" in cfg:
            out["capabilities"] = [c.strip() for c in str(cfg.pop("Capabilities")).split(",") if c.strip()]
        return out

    def parameter_overrides(self, raw: Any, notes: list) -> dict[str, str]:
        """ParameterOverrides (JSON text); Fn::GetParam / Fn::GetArtifactAtt read artifacts, which are not carried."""
        try:
            overrides = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(overrides, dict):
                raise ValueError("expected a JSON object")
        except (ValueError, RecursionError) as e:
            notes.append(f"ParameterOverrides could not be read ({e}) and were left out: {raw!r}")
            return {}
        out = {}
        for name, value in overrides.items():
            if isinstance(value, (dict, list)):
                notes.append(
                    f"parameter_overrides.{name} is a placeholder: CodePipeline computed it from an artifact "
                    f"({json.dumps(value)}); use a #{{...}} reference or a value"
                )
                value = PLACEHOLDER
            out[str(name)] = str(value)
        return out

    def image(self, artifact: str | None, notes: list) -> str:
        """#{Ns.ImageURI} of the ECR source that produced `artifact`, giving that action a namespace if needed."""
        provider, source = self.producers.get(artifact, (None, None))
        if provider == "ECR" and source is not None:
            if not source.get("namespace"):
                ns = source["name"] if source["name"] not in self.namespaces else f"{source['name']}Image"
                source["namespace"] = ns
                self.namespaces.add(ns)
            return f"#{{{source['namespace']}.ImageURI}}"
        notes.append(f"image is a placeholder: CodePipeline took it from artifact '{artifact}' (imageDetail.json)")
        return f"{PLACEHOLDER}: image URI"


def _string_list(value: Any, key: str, notes: list) -> list[str]:
    """A list of strings given as a list, a JSON list or one string (CodePipeline writes configuration as strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else [value]
        except ValueError:
            value = [value]
    if not isinstance(value, list):
        notes.append(f"{key}={value!r} is not a list and was left out")
        return []
    return [str(item) for item in value]


def _trigger_filter(f: dict) -> dict:
    names = {"branches": "branches", "tags": "tags", "filePaths": "file_paths", "events": "events"}
    return {names.get(k, k): v for k, v in f.items()}


# --- writing ------------------------------------------------------------------------------------------------

_ACTION_KEY_ORDER = (
    "name",
    "type",
    "run_order",
    "namespace",
    "region",
    "aws_conn_id",
    "timeout_minutes",
    "input_artifacts",
    "output_artifacts",
    "configuration",
)


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)  # indent lists under their key


def _dump(data: Any, indent: int) -> list[str]:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    return [" " * indent + line for line in text.rstrip("\n").split("\n")]


def _comment(text: str, indent: int) -> list[str]:
    """`text` as comment lines. What a definition holds may end a YAML comment (a line break, \\u2028) or make
    the file unreadable (a control character): those characters are written as escapes."""
    return [" " * indent + ("# " + _printable(line)).rstrip() for line in re.split(r"\r\n|\r|\n", text)]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c == "\t" else f"\\u{ord(c):04x}" for c in text)


def _render(d: dict, source: str, spec: dict, stages: list, imported: _Importer) -> str:
    unmapped, connections, notes = imported.unmapped, imported.connections, imported.notes
    # Only comments are written by hand; every value goes through the YAML dumper, which quotes it.
    out = _comment(
        f"Imported from AWS CodePipeline pipeline '{d['name']}' ({d.get('pipelineType', 'V1')}), {source}.\n"
        "Review the notes here and above actions before relying on it; docs/import.md explains the mapping.",
        0,
    )
    if connections:
        out += [
            "#",
            "# Airflow connections to create (one per IAM role CodePipeline assumed; the role must trust "
            "the credentials Airflow runs with):",
        ]
        for conn_id, arn in connections.items():
            extra = shlex.quote(json.dumps({"role_arn": arn}))
            out += _comment(f"  airflow connections add {conn_id} --conn-type aws --conn-extra {extra}", 0)
    if unmapped:
        out += ["#", "# Not imported (left in place as comments):"]
        out += [line for u in unmapped for line in _comment(f"  {u}", 0)]
    if imported.not_carried:
        out += ["#", "# Stage rules not carried (left in place as comments above their stages):"]
        out += [line for n in imported.not_carried for line in _comment(f"  {n}", 0)]
    if notes:
        out += ["#", "# Notes:"] + [line for n in notes for line in _comment(f"  {n}", 0)]
    out.append("pipeline:")
    out += _dump(spec, 2)
    out.append("  stages:")
    for name, items in stages:
        out += (
            _comment("\n".join(imported.stage_comments.get(name, [])), 4) if imported.stage_comments.get(name) else []
        )
        mapped = [item for item in items if item[0] == "action"]
        if not mapped:
            out += _comment(f"NOT IMPORTED: stage '{name}': none of its actions could be imported", 4)
            out += _comment("\n".join(_dump([{"name": name}], 0)), 4)
            out.append("    #   actions:")
        else:
            out += _dump([{"name": name}], 4)
            if name in imported.stage_fields:
                out += _dump(imported.stage_fields[name], 6)
            out.append("      actions:")
        for kind, action, extra in items:
            if kind == "action":
                out += _comment("\n".join(extra), 8) if extra else []
                ordered = {k: action[k] for k in _ACTION_KEY_ORDER if action.get(k) not in (None, {}, [])}
                out += _dump([ordered], 8)
            else:
                out += _comment(f"NOT IMPORTED: {extra}", 8)
                out += _comment("\n".join(_dump([action], 0)), 8)
    return "\n".join(out) + "\n"
