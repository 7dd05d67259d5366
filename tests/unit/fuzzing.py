"""Generated input for the spec loader, validator, compiler and the CodePipeline importer, and what must hold.

Shared by tests/unit/test_spec_fuzz.py and test_import_fuzz.py (a few hundred examples in make test) and by
tests/benchmarks/bench_fuzz.py (tens of thousands). The only acceptable outcome of any input is a result or the
project's own error: SpecError naming the file (and line or field) for a spec, ImportInputError naming the
source for a definition. Anything else raised is a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# Hypothesis caches what it reads of the source in .hypothesis/ of the working directory; not in the repository.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "release-orchestrator-hypothesis")
)

import yaml  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from release_orchestrator.pipeline.action_types import ACTION_TYPES
from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.importer import ImportInputError, import_codepipeline, parse_codepipeline_json
from release_orchestrator.pipeline.loader import MAX_ALIAS_EXPANSION, parse_spec_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPECS = sorted((REPO / "include" / "pipelines").glob("*.yaml")) + [
    REPO / "tests" / "unit" / "fixtures" / "specs" / "webapp.yaml"
]
EXAMPLE_DEFINITIONS = sorted((REPO / "tests" / "unit" / "fixtures" / "codepipeline").glob("*.json"))
SOURCE = "fuzz/spec.yaml"


def fuzz_settings(max_examples: int, **extra) -> settings:
    """Deterministic (derandomize), no example database written into the repository, no per-example deadline
    (the first compile imports the operators)."""
    options = {"derandomize": True, "database": None, "deadline": None, "suppress_health_check": list(HealthCheck)}
    return settings(max_examples=max_examples, **{**options, **extra})


# --- values of every kind ------------------------------------------------------------------------------------

_texts = st.one_of(
    st.text(max_size=20),  # any Unicode, surrogates and control characters included
    st.sampled_from(
        [
            "",
            " ",
            "#{Source.CommitId}",
            "#{variables.environment_url}",
            "#{Nope.X}",
            "{{ var.value.secret }}",
            "{% for x in y %}",
            "--format '{{.Id}}'",
            "ünïcödé ✓ 🚀",
            "\u2028\u2029\x85",
            "a: b",
            "- x",
            "&a",
            "*a",
            "!!python/object:os.system",
            "0 6 * * 1-5",
            "7d",
            "server",
            "ecs",
            "lambda",
            "QUEUED",
            "PARALLEL",
            "SUPERSEDED",
            "x" * 300,
            "../../etc/passwd",
        ]
    ),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 999, 1000, 2**63, -(2**64), 10**40]),
    st.floats(),
    _texts,
)


def _deep(depth: int, leaf: Any = "x") -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


def _laughs(levels: int) -> list:
    """The billion laughs: each level nine references to the one below (YAML anchors and aliases when dumped)."""
    value: Any = ["lol"] * 9
    for _ in range(levels):
        value = [value] * 9
    return value


# Structures a spec author would not write: large or deep (and, in YAML, aliased many times).
_large = st.one_of(
    st.integers(35, 120).map(_deep),
    st.integers(1000, 3000).map(lambda n: list(range(n))),
    st.integers(200, 1000).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.integers(10_000, 200_000).map(lambda n: "y" * n),
)
junk = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)),
    max_leaves=12,
)
any_value = st.one_of(junk, junk, junk, st.just([]), st.just({}), _large, st.integers(2, 6).map(_laughs))
# JSON has no aliases: a definition is a tree, as large as its text.
any_json = st.one_of(junk, junk, junk, st.just([]), st.just({}), _large)


# --- specs -------------------------------------------------------------------------------------------------------

_FIELDS = {
    "pipeline": [
        "name",
        "description",
        "execution_mode",
        "supersede_approvals",
        "schedule",
        "variables",
        "triggers",
        "notifications",
        "artifact_store",
        "aws_conn_id",
        "region",
        "tags",
        "stages",
    ],
    "action": [
        "name",
        "type",
        "run_order",
        "namespace",
        "configuration",
        "input_artifacts",
        "output_artifacts",
        "region",
        "aws_conn_id",
        "timeout_minutes",
    ],
}


def _maybe(strategy, other=any_value):
    """Mostly a value of the right shape, sometimes anything."""
    return st.one_of(strategy, strategy, strategy, other)


_names = _maybe(st.from_regex(r"[A-Za-z0-9._@-]{1,12}", fullmatch=True), _texts)
_kind_values = {
    "str": _maybe(_texts),
    "int": _maybe(st.integers(-5, 2000)),
    "bool": _maybe(st.booleans()),
    "list[str]": _maybe(st.lists(_texts, max_size=3)),
    "mapping": _maybe(st.dictionaries(_texts, junk, max_size=3)),
    "str|int": _maybe(st.one_of(_texts, st.integers())),
    "str|mapping": _maybe(st.one_of(_texts, st.dictionaries(_texts, junk, max_size=3))),
    "list|mapping": _maybe(st.one_of(st.lists(junk, max_size=3), st.dictionaries(_texts, junk, max_size=3))),
}


@st.composite
def _configuration(draw, type_name: str) -> dict:
    action_type = ACTION_TYPES.get(type_name)
    if action_type is None:
        return draw(st.dictionaries(_texts, junk, max_size=3))
    keys = draw(st.lists(st.sampled_from(action_type.keys), max_size=len(action_type.keys), unique=True))
    config = {}
    for key in keys:
        if key.choices and draw(st.booleans()):
            config[key.name] = draw(st.sampled_from(key.choices))
        else:
            config[key.name] = draw(_kind_values[key.kind])
    if draw(st.integers(0, 5)) == 0:
        config[draw(_texts)] = draw(junk)
    return config


@st.composite
def _action(draw) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(any_value)
    type_name = draw(_maybe(st.sampled_from(sorted(ACTION_TYPES)), _texts))
    action = {"name": draw(_names), "type": type_name}
    for field in draw(st.lists(st.sampled_from(_FIELDS["action"][2:]), max_size=4, unique=True)):
        if field == "configuration":
            action[field] = draw(_maybe(_configuration(type_name if isinstance(type_name, str) else "")))
        elif field in ("run_order", "timeout_minutes"):
            action[field] = draw(_maybe(st.integers(-2, 1000)))
        elif field.endswith("artifacts"):
            action[field] = draw(_maybe(st.lists(_texts, max_size=2)))
        else:
            action[field] = draw(_maybe(_names))
    return action


@st.composite
def generated_spec(draw) -> Any:
    """A pipeline assembled from the spec's own fields and the registry's keys, with values of any type."""
    stages = draw(
        st.lists(
            _maybe(st.fixed_dictionaries({"name": _names, "actions": st.lists(_action(), max_size=3)})),
            max_size=3,
        )
    )
    pipeline: dict[str, Any] = {"name": draw(_names), "stages": stages}
    for field in draw(st.lists(st.sampled_from(_FIELDS["pipeline"][1:-1]), max_size=4, unique=True)):
        pipeline[field] = draw(any_value)
    if draw(st.integers(0, 10)) == 0:
        return draw(any_value)
    return {"pipeline": pipeline}


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a document: the keys and indexes that lead to it."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*path, index))
    return out


def _mutate(document: Any, path: tuple, how: str, new: Any) -> Any:
    """`document` with the value at `path` replaced, removed, repeated or given a sibling."""
    if not path:
        return new if how == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "remove":
        del parent[last]
    elif how == "repeat" and isinstance(parent, list):
        parent.insert(last, parent[last])  # the same object twice: dumped as an anchor and an alias
    elif how == "sibling" and isinstance(parent, dict):
        parent[new if isinstance(new, str) else str(new)[:20]] = parent[last]
    return document


def mutated(examples: list[Any], values=any_value):
    """One of `examples` (parsed documents) changed at one or two places, with `values` put in."""

    @st.composite
    def strategy(draw):
        document = json.loads(json.dumps(draw(st.sampled_from(examples))))  # a fresh copy
        # The places are those of the example: a value put in may be too large to walk.
        places = _paths(document)
        for _ in range(draw(st.integers(1, 2))):
            path = draw(st.sampled_from(places))
            how = draw(st.sampled_from(["replace", "replace", "replace", "remove", "repeat", "sibling"]))
            try:
                document = _mutate(document, path, how, draw(values))
            except (KeyError, IndexError, TypeError):  # the first change removed or replaced this place
                pass
        return document

    return strategy()


def example_spec_documents() -> list[Any]:
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in EXAMPLE_SPECS]


def to_yaml(document: Any) -> str:
    try:
        return yaml.dump(document, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
    except UnicodeEncodeError:
        # A lone surrogate: libyaml cannot write it, PyYAML's own writer escapes it ("\\uD800"), which the
        # loader then refuses, as it should.
        return yaml.dump(document, Dumper=yaml.SafeDumper, allow_unicode=True, sort_keys=False)


# Text-level changes to a real spec: what YAML itself can do (aliases, tags, bad indentation).
_SNIPPETS = [
    "[]",
    "{}",
    "null",
    "~",
    "0x10",
    "1e400",
    ".nan",
    "-.inf",
    "!!binary aGk=",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!timestamp 2001-12-14",
    "2001-12-14",
    "&anchor [1, 2]",
    "*undefined",
    "&x [*x]",
    "{? [a]: b}",
    "[a, [b, [c]]]",
    '"\\ud800"',
    '"\\x00"',
    "'\u2028'",
    "|\n  block\n  text",
    "[" * 200 + "]" * 200,
    "{a: " * 40 + "1" + "}" * 40,
    "\t",
    "%YAML 1.2",
    "--- x\n--- y",
    "<<: {a: 1}",
]


@st.composite
def text_mutation(draw) -> str:
    """A real spec's text with a line changed, removed, repeated or re-indented, or an alias bomb inserted."""
    lines = draw(st.sampled_from(EXAMPLE_SPECS)).read_text(encoding="utf-8").split("\n")
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    how = draw(st.integers(0, 5))
    if how == 0 and ":" in line:
        key = line.split(":", 1)[0]
        lines[index] = f"{key}: {draw(st.one_of(st.sampled_from(_SNIPPETS), st.text(max_size=10)))}"
    elif how == 1:
        del lines[index]
    elif how == 2:
        lines.insert(index, line)
    elif how == 3:
        lines[index] = " " * draw(st.integers(0, 12)) + line.lstrip()
    elif how == 4:
        indent = len(line) - len(line.lstrip())
        levels = draw(st.integers(1, 9))
        bomb = [f"b0: &b0 [{', '.join(['lol'] * 9)}]"]
        bomb += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]" for i in range(1, levels)]
        lines[index + 1 : index + 1] = [" " * indent + b for b in bomb]
    else:
        lines[index] = draw(st.text(max_size=30))
    return "\n".join(lines)


