"""The action types a spec can use: one entry in ACTION_TYPES per type.

Each entry says which category the type belongs to, which configuration keys it takes (required or optional,
with a one-line description, the kind of value and the default), which output variables it produces for
#{Namespace.Variable} references, optionally a check for rules that span several keys, and how it runs:
its operator (imported when a DAG is built, so parsing a spec imports no operator), the keyword arguments
the operator always gets, whether it talks to AWS (then it gets the action's connection and region) and
whether it waits on the shared batched poller (then it gets the poll interval). The validator, the
compiler, the schema, the docs and the importer all read this table, so adding a type is adding an
entry here and writing its operator.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from release_orchestrator import settings

from .files import artifact_file
from .syntax import has_reference, parse_duration

# CodePipeline's action categories; a type's name starts with its category in lower case.
CATEGORIES = ("Source", "Build", "Test", "Approval", "Deploy", "Invoke", "Compute")

# What a configuration value may be. A string holding a #{...} reference is accepted for any kind, since
# the value is only known when the action runs.
KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "mapping": "a mapping",
    "str|int": "a string or an integer",
    "str|mapping": "a string or a mapping",
    "str|list": "a string or a list",
    "list|mapping": "a list or a mapping",
}
KINDS = tuple(KIND_NAMES)


@dataclass(frozen=True)
class ConfigKey:
    name: str
    description: str
    required: bool = False
    kind: str = "str"
    default: Any = None
    choices: tuple = ()
    range: tuple[int, int] | None = None  # inclusive bounds for "int" keys
    # A string value names a file the worker reads, which must be inside the spec's folder (pipeline/files.py).
    file: bool = False


@dataclass(frozen=True)
class Resource:
    """An AWS resource an action names, which `check` (pipeline/preflight.py) looks up in the account.

    `kind` is one of preflight.CHECKERS (codebuild_project, codedeploy_group, ecr_repository, s3_bucket,
    codecommit_repository, sns_topic, lambda_function, stepfunctions_state_machine,
    elasticbeanstalk_environment, iam_role, cloudformation_stack, ecs_service); `details` what else is checked (a
    group's platform, an environment, the service a role must trust, a service's cluster).
    """

    kind: str
    name: Any
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Permission:
    """IAM actions an action's operator calls on one resource (pipeline/iam.py groups them into a policy).

    `resource` is an ARN where `{region}` and `{account}` stand for the action's; a `#{...}` reference in it
    becomes `*`. `sid` says why (statement ids allow letters and digits only).
    """

    service: str
    actions: tuple[str, ...]
    resource: str
    sid: str
    condition: dict[str, Any] | None = None


# What an action names and needs, from its configuration (with defaults).
Resources = Callable[[dict[str, Any]], list[Resource]]
Permissions = Callable[[dict[str, Any]], list[Permission]]


@dataclass(frozen=True)
class ArtifactSlots:
    """How many input and output artifacts an action of a type takes, (fewest, most) each, and a check of
    the rules between its artifacts and its configuration: check(configuration, inputs, outputs) returns
    (key path, message) pairs as a configuration check does. What an action does with them is its
    operator's (release_orchestrator/artifacts.py)."""

    inputs: tuple[int, int] = (0, 0)
    outputs: tuple[int, int] = (0, 0)
    check: Callable[[dict[str, Any], list[str], list[str]], list[tuple[str, str]]] | None = None


NO_ARTIFACTS = ArtifactSlots()


# A check gets the configuration (its known keys only; values may still be of the wrong kind, which the
# validator reports on its own) and returns (key path inside the configuration, message) pairs.
Check = Callable[[dict[str, Any]], list[tuple[str, str]]]