def spec_texts():
    """Spec texts: generated, real ones mutated as data, and real ones mutated as text."""
    examples = example_spec_documents()
    return st.one_of(
        generated_spec().map(to_yaml),
        mutated(examples).map(to_yaml),
        mutated(examples).map(to_yaml),
        text_mutation(),
    )


def check_spec(text: str) -> str:
    """Load, validate and (when valid) compile and serialize `text`; what happened ("valid" or "invalid").

    Raises what the code raised when it is not a spec error, and AssertionError when a spec error does not
    name the file and a line or field, or says far more than the input holds.
    """
    pipeline, errors = parse_spec_text(text, SOURCE)
    for error in errors:
        assert isinstance(error, SpecError), error
        assert error.file == SOURCE, error
        assert error.line or error.field, error
    size = sum(len(str(e)) for e in errors)
    assert size <= 1000 * len(errors) + 4 * (len(text) + MAX_ALIAS_EXPANSION), f"{size} characters of errors"
    if errors:
        return "invalid"
    assert pipeline is not None
    from airflow.serialization.serialized_objects import DagSerialization

    from release_orchestrator.pipeline.compiler import build_dag

    DagSerialization.to_dict(build_dag(pipeline))
    return "valid"


# --- CodePipeline definitions ------------------------------------------------------------------------------------

_PROVIDERS = [
    ("Source", "AWS", "CodeStarSourceConnection"),
    ("Source", "ThirdParty", "GitHub"),
    ("Source", "AWS", "CodeCommit"),
    ("Source", "AWS", "S3"),
    ("Source", "AWS", "ECR"),
    ("Build", "AWS", "CodeBuild"),
    ("Test", "AWS", "CodeBuild"),
    ("Approval", "AWS", "Manual"),
    ("Deploy", "AWS", "CodeDeploy"),
    ("Deploy", "AWS", "CodeDeployToECS"),
    ("Deploy", "AWS", "ECS"),
    ("Build", "Custom", "Jenkins"),
]
_CP_KEYS = [
    "FullRepositoryId",
    "BranchName",
    "ConnectionArn",
    "DetectChanges",
    "OutputArtifactFormat",
    "Owner",
    "Repo",
    "Branch",
    "OAuthToken",
    "PollForSourceChanges",
    "RepositoryName",
    "S3Bucket",
    "S3ObjectKey",
    "ImageTag",
    "ProjectName",
    "EnvironmentVariables",
    "PrimarySource",
    "BatchEnabled",
    "CombineArtifacts",
    "NotificationArn",
    "CustomData",
    "ExternalEntityLink",
    "ApplicationName",
    "DeploymentGroupName",
    "TaskDefinitionTemplateArtifact",
    "TaskDefinitionTemplatePath",
    "AppSpecTemplateArtifact",
    "AppSpecTemplatePath",
    "Image1ArtifactName",
    "Image1ContainerName",
    "Image2ArtifactName",
]