@dataclass(frozen=True)
class ActionType:
    name: str
    category: str
    description: str
    keys: tuple[ConfigKey, ...]
    outputs: tuple[str, ...]
    # True when the action can export variables beyond `outputs` (CodeBuild's exported-variables), so a
    # reference to any other name is allowed; `open_outputs_text` says which those are (for the docs).
    open_outputs: bool = False
    open_outputs_text: str = "any variable the build exports"
    # A configuration key whose list of names are outputs too (compute.commands' output_variables): a
    # reference to any other name is an error.
    outputs_key: str | None = None
    check: Check | None = None
    # How it runs. `operator` is "module:Class"; `operator_by` picks another one by a configuration value,
    # (key, {value: "module:Class"}), e.g. approval.manual's `mode: form`.
    operator: str = ""
    operator_by: tuple[str, dict[str, str]] | None = None
    fixed_kwargs: dict[str, Any] = field(default_factory=dict)
    uses_aws: bool = True  # gets aws_conn_id and region_name
    polls: bool = False  # waits on the shared batched poller: gets poll_interval
    artifacts: ArtifactSlots = NO_ARTIFACTS
    # What `check` looks up before a run, and the IAM permissions `iam-policy` grants (see Resource, Permission).
    resources: Resources | None = None
    permissions: Permissions | None = None
    # What `import-codepipeline` turns into this type: CodePipeline provider ("Category/Owner/Provider") ->
    # the method of pipeline/importer.py's _Importer that maps its configuration.
    imported_from: dict[str, str] = field(default_factory=dict)

    def operator_class(self, configuration: dict[str, Any] | None = None) -> type:
        """The operator class for an action of this type with ``configuration``."""
        path = self.operator
        if self.operator_by:
            key, choices = self.operator_by
            path = choices.get((configuration or {}).get(key), path)
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def file_keys(self) -> list[str]:
        return [k.name for k in self.keys if k.file]

    def key(self, name: str) -> ConfigKey | None:
        return next((k for k in self.keys if k.name == name), None)

    @property
    def allowed_keys(self) -> list[str]:
        return [k.name for k in self.keys]

    @property
    def required_keys(self) -> list[str]:
        return [k.name for k in self.keys if k.required]

    @property
    def optional_keys(self) -> list[str]:
        return [k.name for k in self.keys if not k.required]

    @property
    def outputs_text(self) -> str:
        """The outputs as the docs and the schema list them."""
        outputs = ", ".join(f"`{o}`" for o in self.outputs)
        if self.outputs_key:
            outputs += f", and each variable named in `{self.outputs_key}`"
        return outputs + (f", and {self.open_outputs_text}" if self.open_outputs else "")

    def outputs_of(self, configuration: Any) -> tuple[str, ...] | None:
        """The outputs of an action of this type with `configuration`; None when any name may be one."""
        if self.open_outputs:
            return None
        named = configuration.get(self.outputs_key) if self.outputs_key and isinstance(configuration, dict) else None
        if named is None:
            return self.outputs
        if not isinstance(named, list) or not all(isinstance(n, str) and not has_reference(n) for n in named):
            return None  # known only at run time, or ill-typed (reported on its own)
        return (*self.outputs, *named)

    def with_defaults(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """The configuration with each missing optional key set to its documented default (if it has one)."""
        defaults = {k.name: k.default for k in self.keys if k.default is not None}
        return {**defaults, **configuration}


# --- checks that span several keys -------------------------------------------------------------------------

_REPOSITORY_RE = re.compile(r"^[^/\s]+/[^/\s]+$")


def _check_github(config: dict) -> list[tuple[str, str]]:
    repo = config.get("repository")
    if isinstance(repo, str) and not has_reference(repo) and not _REPOSITORY_RE.match(repo):
        return [("repository", f"expected 'owner/name', got {repo!r}")]
    return []


ENV_VAR_TYPES = ("PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER")
# Names of values that must not travel as PLAINTEXT: one of these as a word of the name (DB_PASSWORD,
# githubToken, STRIPE_API_KEY), not inside a word (TOKENIZER_PATH). PWD is the shell's working directory.
_SECRET_WORDS_RE = re.compile(
    r"(?:^|_)(password|passwd|passphrase|secret|token|credential|api_key|apikey|private_key|privatekey)s?(?:_|$)"
)
_NAME_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def secret_word(name: object) -> str | None:
    """The word that makes an environment variable's name look secret (case-insensitive), or None."""
    words = "_".join(w.lower() for w in _NAME_WORD_RE.findall(str(name)))
    match = _SECRET_WORDS_RE.search(words)
    return match.group(1) if match else None


def _plaintext_secret(name: object, mapping_form: bool) -> str | None:
    word = secret_word(name)
    if word is None:
        return None
    how = "use the list form with " if mapping_form else "give it "
    return (
        f"{name} looks like a secret ('{word}' in its name), and a PLAINTEXT value shows in CodeBuild's console, "
        f"in the build's logs and in Airflow's rendered view: store it in Parameter Store or Secrets Manager and "
        f"{how}type PARAMETER_STORE (value: the parameter's name) or SECRETS_MANAGER (value: the secret's name "
        "or ARN)"
    )


def _check_codebuild(config: dict) -> list[tuple[str, str]]:
    env = config.get("environment_variables")
    problems = []
    if isinstance(env, dict):  # name -> value, all PLAINTEXT
        for name, value in env.items():
            if not isinstance(value, (str, int, float, bool)):
                problems.append((f"environment_variables.{name}", "expected a plain value (string or number)"))
            elif problem := _plaintext_secret(name, mapping_form=True):
                problems.append((f"environment_variables.{name}", problem))
    elif isinstance(env, list):
        for i, item in enumerate(env):
            where = f"environment_variables[{i}]"
            if not isinstance(item, dict):
                problems.append((where, "expected a mapping with name, value and type"))
                continue
            for key in item:
                if key not in ("name", "value", "type"):
                    problems.append((f"{where}.{key}", "unknown key; allowed keys: name, value, type"))
            for key in ("name", "value"):
                if key not in item:
                    problems.append((f"{where}.{key}", "missing required key"))
            if item.get("type", "PLAINTEXT") not in ENV_VAR_TYPES:
                problems.append((f"{where}.type", f"must be one of {', '.join(ENV_VAR_TYPES)}"))
            elif item.get("type", "PLAINTEXT") == "PLAINTEXT" and (
                problem := _plaintext_secret(item.get("name"), mapping_form=False)
            ):
                problems.append((where, problem))
    return problems


APPROVAL_TIMEOUT_MAX = timedelta(days=60)


def approval_timeout_problem(timeout: str, duration: timedelta) -> str | None:
    """Why an approval timeout is outside the allowed range (its shortest is the APPROVAL_TIMEOUT_MIN_SECONDS
    setting, 5 minutes unless lowered for tests), or None."""
    shortest = timedelta(seconds=settings.APPROVAL_TIMEOUT_MIN_SECONDS.get())
    if shortest <= duration <= APPROVAL_TIMEOUT_MAX:
        return None
    seconds = int(shortest.total_seconds())
    low = f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"
    return f"{timeout!r} is outside the allowed range of {low} to 60 days"


def _check_approval(config: dict) -> list[tuple[str, str]]:
    timeout = config.get("timeout")
    if isinstance(timeout, str) and not has_reference(timeout):
        try:
            duration = parse_duration(timeout)
        except ValueError as e:
            return [("timeout", str(e))]
        if problem := approval_timeout_problem(timeout, duration):
            return [("timeout", problem)]
    approvers = config.get("approvers")
    for entry in approvers if isinstance(approvers, list) else []:
        # Who may decide is fixed in the spec: a reference would let whoever triggers the run choose.
        if not isinstance(entry, str) or not entry.strip() or has_reference(entry):
            return [("approvers", f"{entry!r} is not a user name or 'role:<name>' (no references)")]
        if entry.startswith("role:") and not entry[len("role:") :].strip():
            return [("approvers", f"{entry!r} names no role")]
    return []


# Keys that only make sense on one CodeDeploy compute platform ("hooks" is shared by ecs and lambda).
_SERVER_KEYS = (
    "revision_s3_bucket",
    "revision_s3_key",
    "revision_bundle_type",
    "revision_github_repository",
    "revision_github_commit",
)
_ECS_KEYS = (
    "task_definition_template",
    "appspec_template",
    "container_name",
    "container_port",
    "image",
    "platform_version",
    "network_configuration",
)
_LAMBDA_KEYS = ("function_name", "alias", "target_version", "publish_version", "current_version")
_PLATFORM_KEYS = {"server": _SERVER_KEYS, "ecs": _ECS_KEYS + ("hooks",), "lambda": _LAMBDA_KEYS + ("hooks",)}
HOOK_EVENTS = {
    "ecs": ("BeforeInstall", "AfterInstall", "AfterAllowTestTraffic", "BeforeAllowTraffic", "AfterAllowTraffic"),
    "lambda": ("BeforeAllowTraffic", "AfterAllowTraffic"),
}


def _check_codedeploy(config: dict) -> list[tuple[str, str]]:
    platform = config.get("platform", "server")
    if platform not in _PLATFORM_KEYS:
        return []  # the choices check already reported it
    problems = []
    for key in config:
        owners = [p for p, keys in _PLATFORM_KEYS.items() if key in keys]
        if owners and platform not in owners:
            problems.append((key, f"only applies to platform {' or '.join(owners)}, not {platform}"))

    def require(*keys: str) -> None:
        for key in keys:
            if key not in config:
                problems.append((key, f"missing required key for platform {platform}"))

    if platform == "server":
        s3 = [k for k in ("revision_s3_bucket", "revision_s3_key") if k in config]
        github = [k for k in ("revision_github_repository", "revision_github_commit") if k in config]
        if s3 and github:
            problems.append(("revision_s3_bucket", "give either an S3 revision or a GitHub revision, not both"))
        elif s3:
            require("revision_s3_bucket", "revision_s3_key")
        elif github:
            require("revision_github_repository", "revision_github_commit")
        # With neither, the revision is the input artifact (_codedeploy_artifacts says when one is missing).
    elif platform == "ecs":
        if "appspec_template" in config:  # the container, port and hooks are the template's
            require("task_definition_template", "image")
            problems += [
                (key, "comes from appspec_template: remove it") for key in ("container_port", "hooks") if key in config
            ]
        else:
            require("task_definition_template", "container_name", "container_port", "image")
    else:
        require("function_name", "alias")
        has_target, publish = "target_version" in config, config.get("publish_version") is True
        if has_target == publish:
            problems.append(("target_version", "give exactly one of target_version or publish_version: true"))

    hooks = config.get("hooks")
    if isinstance(hooks, dict) and platform in HOOK_EVENTS:
        for event, function in hooks.items():
            if event not in HOOK_EVENTS[platform]:
                problems.append(
                    (
                        f"hooks.{event}",
                        f"unknown lifecycle event for platform {platform}; allowed: {', '.join(HOOK_EVENTS[platform])}",
                    )
                )
            elif not isinstance(function, str):
                problems.append((f"hooks.{event}", "expected a Lambda function name"))
    return problems


def _codedeploy_artifacts(config: dict, inputs: list[str], outputs: list[str]) -> list[tuple[str, str]]:
    """server: the input artifact is the revision; lambda: the function's new code (with publish_version);
    ecs: files named 'Artifact::path' in task_definition_template and image (CodePipeline's taskdef.json and
    imageDetail.json)."""
    platform = config.get("platform", "server")
    if not isinstance(platform, str) or platform not in _PLATFORM_KEYS:
        return []  # the configuration check already reported it
    most = {"server": 1, "lambda": 1, "ecs": 3}[platform]
    if len(inputs) > most:
        return [("input_artifacts", f"platform {platform} takes at most {most} input artifact(s)")]
    if platform == "server":
        named = [k for k in _SERVER_KEYS if k in config and k != "revision_bundle_type"]
        if inputs and named:
            return [(named[0], f"the revision is the input artifact '{inputs[0]}': remove {', '.join(named)}")]
        if not inputs and not named:
            return [
                (
                    "revision_s3_bucket",
                    "platform server needs a revision: an input artifact (input_artifacts: [BuildOutput]), "
                    "revision_s3_bucket and revision_s3_key, or revision_github_repository and "
                    "revision_github_commit",
                )
            ]
        return []
    if platform == "lambda":
        if inputs and config.get("publish_version") is not True:
            return [("publish_version", f"set publish_version: true to publish the code of '{inputs[0]}'")]
        return []
    problems, used = [], set()
    if "appspec_template" in config and not artifact_file(config.get("appspec_template")):
        problems.append(("appspec_template", "expected a file in an input artifact, 'Artifact::appspec.yaml'"))
    for key in ("task_definition_template", "image", "appspec_template"):
        named = artifact_file(config.get(key))
        if named and named[0] not in inputs:
            problems.append((key, f"'{named[0]}' is not an input artifact of this action: add it to input_artifacts"))
        elif named:
            used.add(named[0])
    for name in inputs:
        if name not in used:
            problems.append(
                (
                    "input_artifacts",
                    f"'{name}' is not read: name a file in it as '{name}::taskdef.json' in "
                    f"task_definition_template or '{name}::imageDetail.json' in image",
                )
            )
    return problems


def _file_key_artifacts(keys: tuple[str, ...]) -> Callable[[dict, list[str], list[str]], list[tuple[str, str]]]:
    """For types that read input artifacts only through files their `keys` name ('Artifact::path'): each
    named artifact is an input of the action, and each input is read."""

    def check(config: dict, inputs: list[str], outputs: list[str]) -> list[tuple[str, str]]:
        problems, used = [], set()
        for key in keys:
            named = artifact_file(config.get(key))
            if named and named[0] not in inputs:
                problems.append(
                    (key, f"'{named[0]}' is not an input artifact of this action: add it to input_artifacts")
                )
            elif named:
                used.add(named[0])
        for name in inputs:
            if name not in used:
                files = " or ".join(f"{key}: {name}::<file>" for key in keys)
                problems.append(("input_artifacts", f"'{name}' is not read: name a file in it ({files})"))
        return problems

    return check


def _source_or_input(config: dict, inputs: list[str], what: str) -> list[tuple[str, str]]:
    """deploy.s3 and deploy.elasticbeanstalk: `what` is the input artifact, or `source` names it."""
    if inputs and "source" in config:
        return [("source", f"{what} is the input artifact '{inputs[0]}': remove source")]
    if not inputs and "source" not in config:
        return [("source", f"missing: name {what} as s3://bucket/key, or give the action an input artifact")]
    return []


def _codebuild_artifacts(config: dict, inputs: list[str], outputs: list[str]) -> list[tuple[str, str]]:
    if not inputs:
        return []
    if "source_version" in config:
        return [
            (
                "source_version",
                f"the build's source is the input artifact '{inputs[0]}': remove source_version "
                "(it picks a revision of the project's own source)",
            )
        ]
    primary = config.get("primary_source")
    if isinstance(primary, str) and not has_reference(primary) and primary not in inputs:
        return [("primary_source", f"{primary!r} is not one of the input artifacts: {', '.join(inputs)}")]
    if len(inputs) > 1 and not primary:
        return [
            ("primary_source", f"with several input artifacts, name the build's source: one of {', '.join(inputs)}")
        ]
    return []


# A function name, a partial ARN (account:function:name) or a full ARN, each with an optional :alias or :version.
_FUNCTION_RE = re.compile(
    r"^(arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:|\d{12}:function:)?[a-zA-Z0-9_-]{1,140}"
    r"(:(\$LATEST|[a-zA-Z0-9_-]+))?$"
)


def _check_lambda_invoke(config: dict) -> list[tuple[str, str]]:
    name = config.get("function_name")
    if isinstance(name, str) and not has_reference(name) and not _FUNCTION_RE.match(name):
        return [
            (
                "function_name",
                f"expected a function name, 'name:alias', 'name:version' or a function ARN, got {name!r}",
            )
        ]
    return []


def s3_uri_problem(uri: object) -> str | None:
    """Why `uri` is not an `s3://bucket/key` URI (None when it is, or when it holds a reference)."""
    if not isinstance(uri, str) or has_reference(uri):
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        return f"expected an S3 object URI such as s3://bucket/artifact.zip, got {uri!r}"
    return None


def _check_s3_deploy(config: dict) -> list[tuple[str, str]]:
    problems = []
    if problem := s3_uri_problem(config.get("source")):
        problems.append(("source", problem))
    if config.get("extract") is False and not config.get("object_key"):
        problems.append(("object_key", "required when extract is false: the key the artifact is copied to"))
    return problems


_STATE_MACHINE_ARN_RE = re.compile(r"^arn:aws[\w-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$")
EXECUTION_NAME_PREFIX_MAX = 47  # execution names hold 80 characters; the task's own part takes 33


def _check_stepfunctions(config: dict) -> list[tuple[str, str]]:
    problems = []
    arn = config.get("state_machine_arn")
    if isinstance(arn, str) and not has_reference(arn) and not _STATE_MACHINE_ARN_RE.match(arn):
        problems.append(
            ("state_machine_arn", f"expected arn:aws:states:<region>:<account>:stateMachine:<name>, got {arn!r}")
        )
    prefix = config.get("execution_name_prefix")
    if isinstance(prefix, str) and not has_reference(prefix):
        if not re.fullmatch(r"[A-Za-z0-9_-]*", prefix) or len(prefix) > EXECUTION_NAME_PREFIX_MAX:
            problems.append(
                (
                    "execution_name_prefix",
                    f"{prefix!r}: use at most {EXECUTION_NAME_PREFIX_MAX} letters, digits, '-' or '_'",
                )
            )
    value = config.get("input")
    if isinstance(value, str) and value.strip()[:1] in ("{", "[") and not has_reference(value):
        try:
            json.loads(value)
        except ValueError as e:
            problems.append(("input", f"inline JSON that does not parse: {e}"))
    return problems


def _check_elasticbeanstalk(config: dict) -> list[tuple[str, str]]:
    problem = s3_uri_problem(config.get("source"))
    return [("source", problem)] if problem else []


def _check_ecs(config: dict) -> list[tuple[str, str]]:
    definitions = config.get("image_definitions")
    if not isinstance(definitions, list):
        return []  # a file in the spec's folder (checked by the file rules), or of a wrong kind (reported)
    if not definitions:
        return [("image_definitions", "names no container; give at least one {name, imageUri}")]
    problems, seen = [], set()
    for i, item in enumerate(definitions):
        where = f"image_definitions[{i}]"
        if not isinstance(item, dict):
            problems.append((where, "expected a mapping with name and imageUri"))
            continue
        for key in item:
            if key not in ("name", "imageUri"):
                problems.append((f"{where}.{key}", "unknown key; allowed keys: name, imageUri"))
        for key in ("name", "imageUri"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                problems.append((f"{where}.{key}", "missing required key" if key not in item else "expected a string"))
        name = item.get("name")
        if isinstance(name, str) and not has_reference(name):
            if name in seen:
                problems.append((f"{where}.name", f"container {name!r} is named twice"))
            seen.add(name)
    return problems


def _check_commands(config: dict) -> list[tuple[str, str]]:
    problems = []
    if "project_name" not in config:
        problems.append(
            (
                "project_name",
                "missing required key: the commands run in a CodeBuild project; a project with no source "
                "(source type NO_SOURCE) and any image works, see docs/operators.md (compute.commands)",
            )
        )
    commands = config.get("commands")
    if isinstance(commands, list):
        if not commands:
            problems.append(("commands", "names no command"))
        elif len(commands) > COMMANDS_MAX:
            problems.append(("commands", f"{len(commands)} commands; CodePipeline allows at most {COMMANDS_MAX}"))
        for i, command in enumerate(commands):
            if isinstance(command, str) and "\n" in command.strip():
                problems.append((f"commands[{i}]", "one command per item: multi-line commands are not supported"))
    names = config.get("output_variables")
    for i, name in enumerate(names if isinstance(names, list) else []):
        if isinstance(name, str) and not _ENV_NAME_RE.match(name):
            problems.append((f"output_variables[{i}]", f"{name!r} is not an environment variable name"))
    return problems


COMMANDS_MAX = 50  # CodePipeline's limit for a Commands action
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- resources and permissions (preflight and IAM) ----------------------------------------------------------

_REGIONAL = "arn:aws:{service}:{{region}}:{{account}}:"


def regional_arn(service: str, rest: str) -> str:
    """An ARN in the action's region and account, which pipeline/iam.py fills in."""
    return _REGIONAL.format(service=service) + rest


def _codebuild_resources(config: dict) -> list[Resource]:
    return [Resource("codebuild_project", config.get("project_name"))]


def _codebuild_permissions(config: dict) -> list[Permission]:
    project = config.get("project_name")
    return [
        Permission(
            "codebuild",
            ("codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"),
            regional_arn("codebuild", f"project/{project}"),
            "CodeBuildStartWatchAndStopBuildsOfTheNamedProjects",
        ),
        Permission(
            "logs",
            ("logs:GetLogEvents",),
            regional_arn("logs", f"log-group:/aws/codebuild/{project}:*"),
            "LogsTailOfTheBuildLogInTheProjectsDefaultLogGroup",
        ),
    ]


def _test_codebuild_permissions(config: dict) -> list[Permission]:
    group = config.get("report_group_arn") or regional_arn("codebuild", f"report-group/{config.get('project_name')}-*")
    return _codebuild_permissions(config) + [
        Permission(
            "codebuild",
            ("codebuild:DescribeTestCases",),
            group,
            "CodeBuildReadTestReportsOfTheProjectsReportGroups",
        )
    ]


PLATFORM_NAMES = {"server": "Server", "ecs": "ECS", "lambda": "Lambda"}  # CodeDeploy's computePlatform


def _codedeploy_resources(config: dict) -> list[Resource]:
    platform = config.get("platform", "server")
    out = [
        Resource(
            "codedeploy_group",
            config.get("application_name"),
            {
                "group": config.get("deployment_group_name"),
                "platform": platform,
                "config": config.get("deployment_config_name"),
            },
        )
    ]
    if platform == "server" and config.get("revision_s3_bucket"):
        out.append(Resource("s3_bucket", config["revision_s3_bucket"]))
    if platform == "lambda" and config.get("function_name"):
        out.append(Resource("lambda_function", config["function_name"], {"alias": config.get("alias")}))
    return out


def _codedeploy_permissions(config: dict) -> list[Permission]:
    application, group = config.get("application_name"), config.get("deployment_group_name")
    config_name = config.get("deployment_config_name")
    out = [
        Permission(
            "codedeploy",
            (
                "codedeploy:BatchGetDeployments",
                "codedeploy:CreateDeployment",
                "codedeploy:GetDeployment",
                "codedeploy:ListDeployments",
                "codedeploy:StopDeployment",
            ),
            regional_arn("codedeploy", f"deploymentgroup:{application}/{group}"),
            "CodeDeployDeployToTheNamedGroupsAndStop",
        ),
        Permission(
            "codedeploy",
            ("codedeploy:GetApplicationRevision", "codedeploy:RegisterApplicationRevision"),
            regional_arn("codedeploy", f"application:{application}"),
            "CodeDeployCreateDeploymentRegistersTheRevision",
        ),
        Permission(
            "codedeploy",
            ("codedeploy:GetDeploymentConfig",),
            regional_arn("codedeploy", f"deploymentconfig:{config_name or '*'}"),
            "CodeDeployCreateDeploymentReadsItsConfig"
            if config_name
            else "CodeDeployCreateDeploymentReadsTheGroupsConfigWhichTheSpecDoesNotName",
        ),
        Permission(
            "codedeploy",
            # They name a deployment id, not a group: granted on * as docs/real-aws.md explains.
            (
                "codedeploy:BatchGetDeploymentTargets",
                "codedeploy:ContinueDeployment",
                "codedeploy:ListDeploymentTargets",
            ),
            "*",
            "CodeDeployContinueAndTargetCallsNameADeploymentNotAGroup",
        ),
    ]
    platform = config.get("platform", "server")
    if platform == "ecs":
        out.append(
            Permission(
                "ecs",
                ("ecs:RegisterTaskDefinition",),
                "*",
                "EcsRegisterTaskDefinitionHasNoResourceLevelPermissions",
            )
        )
        template = config.get("task_definition_template")
        if artifact_file(template):  # known only when the run reads it: the roles any task definition names
            out.append(
                Permission(
                    "iam",
                    ("iam:PassRole",),
                    "arn:aws:iam::{account}:role/*",
                    "IamPassTheArtifactTaskDefinitionsRolesToEcs",
                    {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                )
            )
        template = template.get("taskDefinition", template) if isinstance(template, dict) else {}
        for key in ("executionRoleArn", "taskRoleArn"):
            if isinstance(template.get(key), str):
                out.append(
                    Permission(
                        "iam",
                        ("iam:PassRole",),
                        template[key],
                        "IamPassTheTaskDefinitionsRolesToEcs",
                        {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                    )
                )
    elif platform == "lambda":
        function = config.get("function_name")
        arn = function if str(function).startswith("arn:") else regional_arn("lambda", f"function:{function}")
        publish = config.get("publish_version") is True
        out.append(
            Permission(
                "lambda",
                ("lambda:GetAlias", "lambda:PublishVersion") if publish else ("lambda:GetAlias",),
                arn,
                "LambdaPublishAVersionAndReadTheAliasToShift" if publish else "LambdaReadTheAliasToShift",
            )
        )
    return out


def function_arn(function: object) -> str:
    """The ARN of a function named by name, partial ARN or ARN (a qualifier stays on it)."""
    function = str(function)
    if function.startswith("arn:"):
        return function
    if ":function:" in function:  # account:function:name
        return "arn:aws:lambda:{region}:" + function
    return regional_arn("lambda", f"function:{function}")


def _lambda_invoke_permissions(config: dict) -> list[Permission]:
    return [
        Permission(
            "lambda",
            ("lambda:InvokeFunction",),
            function_arn(config.get("function_name")),
            "LambdaInvokeTheNamedFunction",
        )
    ]


def _s3_deploy_source(config: dict) -> tuple[str, str]:
    bucket, _, key = str(config.get("source")).removeprefix("s3://").partition("/")
    return bucket, key


def _s3_deploy_resources(config: dict) -> list[Resource]:
    out = [Resource("s3_bucket", config.get("bucket_name"))]
    if not s3_uri_problem(config.get("source")):
        source_bucket = _s3_deploy_source(config)[0]
        if source_bucket != config.get("bucket_name"):
            out.append(Resource("s3_bucket", source_bucket))
    return out


def _s3_deploy_permissions(config: dict) -> list[Permission]:
    bucket, key = _s3_deploy_source(config)
    target = config.get("object_key") or ""
    if config.get("extract", True) is not False:  # a prefix: every object under it
        target = f"{target.strip('/')}/*" if target.strip("/") else "*"
    put = ("s3:PutObject", "s3:PutObjectAcl") if config.get("canned_acl") else ("s3:PutObject",)
    out = [Permission("s3", put, f"arn:aws:s3:::{config.get('bucket_name')}/{target}", "S3DeployPutsTheObjects")]
    if config.get("source"):  # an input artifact is read from the store (pipeline/artifacts.py grants it)
        out.insert(0, Permission("s3", ("s3:GetObject",), f"arn:aws:s3:::{bucket}/{key}", "S3DeployReadsTheArtifact"))
    if config.get("kms_encryption_key_arn"):
        out.append(
            Permission(
                "kms",
                # Decrypt too: a large object is uploaded in parts, and completing it reads the data key back.
                ("kms:Decrypt", "kms:GenerateDataKey"),
                config["kms_encryption_key_arn"],
                "KmsEncryptTheDeployedObjects",
            )
        )
    return out


# CodePipeline's S3 deploy action accepts these canned ACLs.
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)


def topic_permission(topic_arn: str) -> Permission:
    return Permission("sns", ("sns:Publish",), topic_arn, "SnsPublishNotificationsAndApprovalRequests")


def _approval_resources(config: dict) -> list[Resource]:
    return [Resource("sns_topic", config["sns_topic_arn"])] if config.get("sns_topic_arn") else []


def _approval_permissions(config: dict) -> list[Permission]:
    return [topic_permission(config["sns_topic_arn"])] if config.get("sns_topic_arn") else []


def _stepfunctions_permissions(config: dict) -> list[Permission]:
    machine = str(config.get("state_machine_arn"))
    # arn:...:stateMachine:<name> -> its executions arn:...:execution:<name>:*
    executions = machine.replace(":stateMachine:", ":execution:", 1) + ":*"
    return [
        Permission(
            "states",
            ("states:StartExecution",),
            machine,
            "StatesStartExecutionsOfTheNamedStateMachine",
        ),
        Permission(
            "states",
            ("states:DescribeExecution", "states:StopExecution"),
            executions,
            "StatesWatchAndStopTheMachinesExecutions",
        ),
    ]


def _bundle(config: dict) -> tuple[str, str]:
    """(bucket, key) of the source bundle's s3://bucket/key."""
    bucket, _, key = str(config.get("source")).removeprefix("s3://").partition("/")
    return bucket, key


def _elasticbeanstalk_resources(config: dict) -> list[Resource]:
    out = [
        Resource(
            "elasticbeanstalk_environment",
            config.get("application_name"),
            {"environment": config.get("environment_name")},
        )
    ]
    bucket = _bundle(config)[0] if config.get("source") else None
    if bucket and not has_reference(bucket):
        out.append(Resource("s3_bucket", bucket))
    return out


def _elasticbeanstalk_permissions(config: dict) -> list[Permission]:
    application, environment = config.get("application_name"), config.get("environment_name")
    bucket, key = _bundle(config)
    bundle = (
        [Permission("s3", ("s3:GetObject",), f"arn:aws:s3:::{bucket}/{key}", "S3ReadTheSourceBundle")]
        if config.get("source")  # an input artifact is read from the store (pipeline/artifacts.py grants it)
        else []
    )
    return bundle + [
        Permission(
            "elasticbeanstalk",
            ("elasticbeanstalk:CreateApplicationVersion", "elasticbeanstalk:DescribeApplicationVersions"),
            regional_arn("elasticbeanstalk", f"applicationversion/{application}/*"),
            "ElasticBeanstalkMakeTheApplicationVersionToDeploy",
        ),
        Permission(
            "elasticbeanstalk",
            (
                "elasticbeanstalk:AbortEnvironmentUpdate",
                "elasticbeanstalk:DescribeEnvironments",
                "elasticbeanstalk:DescribeEvents",
                "elasticbeanstalk:UpdateEnvironment",
            ),
            regional_arn("elasticbeanstalk", f"environment/{application}/{environment}"),
            "ElasticBeanstalkUpdateWatchAndAbortTheNamedEnvironment",
        ),
        # UpdateEnvironment acts on the environment's resources with the caller's rights (docs/real-aws.md).
        Permission(
            "s3",
            ("s3:GetObject", "s3:ListBucket", "s3:PutObject"),
            "arn:aws:s3:::elasticbeanstalk-*",
            "S3ElasticBeanstalkStorageBucketUsedByTheUpdate",
        ),
        Permission(
            "cloudformation",
            (
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStackResource",
                "cloudformation:DescribeStackResources",
                "cloudformation:DescribeStacks",
                "cloudformation:GetTemplate",
                "cloudformation:UpdateStack",
            ),
            regional_arn("cloudformation", "stack/awseb-*"),
            "CloudFormationTheEnvironmentsStackUpdatedWithTheCallersRights",
        ),
        Permission(
            "autoscaling",
            (
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities",
                "autoscaling:ResumeProcesses",
                "autoscaling:SuspendProcesses",
                "ec2:DescribeInstances",
                "elasticloadbalancing:DescribeInstanceHealth",
                "elasticloadbalancing:DescribeTargetHealth",
            ),
            "*",
            "UpdateEnvironmentReadsAndPausesTheEnvironmentsInstancesNoResourceScope",
        ),
    ]


def _ecs_resources(config: dict) -> list[Resource]:
    return [Resource("ecs_service", config.get("service_name"), {"cluster": config.get("cluster_name")})]


def _ecs_permissions(config: dict) -> list[Permission]:
    cluster, service = config.get("cluster_name"), config.get("service_name")
    return [
        Permission(
            "ecs",
            ("ecs:DescribeServices", "ecs:UpdateService"),
            regional_arn("ecs", f"service/{cluster}/{service}"),
            "EcsReadAndUpdateTheDeployedService",
        ),
        Permission(
            "ecs",
            ("ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"),
            "*",
            "EcsTaskDefinitionCallsHaveNoResourceLevelPermissions",
        ),
        Permission(
            "iam",
            ("iam:PassRole",),
            # The roles are those of the service's current task definition, known only at run time.
            "arn:aws:iam::{account}:role/*",
            "IamPassTheTaskDefinitionsRolesToEcs",
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
    ]


# CloudFormation (deploy.cloudformation): CodePipeline's action modes and what each needs.
CLOUDFORMATION_ACTION_MODES = (
    "CREATE_UPDATE",
    "DELETE_ONLY",
    "REPLACE_ON_FAILURE",
    "CHANGE_SET_REPLACE",
    "CHANGE_SET_EXECUTE",
)
CLOUDFORMATION_CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND")
_STACK_NAME_RE = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")  # CloudFormation's pattern for stack names
_CHANGE_SET_NAME_RE = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[-a-z]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_TEMPLATE_MODES = ("CREATE_UPDATE", "REPLACE_ON_FAILURE", "CHANGE_SET_REPLACE")
# Keys that describe the stack's content, which deleting a stack or executing a change set does not use.
_STACK_CONTENT_KEYS = ("template", "template_configuration", "parameter_overrides", "capabilities")


def _check_cloudformation(config: dict) -> list[tuple[str, str]]:
    mode = config.get("action_mode")
    problems = []

    def named(key: str, pattern: re.Pattern, what: str) -> None:
        value = config.get(key)
        if isinstance(value, str) and not has_reference(value) and not pattern.match(value):
            problems.append(
                (key, f"{value!r} is not a valid {what}: a letter, then letters, digits and '-' (128 at most)")
            )

    named("stack_name", _STACK_NAME_RE, "stack name")
    named("change_set_name", _CHANGE_SET_NAME_RE, "change set name")
    if mode in CLOUDFORMATION_ACTION_MODES:
        if mode.startswith("CHANGE_SET") and "change_set_name" not in config:
            problems.append(("change_set_name", f"missing required key for action_mode {mode}"))
        if mode in _TEMPLATE_MODES and "template" not in config:
            problems.append(("template", f"missing required key for action_mode {mode}"))
        if mode not in _TEMPLATE_MODES:
            problems += [(k, f"not used by action_mode {mode}") for k in _STACK_CONTENT_KEYS if k in config]
        if not mode.startswith("CHANGE_SET") and "change_set_name" in config:
            problems.append(("change_set_name", f"only used by the change set modes, not {mode}"))
    capabilities = config.get("capabilities")
    for i, capability in enumerate(capabilities if isinstance(capabilities, list) else []):
        if capability not in CLOUDFORMATION_CAPABILITIES:
            problems.append((f"capabilities[{i}]", f"must be one of {', '.join(CLOUDFORMATION_CAPABILITIES)}"))
    for key, schemes in (("template", ("s3://", "https://")), ("template_configuration", ("s3://",))):
        value = config.get(key)
        if isinstance(value, str) and "://" in value and not value.startswith(schemes):
            problems.append((key, f"a URL here starts with {' or '.join(schemes)}"))
    overrides = config.get("parameter_overrides")
    for name, value in overrides.items() if isinstance(overrides, dict) else []:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append((f"parameter_overrides.{name}", "expected a string (parameter values are strings)"))
    role = config.get("role_arn")
    if isinstance(role, str) and not has_reference(role) and not _ROLE_ARN_RE.match(role):
        problems.append(("role_arn", f"{role!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"))
    return problems


def _stack_arn(config: dict) -> str:
    return regional_arn("cloudformation", f"stack/{config.get('stack_name')}/*")


def _cloudformation_resources(config: dict) -> list[Resource]:
    out = []
    if config.get("role_arn"):
        out.append(Resource("iam_role", config["role_arn"], {"service": "cloudformation.amazonaws.com"}))
    if config.get("action_mode") == "CHANGE_SET_EXECUTE":
        out.append(Resource("cloudformation_stack", config.get("stack_name")))
    return out


def _cloudformation_permissions(config: dict) -> list[Permission]:
    out = [
        Permission(
            "cloudformation",
            (
                "cloudformation:CancelUpdateStack",
                "cloudformation:CreateChangeSet",
                "cloudformation:CreateStack",
                "cloudformation:DeleteChangeSet",
                "cloudformation:DeleteStack",
                "cloudformation:DescribeChangeSet",
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStacks",
                "cloudformation:ExecuteChangeSet",
                "cloudformation:UpdateStack",
            ),
            _stack_arn(config),
            "CloudFormationDeployTheNamedStacksAndTheirChangeSets",
        )
    ]
    if config.get("role_arn"):
        out.append(
            Permission(
                "iam",
                ("iam:PassRole",),
                config["role_arn"],
                "IamPassTheStacksServiceRoleToCloudFormation",
                {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
            )
        )
    for key in ("template", "template_configuration"):
        value = config.get(key)
        if isinstance(value, str) and value.startswith("s3://"):
            out.append(
                Permission(
                    "s3",
                    ("s3:GetObject",),
                    "arn:aws:s3:::" + value[len("s3://") :],
                    "S3ReadTheTemplateAndItsConfiguration",
                )
            )
    return out


# --- the table ---------------------------------------------------------------------------------------------

# Keys a spec may not use, with why and what to write instead: CodePipeline's options that mean nothing here.
RETIRED_KEYS = {
    "detect_changes": "changes start a pipeline through its `triggers` (a git push or pull request to the webhook "
    "endpoint, or an s3/ecr/codecommit change event), see docs/triggers.md; `import-codepipeline` turns "
    "DetectChanges / PollForSourceChanges into such a trigger",
    "connection_arn": "pushes reach the pipeline through the webhook endpoint, signed with the repository's "
    "secret (docs/triggers.md); no CodeStar connection is used",
    "output_format": "a GitHub source's output artifact is always CODE_ZIP (the commit's files); there are no "
    "clone references: a build that clones gets the commit through source_version",
}

_CODEBUILD_KEYS = (
    ConfigKey("project_name", "CodeBuild project to run", required=True),
    ConfigKey("source_version", "commit, branch or S3 object version to build instead of the input artifact's"),
    ConfigKey(
        "environment_variables",
        "list of {name, value, type} (type PLAINTEXT, PARAMETER_STORE or "
        "SECRETS_MANAGER), or a mapping name -> value (PLAINTEXT)",
        kind="list|mapping",
    ),
    ConfigKey("buildspec", "buildspec file path or inline buildspec overriding the project's"),
    ConfigKey("build_timeout_minutes", "build timeout overriding the project's", kind="int", range=(5, 2160)),
    ConfigKey("primary_source", "input artifact that is the primary source when there are several"),
)
_CODEBUILD_OUTPUTS = ("BuildId", "BuildNumber", "BuildStatus", "ResolvedSourceVersion", "LogsUrl")
_OPERATORS = "release_orchestrator.operators"

ACTION_TYPES: dict[str, ActionType] = {
    t.name: t
    for t in (
        ActionType(
            "source.github",
            "Source",
            "A branch of a GitHub (or GitHub Enterprise) repository; its pushes and pull requests reach the "
            "webhook endpoint.",
            keys=(
                ConfigKey("repository", "repository as 'owner/name'", required=True),
                ConfigKey("branch", "branch to follow", required=True),
                ConfigKey(
                    "github_conn_id",
                    "Airflow connection holding a GitHub token (password) and, for GitHub Enterprise, the API's "
                    "URL (host); used to fetch the output artifact and the branch's head for runs that name no "
                    "revision",
                    default="github_default",
                ),
            ),
            outputs=(
                "CommitId",
                "BranchName",
                "RepositoryName",
                "FullRepositoryName",
                "CommitMessage",
                "AuthorDisplayName",
                "AuthorDate",
                "CommitUrl",
                "ChangedFiles",
                "LastReleasedCommitId",
                "CommitsSinceLastRelease",
            ),
            check=_check_github,
            operator=f"{_OPERATORS}.source:GitSourceOperator",
            fixed_kwargs={"provider": "github"},
            artifacts=ArtifactSlots(outputs=(0, 1)),
            imported_from={"Source/AWS/CodeStarSourceConnection": "github", "Source/ThirdParty/GitHub": "github_v1"},
            uses_aws=False,  # the revision comes with the run (webhook, event or trigger form)
        ),
        ActionType(
            "source.codecommit",
            "Source",
            "A branch of a CodeCommit repository; its pushes start runs through an event trigger.",
            keys=(
                ConfigKey("repository", "CodeCommit repository name", required=True),
                ConfigKey("branch", "branch to follow", required=True),
            ),
            outputs=(
                "CommitId",
                "BranchName",
                "RepositoryName",
                "CommitMessage",
                "AuthorDate",
                "AuthorDisplayName",
                "CommitUrl",
                "LastReleasedCommitId",
                "CommitsSinceLastRelease",
            ),
            operator=f"{_OPERATORS}.source:GitSourceOperator",
            fixed_kwargs={"provider": "codecommit"},
            artifacts=ArtifactSlots(outputs=(0, 1)),
            imported_from={"Source/AWS/CodeCommit": "codecommit"},
            resources=lambda config: [Resource("codecommit_repository", config.get("repository"))],
            permissions=lambda config: [
                Permission(
                    "codecommit",
                    ("codecommit:GetBranch", "codecommit:GetCommit", "codecommit:GetFolder", "codecommit:GetFile"),
                    regional_arn("codecommit", str(config.get("repository"))),
                    "CodeCommitSourceReadsTheRepository",
                )
            ],
        ),
        ActionType(
            "source.s3",
            "Source",
            "An object (typically a zip) in a versioned S3 bucket.",
            keys=(
                ConfigKey("bucket", "bucket name", required=True),
                ConfigKey("object_key", "object key", required=True),
            ),
            outputs=("VersionId", "ETag", "ObjectKey", "BucketName"),
            operator=f"{_OPERATORS}.source:S3SourceOperator",
            artifacts=ArtifactSlots(outputs=(0, 1)),
            imported_from={"Source/AWS/S3": "s3"},
            resources=lambda config: [Resource("s3_bucket", config.get("bucket"), {"versioned": True})],
            permissions=lambda config: [
                Permission(
                    "s3",
                    ("s3:GetObject", "s3:GetObjectVersion"),
                    f"arn:aws:s3:::{config.get('bucket')}/{config.get('object_key')}",
                    "S3SourceReadsTheWatchedObjectsVersions",
                )
            ],
        ),
        ActionType(
            "source.ecr",
            "Source",
            "An image tag in an ECR repository.",
            keys=(
                ConfigKey("repository", "ECR repository name", required=True),
                ConfigKey("image_tag", "tag to follow", default="latest"),
            ),
            outputs=("ImageDigest", "ImageTag", "ImageURI", "RegistryId", "RepositoryName"),
            operator=f"{_OPERATORS}.source:EcrSourceOperator",
            artifacts=ArtifactSlots(outputs=(0, 1)),
            imported_from={"Source/AWS/ECR": "ecr"},
            resources=lambda config: [Resource("ecr_repository", config.get("repository"))],
            permissions=lambda config: [
                Permission(
                    "ecr",
                    ("ecr:DescribeImages", "ecr:DescribeRepositories"),
                    regional_arn("ecr", f"repository/{config.get('repository')}"),
                    "EcrSourceReadsTheWatchedImage",
                )
            ],
        ),
        ActionType(
            "build.codebuild",
            "Build",
            "Runs a CodeBuild project.",
            keys=_CODEBUILD_KEYS,
            outputs=_CODEBUILD_OUTPUTS,
            open_outputs=True,
            check=_check_codebuild,
            operator=f"{_OPERATORS}.codebuild:CodeBuildOperator",
            artifacts=ArtifactSlots(inputs=(0, 5), outputs=(0, 5), check=_codebuild_artifacts),
            imported_from={"Build/AWS/CodeBuild": "codebuild"},
            polls=True,
            resources=_codebuild_resources,
            permissions=_codebuild_permissions,
        ),
        ActionType(
            "test.codebuild",
            "Test",
            "Runs a CodeBuild project as a test, optionally reading its test reports.",
            keys=_CODEBUILD_KEYS
            + (
                ConfigKey("report_group_arn", "CodeBuild report group whose results are summarised"),
                ConfigKey("junit_path", "JUnit XML file(s) in the build output to summarise"),
                ConfigKey("fail_on_test_failure", "fail the action when a test fails", kind="bool", default=True),
            ),
            outputs=_CODEBUILD_OUTPUTS,
            open_outputs=True,
            check=_check_codebuild,
            operator=f"{_OPERATORS}.codebuild:TestCodeBuildOperator",
            artifacts=ArtifactSlots(inputs=(0, 5), outputs=(0, 5), check=_codebuild_artifacts),
            imported_from={"Test/AWS/CodeBuild": "codebuild"},
            polls=True,
            resources=_codebuild_resources,
            permissions=_test_codebuild_permissions,
        ),
        ActionType(
            "approval.manual",
            "Approval",
            "Waits for a person to approve or reject.",
            keys=(
                ConfigKey("sns_topic_arn", "SNS topic told that an approval is waiting"),
                ConfigKey("custom_data", "text shown to the reviewer"),
                ConfigKey("external_entity_link", "URL for the reviewer to look at"),
                ConfigKey(
                    "timeout",
                    "how long to wait before failing, e.g. '30m', '12h', '7d', '1d12h' (5 minutes to 60 days)",
                    default="7d",
                ),
                ConfigKey(
                    "approvers",
                    "who may decide: user names, and roles as 'role:<name>' (anyone who may change the task when empty)",
                    kind="list[str]",
                ),
                ConfigKey(
                    "allow_self_approval",
                    "let the person who started the run (trigger, pusher, author) decide it",
                    kind="bool",
                    default=False,
                ),
                ConfigKey(
                    "mode",
                    "'mark' (approve or reject the task) or 'form' (a form with a comment)",
                    default="mark",
                    choices=("mark", "form"),
                ),
            ),
            outputs=("Outcome", "Reviewer", "Comment", "DecidedAt"),
            check=_check_approval,
            operator=f"{_OPERATORS}.approval:ManualApprovalOperator",
            imported_from={"Approval/AWS/Manual": "manual"},
            operator_by=("mode", {"form": f"{_OPERATORS}.approval:FormApprovalOperator"}),
            resources=_approval_resources,
            permissions=_approval_permissions,
        ),
        ActionType(
            "deploy.codedeploy",
            "Deploy",
            "A CodeDeploy deployment to EC2/on-premises servers, ECS (blue/green) or Lambda.",
            keys=(
                ConfigKey("application_name", "CodeDeploy application", required=True),
                ConfigKey("deployment_group_name", "deployment group", required=True),
                ConfigKey(
                    "platform",
                    "compute platform: server, ecs or lambda",
                    default="server",
                    choices=("server", "ecs", "lambda"),
                ),
                ConfigKey("deployment_config_name", "deployment configuration overriding the group's"),
                ConfigKey("auto_rollback", "roll back when the deployment fails", kind="bool"),
                ConfigKey(
                    "on_ready",
                    "ecs blue/green: 'continue' rerouting traffic by itself, or 'wait' for someone to continue",
                    default="continue",
                    choices=("continue", "wait"),
                ),
                ConfigKey("description", "deployment description"),
                # server
                ConfigKey("revision_s3_bucket", "server: bucket of the revision bundle"),
                ConfigKey("revision_s3_key", "server: key of the revision bundle"),
                ConfigKey(
                    "revision_bundle_type",
                    "server: zip, tar, tgz, YAML or JSON",
                    default="zip",
                    choices=("zip", "tar", "tgz", "YAML", "JSON"),
                ),
                ConfigKey("revision_github_repository", "server: GitHub repository ('owner/name') of the revision"),
                ConfigKey("revision_github_commit", "server: commit of the revision"),
                # ecs
                ConfigKey(
                    "task_definition_template",
                    "ecs: task definition, as a mapping, a JSON file in the spec's folder (a path relative to it), "
                    "or a file in an input artifact ('BuildOutput::taskdef.json'); an <IMAGE1_NAME> image in it "
                    "is replaced by `image`",
                    kind="str|mapping",
                    file=True,
                ),
                ConfigKey(
                    "appspec_template",
                    "ecs: CodePipeline's AppSpec template in an input artifact ('BuildOutput::appspec.yaml'): its "
                    "<TASK_DEFINITION> becomes the registered task definition, and the container, port and hooks "
                    "come from it",
                ),
                ConfigKey("container_name", "ecs: container that receives traffic"),
                ConfigKey("container_port", "ecs: its port", kind="int", range=(1, 65535)),
                ConfigKey(
                    "image",
                    "ecs: image URI for that container, or an imageDetail.json in an input artifact "
                    "('BuildOutput::imageDetail.json', its ImageURI)",
                ),
                ConfigKey("platform_version", "ecs: Fargate platform version"),
                ConfigKey(
                    "network_configuration", "ecs: awsvpcConfiguration (subnets, security groups)", kind="mapping"
                ),
                ConfigKey("hooks", "ecs/lambda: lifecycle event -> Lambda function name", kind="mapping"),
                # lambda
                ConfigKey("function_name", "lambda: function to shift traffic on"),
                ConfigKey("alias", "lambda: alias that receives traffic"),
                ConfigKey("target_version", "lambda: version to shift traffic to", kind="str|int"),
                ConfigKey(
                    "publish_version",
                    "lambda: publish a new version (of the input artifact's code, when the action has one) and "
                    "shift traffic to it",
                    kind="bool",
                ),
                ConfigKey(
                    "current_version",
                    "lambda: version the alias points at now (looked up if not given)",
                    kind="str|int",
                ),
            ),
            outputs=("DeploymentId", "DeploymentStatus", "TaskDefinitionArn", "LambdaVersion", "ConsoleUrl"),
            check=_check_codedeploy,
            artifacts=ArtifactSlots(inputs=(0, 3), check=_codedeploy_artifacts),
            operator=f"{_OPERATORS}.codedeploy:CodeDeployOperator",
            imported_from={"Deploy/AWS/CodeDeploy": "codedeploy", "Deploy/AWS/CodeDeployToECS": "codedeploy_ecs"},
            polls=True,
            resources=_codedeploy_resources,
            permissions=_codedeploy_permissions,
        ),
        ActionType(
            "deploy.s3",
            "Deploy",
            "Puts an artifact (a zip in S3) into a bucket: extracted under a prefix, or copied as it is.",
            keys=(
                ConfigKey("bucket_name", "bucket to deploy to", required=True),
                ConfigKey(
                    "source",
                    "the zip to deploy as s3://bucket/key.zip, when the action has no input artifact (which is "
                    "then deployed)",
                ),
                ConfigKey(
                    "extract",
                    "unzip the artifact and put each file under object_key; false: copy the zip to object_key",
                    kind="bool",
                    default=True,
                ),
                ConfigKey("object_key", "prefix of the extracted files, or the key of the copied zip"),
                ConfigKey("kms_encryption_key_arn", "KMS key to encrypt the objects with (SSE-KMS)"),
                ConfigKey("canned_acl", "canned ACL of the objects", choices=CANNED_ACLS),
                ConfigKey("cache_control", "Cache-Control header of the objects, e.g. 'max-age=3600'"),
            ),
            outputs=("BucketName", "ObjectKey", "ObjectCount", "ConsoleUrl"),
            check=_check_s3_deploy,
            artifacts=ArtifactSlots(inputs=(0, 1), check=lambda c, i, o: _source_or_input(c, i, "the zip to deploy")),
            operator=f"{_OPERATORS}.s3_deploy:S3DeployOperator",
            imported_from={"Deploy/AWS/S3": "s3_deploy"},
            resources=_s3_deploy_resources,
            permissions=_s3_deploy_permissions,
        ),
        ActionType(
            "invoke.lambda",
            "Invoke",
            "Invokes a Lambda function synchronously with a CodePipeline-shaped job event; the function returns "
            "its result (and output variables).",
            keys=(
                ConfigKey("function_name", "function name, ARN, or 'name:alias' / 'name:version'", required=True),
                ConfigKey(
                    "user_parameters",
                    "text handed to the function as the job's UserParameters (a mapping is sent as JSON text)",
                    kind="str|mapping",
                ),
            ),
            outputs=("FunctionName", "ExecutedVersion", "StatusCode"),
            open_outputs=True,
            open_outputs_text="any variable the function returns in outputVariables",
            check=_check_lambda_invoke,
            artifacts=ArtifactSlots(inputs=(0, 5)),  # their S3 locations go in the job event
            operator=f"{_OPERATORS}.lambda_invoke:LambdaInvokeOperator",
            imported_from={"Invoke/AWS/Lambda": "lambda_invoke"},
            resources=lambda config: [Resource("lambda_function", config.get("function_name"))],
            permissions=_lambda_invoke_permissions,
        ),
        ActionType(
            "invoke.stepfunctions",
            "Invoke",
            "Runs a Step Functions state machine (a standard workflow) and waits for its execution.",
            keys=(
                ConfigKey(
                    "state_machine_arn",
                    "ARN of the state machine to run",
                    required=True,
                ),
                ConfigKey(
                    "execution_name_prefix",
                    "put before the execution's name (at most 47 letters, digits, '-' or '_'); the rest is "
                    "derived from the task, so a retry finds the execution it started",
                ),
                ConfigKey(
                    "input",
                    "the execution's input: a mapping (`#{...}` references allowed), inline JSON, a JSON file "
                    "in the spec's folder (a path relative to it) or in an input artifact ('BuildOutput::input.json'); "
                    "`{}` when not given",
                    kind="str|mapping",
                    file=True,
                ),
            ),
            outputs=("ExecutionArn", "StateMachineArn", "Status"),
            open_outputs=True,
            open_outputs_text="each top-level key of the execution's output when it is a JSON object "
            "(strings as they are, other values as JSON text)",
            check=_check_stepfunctions,
            artifacts=ArtifactSlots(inputs=(0, 1), check=_file_key_artifacts(("input",))),
            operator=f"{_OPERATORS}.stepfunctions:StepFunctionsOperator",
            imported_from={"Invoke/AWS/StepFunctions": "stepfunctions"},
            polls=True,
            resources=lambda config: [Resource("stepfunctions_state_machine", config.get("state_machine_arn"))],
            permissions=_stepfunctions_permissions,
        ),
        ActionType(
            "deploy.elasticbeanstalk",
            "Deploy",
            "Deploys a source bundle in S3 to an Elastic Beanstalk environment (a new application version).",
            keys=(
                ConfigKey("application_name", "Elastic Beanstalk application", required=True),
                ConfigKey("environment_name", "environment to update", required=True),
                ConfigKey(
                    "source",
                    "the source bundle (zip or war) as s3://bucket/key, when the action has no input artifact "
                    "(which is then the bundle)",
                ),
                ConfigKey("description", "the application version's description (default: the DAG, run and task)"),
            ),
            outputs=(
                "ApplicationName",
                "EnvironmentName",
                "EnvironmentId",
                "VersionLabel",
                "EnvironmentUrl",
                "ConsoleUrl",
            ),
            check=_check_elasticbeanstalk,
            artifacts=ArtifactSlots(inputs=(0, 1), check=lambda c, i, o: _source_or_input(c, i, "the source bundle")),
            operator=f"{_OPERATORS}.elasticbeanstalk:ElasticBeanstalkOperator",
            imported_from={"Deploy/AWS/ElasticBeanstalk": "elasticbeanstalk"},
            polls=True,
            resources=_elasticbeanstalk_resources,
            permissions=_elasticbeanstalk_permissions,
        ),
        ActionType(
            "deploy.cloudformation",
            "Deploy",
            "Creates, updates or deletes a CloudFormation stack, or creates and executes a change set of it "
            "(CodePipeline's CloudFormation action modes).",
            keys=(
                ConfigKey(
                    "action_mode",
                    "what to do with the stack",
                    required=True,
                    choices=CLOUDFORMATION_ACTION_MODES,
                ),
                ConfigKey("stack_name", "the stack", required=True),
                ConfigKey("change_set_name", "the change set (CHANGE_SET_REPLACE, CHANGE_SET_EXECUTE)"),
                ConfigKey(
                    "template",
                    "the template: a YAML or JSON file in the spec's folder (a path relative to it) or in an input "
                    "artifact ('BuildOutput::template.yaml'), an s3:// or https:// URL of one, or a mapping "
                    "(CREATE_UPDATE, REPLACE_ON_FAILURE, CHANGE_SET_REPLACE)",
                    kind="str|mapping",
                    file=True,
                ),
                ConfigKey(
                    "template_configuration",
                    "CodePipeline's template configuration (Parameters, Tags, StackPolicy): a JSON file in the "
                    "spec's folder or in an input artifact, an s3:// URL, or a mapping",
                    kind="str|mapping",
                    file=True,
                ),
                ConfigKey(
                    "parameter_overrides",
                    "template parameter -> value (strings; #{...} allowed), winning over the template configuration's",
                    kind="mapping",
                ),
                ConfigKey(
                    "capabilities", "CAPABILITY_IAM, CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND", kind="list[str]"
                ),
                ConfigKey("role_arn", "IAM role CloudFormation acts as on the stack (its service role)"),
            ),
            outputs=("StackName", "StackId", "StackStatus", "ChangeSetId", "ConsoleUrl"),
            open_outputs=True,
            open_outputs_text="each of the stack's outputs, by its OutputKey",
            check=_check_cloudformation,
            artifacts=ArtifactSlots(inputs=(0, 2), check=_file_key_artifacts(("template", "template_configuration"))),
            operator=f"{_OPERATORS}.cloudformation:CloudFormationOperator",
            imported_from={"Deploy/AWS/CloudFormation": "cloudformation"},
            polls=True,
            resources=_cloudformation_resources,
            permissions=_cloudformation_permissions,
        ),
        ActionType(
            "deploy.ecs",
            "Deploy",
            "A rolling deployment of an ECS service (deployment controller ECS): new images in a new revision of "
            "the service's task definition.",
            keys=(
                ConfigKey("cluster_name", "ECS cluster of the service", required=True),
                ConfigKey("service_name", "ECS service to deploy (deployment controller ECS)", required=True),
                ConfigKey(
                    "image_definitions",
                    "images to deploy: a list of {name, imageUri} (name: a container of the task definition), "
                    "or an imagedefinitions.json file in the spec's folder (a path relative to it) or in an input "
                    "artifact ('BuildOutput::imagedefinitions.json')",
                    required=True,
                    kind="str|list",
                    file=True,
                ),
                ConfigKey(
                    "deployment_timeout",
                    "minutes the deployment may take before the action fails (and rolls the service back)",
                    kind="int",
                    default=60,
                    range=(1, 60),
                ),
            ),
            outputs=("ClusterName", "ServiceName", "TaskDefinitionArn", "DeploymentId", "ConsoleUrl"),
            check=_check_ecs,
            artifacts=ArtifactSlots(inputs=(0, 1), check=_file_key_artifacts(("image_definitions",))),
            operator=f"{_OPERATORS}.ecs:EcsDeployOperator",
            imported_from={"Deploy/AWS/ECS": "ecs"},
            polls=True,
            resources=_ecs_resources,
            permissions=_ecs_permissions,
        ),
        ActionType(
            "compute.commands",
            "Compute",
            "Shell commands run in a CodeBuild project, exporting the environment variables named in output_variables.",
            keys=(
                ConfigKey(
                    "commands", "shell commands, run in order; one command per item", required=True, kind="list[str]"
                ),
                ConfigKey(
                    "output_variables", "environment variables to export as the action's outputs", kind="list[str]"
                ),
                ConfigKey("project_name", "CodeBuild project the commands run in (one with no source works)"),
                # As build.codebuild's: the same overrides of the same StartBuild.
                *(k for k in _CODEBUILD_KEYS if k.name in ("environment_variables", "build_timeout_minutes")),
            ),
            # CodePipeline's Commands action outputs exactly its OutputVariables (here next to CodeBuild's).
            outputs=_CODEBUILD_OUTPUTS,
            outputs_key="output_variables",
            check=lambda config: _check_commands(config) + _check_codebuild(config),
            artifacts=ArtifactSlots(inputs=(0, 1)),  # the build's source, as CodePipeline's Commands
            operator=f"{_OPERATORS}.commands:CommandsOperator",
            imported_from={"Compute/AWS/Commands": "commands"},
            polls=True,
            resources=_codebuild_resources,
            permissions=_codebuild_permissions,
        ),
    )
}


def get_action_type(name: str) -> ActionType | None:
    return ACTION_TYPES.get(name)


def _artifacts_text(slots: ArtifactSlots) -> str:
    def count(span: tuple[int, int], what: str) -> str:
        fewest, most = span
        if most == 0:
            return f"no {what}"
        return f"{'' if fewest == most else f'{fewest} to '}{most} {what}"

    return f"{count(slots.inputs, 'input')}, {count(slots.outputs, 'output')}"


def reference_markdown() -> str:
    """The action-type section of docs/pipeline-spec.md, generated from the table."""
    out = []
    for t in ACTION_TYPES.values():
        out += [
            f"### `{t.name}` ({t.category})",
            "",
            t.description,
            "",
            "| key | required | value | default | description |",
            "|---|---|---|---|---|",
        ]
        for k in t.keys:
            value = " \\| ".join(f"`{c}`" for c in k.choices) if k.choices else KIND_NAMES[k.kind]
            if k.range:
                value += f" ({k.range[0]}-{k.range[1]})"
            default = (
                "" if k.default is None else f"`{str(k.default).lower() if isinstance(k.default, bool) else k.default}`"
            )
            out.append(f"| `{k.name}` | {'yes' if k.required else ''} | {value} | {default} | {k.description} |")
        out += ["", f"Outputs: {t.outputs_text}.", "", f"Artifacts: {_artifacts_text(t.artifacts)}.", ""]
    return "\n".join(out)