def _jmaybe(strategy):
    return _maybe(strategy, any_json)


_jnames = _jmaybe(st.from_regex(r"[A-Za-z0-9._@-]{1,12}", fullmatch=True))
_cp_config_values = st.one_of(
    _texts,
    st.sampled_from(["true", "false", "TRUE", "CODE_ZIP", "CODEBUILD_CLONE_REF"]),
    st.sampled_from(
        [
            '[{"name": "A", "value": "1"}]',
            '[{"name": "A", "value": "x", "type": "SECRETS_MANAGER"}]',
            '[{"name": "A", "value": ' + "[" * 50 + "]" * 50 + "}]",
            "[" * 100_000 + "]" * 100_000,
            '{"not": "a list"}',
            "not json",
        ]
    ),
)


@st.composite
def _cp_action(draw) -> Any:
    if draw(st.integers(0, 15)) == 0:
        return draw(any_json)
    category, owner, provider = draw(st.sampled_from(_PROVIDERS))
    action = {
        "name": draw(_jmaybe(_jnames)),
        "actionTypeId": draw(
            _jmaybe(
                st.fixed_dictionaries(
                    {"category": st.just(category), "owner": st.just(owner), "provider": st.just(provider)},
                    optional={"version": st.just("1")},
                )
            )
        ),
        "configuration": draw(_jmaybe(st.dictionaries(st.sampled_from(_CP_KEYS), _cp_config_values, max_size=6))),
    }
    optional = {
        "runOrder": _jmaybe(st.integers(1, 3)),
        "namespace": _jmaybe(_jnames),
        "region": _jmaybe(st.sampled_from(["us-east-1", "eu-west-1"])),
        "roleArn": _jmaybe(st.sampled_from(["arn:aws:iam::1:role/Deploy", "arn:aws:iam::2:role/it's"])),
        "inputArtifacts": _jmaybe(st.lists(st.fixed_dictionaries({"name": _jnames}), max_size=2)),
        "outputArtifacts": _jmaybe(st.lists(st.fixed_dictionaries({"name": _jnames}), max_size=2)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True)):
        action[key] = draw(optional[key])
    return action


@st.composite
def generated_definition(draw) -> Any:
    stages = draw(
        st.lists(_jmaybe(st.fixed_dictionaries({"name": _jnames, "actions": st.lists(_cp_action(), max_size=3)})))
    )
    definition = {"name": draw(_jmaybe(_jnames)), "stages": stages}
    extra = {
        "executionMode": _jmaybe(st.sampled_from(["QUEUED", "PARALLEL", "SUPERSEDED"])),
        "pipelineType": _jmaybe(st.sampled_from(["V1", "V2"])),
        "roleArn": _jmaybe(_texts),
        "artifactStore": _jmaybe(st.fixed_dictionaries({"location": _texts})),
        "variables": _jmaybe(st.lists(st.fixed_dictionaries({"name": _jnames}, optional={"defaultValue": _texts}))),
        "triggers": any_json,
        "metadata": _jmaybe(st.fixed_dictionaries({"pipelineArn": _texts})),
    }
    for key in draw(st.lists(st.sampled_from(sorted(extra)), max_size=3, unique=True)):
        definition[key] = draw(extra[key])
    if draw(st.booleans()):
        definition = {"pipeline": definition, "metadata": draw(_jmaybe(st.fixed_dictionaries({})))}
    return draw(_jmaybe(st.just(definition)))


@st.composite
def _json_text_mutation(draw) -> str:
    """A fixture's JSON text cut, or with a deeply nested value or an escaped surrogate put in."""
    text = draw(st.sampled_from(EXAMPLE_DEFINITIONS)).read_text(encoding="utf-8")
    at = draw(st.integers(0, len(text)))
    insert = draw(
        st.sampled_from(['"\\ud800"', "[" * 100_000 + "]" * 100_000, "[" * 40 + "]" * 40, "NaN", "1e999", "\u0000"])
    )
    return draw(st.sampled_from([text[:at], text[:at] + insert + text[at:]]))


def definitions():
    """CodePipeline definitions: generated ones, the fixtures mutated as data, and as text."""
    examples = [json.loads(path.read_text(encoding="utf-8")) for path in EXAMPLE_DEFINITIONS]
    return st.one_of(
        generated_definition(), mutated(examples, any_json), mutated(examples, any_json), _json_text_mutation()
    )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def check_import(definition: Any) -> str:
    """Import `definition` (JSON text, or a value written as JSON, as `import-codepipeline` reads a file); what
    happened ("refused" or "imported"). The written YAML must hold exactly the
    spec the result says it holds (no value of the definition may add YAML of its own) and be loaded without
    a crash."""
    text = definition if isinstance(definition, str) else json.dumps(definition)
    try:
        result = import_codepipeline(parse_codepipeline_json(text, "fuzz.json"), source="fuzz.json")
    except ImportInputError as e:
        assert "fuzz.json" in str(e), e
        return "refused"
    written = yaml.load(result.yaml, Loader=yaml.CSafeLoader)
    spec = dict(result.spec["pipeline"])
    order = ("name", "type", "run_order", "namespace", "region", "aws_conn_id")
    order += ("input_artifacts", "output_artifacts", "configuration")
    spec["stages"] = [
        {
            "name": stage["name"],
            "actions": [{k: a[k] for k in order if a.get(k) not in (None, {}, [])} for a in stage["actions"]],
        }
        for stage in spec["stages"]
    ] or None  # `stages:` with nothing under it
    assert _json(written) == _json({"pipeline": spec}), "the written YAML differs from the spec"
    for error in result.errors:
        assert isinstance(error, SpecError) and error.file == "fuzz.json", error
    return "imported"
