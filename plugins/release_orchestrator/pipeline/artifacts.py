"""Artifacts between actions, as a spec declares them: which store serves which region, the checks, the wiring.

An action's `output_artifacts` are zip objects it writes to the artifact store of its region; a later action
names them in `input_artifacts` and reads them from the store of its own region (copied there when the
producer ran in another region). Each run keeps its artifacts under its own folder:

    s3://<bucket>/<prefix>/<pipeline>/<run folder>/<ArtifactName>.zip

The store comes from the spec's `artifact_store` (`s3://bucket/prefix`, or a mapping of region to such a URI
for pipelines acting in several regions) or, when the spec names none, from the ARTIFACT_STORE setting.
Kept free of Airflow imports (DAG-parse time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from release_orchestrator import settings

from .action_types import ACTION_TYPES, Permission, regional_arn
from .model import Action, Pipeline, Stage
from .syntax import airflow_key

ARTIFACT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_STORE_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[^\s]*))?$")


@dataclass(frozen=True)
class Producer:
    stage_index: int
    stage: Stage
    action: Action


def pipeline_store(pipeline: Pipeline | None) -> str | dict[str, str] | None:
    """The spec's artifact_store, else the ARTIFACT_STORE setting."""
    if pipeline is not None and pipeline.artifact_store:
        return pipeline.artifact_store
    return settings.ARTIFACT_STORE.get()


def store_uri_problem(uri: Any) -> str | None:
    if not isinstance(uri, str) or not _STORE_RE.match(uri.rstrip("/")):
        return f"expected s3://bucket or s3://bucket/prefix, got {uri!r}"
    return None


def action_region(pipeline: Pipeline, action: Action) -> str | None:
    return action.region or pipeline.region


def store_for(pipeline: Pipeline, action: Action) -> str | None:
    """The store URI serving `action`'s region, or None when the pipeline has none for it."""
    store = pipeline_store(pipeline)
    region = action_region(pipeline, action)
    if isinstance(store, str):
        # One store: the pipeline's own region (an action in another region needs a store there).
        return store.rstrip("/") if action.region in (None, pipeline.region) else None
    if isinstance(store, dict):
        uri = store.get(region) if region else None
        return uri.rstrip("/") if isinstance(uri, str) else None
    return None


def kms_key_for(pipeline: Pipeline, action: Action) -> str | None:
    """The KMS key that encrypts the artifacts of the store serving `action`'s region, if any."""
    key = pipeline.artifact_kms_key
    if isinstance(key, str):
        return key if action.region in (None, pipeline.region) else None
    if isinstance(key, dict):
        region = action_region(pipeline, action)
        value = key.get(region) if region else None
        return value if isinstance(value, str) else None
    return None


_KMS_KEY_RE = re.compile(
    r"^(arn:aws[\w-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+|alias/[\w/+=,.@-]+|[0-9a-f-]{36})$"
)


def uses_artifacts(action: Action) -> bool:
    return bool(action.input_artifacts or action.output_artifacts)


def producers(pipeline: Pipeline) -> dict[str, Producer]:
    """Artifact name -> the action that writes it (the first one, if a spec names it twice)."""
    found: dict[str, Producer] = {}
    for index, stage in enumerate(pipeline.stages):
        for action in stage.actions:
            for name in action.output_artifacts:
                if isinstance(name, str):
                    found.setdefault(name, Producer(index, stage, action))
    return found


def artifact_problems(pipeline: Pipeline) -> list[tuple[Stage | None, Action | None, str, str]]:
    """(stage, action, field, message) for every artifact rule a pipeline breaks."""
    problems: list[tuple[Stage | None, Action | None, str, str]] = []
    store = pipeline_store(pipeline)
    if isinstance(store, str):
        if problem := store_uri_problem(store):
            problems.append((None, None, "artifact_store", problem))
    elif isinstance(store, dict):
        for region, uri in store.items():
            if problem := store_uri_problem(uri):
                problems.append((None, None, f"artifact_store.{region}", problem))
    elif store is not None:
        problems.append((None, None, "artifact_store", "expected s3://bucket/prefix or a mapping of region to one"))
    kms = pipeline.artifact_kms_key
    for field, value in kms.items() if isinstance(kms, dict) else [(None, kms)] if kms is not None else []:
        where = f"artifact_kms_key.{field}" if field else "artifact_kms_key"
        if not isinstance(value, str) or not _KMS_KEY_RE.match(value):
            problems.append((None, None, where, f"expected a KMS key ARN, key id or alias/<name>, got {value!r}"))
        elif field and not (isinstance(store, dict) and field in store):
            problems.append((None, None, where, f"no artifact store in {field}: artifact_store names none there"))

    written: dict[str, tuple[Stage, Action]] = {}
    found = producers(pipeline)
    for s_index, stage in enumerate(pipeline.stages):
        for action in stage.actions:
            action_type = ACTION_TYPES.get(action.type) if isinstance(action.type, str) else None
            for key in ("input_artifacts", "output_artifacts"):
                for i, name in enumerate(getattr(action, key)):
                    if not isinstance(name, str) or not ARTIFACT_NAME_RE.match(name):
                        problems.append(
                            (
                                stage,
                                action,
                                f"{key}[{i}]",
                                f"artifact name {name!r} must be 1-100 letters, digits, _ or -",
                            )
                        )
            for i, name in enumerate(action.output_artifacts):
                if not isinstance(name, str):
                    continue  # reported above
                if name in written:
                    other_stage, other = written[name]
                    problems.append(
                        (
                            stage,
                            action,
                            f"output_artifacts[{i}]",
                            f"artifact '{name}' is already written by action '{other.name}' in stage "
                            f"'{other_stage.name}'; artifact names are unique in a pipeline",
                        )
                    )
                else:
                    written[name] = (stage, action)
            for i, name in enumerate(action.input_artifacts):
                if isinstance(name, str) and name in action.input_artifacts[:i]:
                    problems.append((stage, action, f"input_artifacts[{i}]", f"artifact '{name}' is named twice"))
                elif problem := _input_problem(found, s_index, action, name):
                    problems.append((stage, action, f"input_artifacts[{i}]", problem))
            if action_type is not None:
                problems += [(stage, action, f, m) for f, m in _slot_problems(action_type, action)]
            if uses_artifacts(action) and store_for(pipeline, action) is None:
                problems.append(
                    (
                        stage,
                        action,
                        "output_artifacts" if action.output_artifacts else "input_artifacts",
                        _no_store(pipeline, action),
                    )
                )
    return problems


def _input_problem(found: dict[str, Producer], s_index: int, action: Action, name: Any) -> str | None:
    producer = found.get(name) if isinstance(name, str) else None
    if producer is None:
        known = ", ".join(found) or "none"
        return f"no action writes artifact {name!r}; artifacts written in this pipeline: {known}"
    same_stage_earlier = (
        producer.stage_index == s_index
        and isinstance(producer.action.run_order, int)
        and isinstance(action.run_order, int)
        and producer.action.run_order < action.run_order
    )
    if producer.stage_index < s_index or same_stage_earlier:
        return None
    return (
        f"artifact '{name}' is written by action '{producer.action.name}' in stage '{producer.stage.name}', "
        "which does not finish before this action (it must be in an earlier stage, or in this stage with a "
        "lower run_order)"
    )


def _slot_problems(action_type, action: Action) -> list[tuple[str, str]]:
    slots = action_type.artifacts
    problems = []
    for key, (fewest, most), what in (
        ("input_artifacts", slots.inputs, "input"),
        ("output_artifacts", slots.outputs, "output"),
    ):
        count = len(getattr(action, key))
        if count > most:
            takes = f"takes no {what} artifacts" if most == 0 else f"takes at most {most} {what} artifact(s)"
            problems.append((key, f"{action_type.name} {takes}, this action names {count}"))
        elif count < fewest:
            problems.append((key, f"{action_type.name} needs at least {fewest} {what} artifact(s)"))
    if slots.check and isinstance(action.configuration, dict):
        for key, message in slots.check(action.configuration, action.input_artifacts, action.output_artifacts):
            field = key if key.endswith("_artifacts") else f"configuration.{key}"
            problems.append((field, message))
    return problems


def _no_store(pipeline: Pipeline, action: Action) -> str:
    store = pipeline_store(pipeline)
    region = action_region(pipeline, action)
    if store is None:
        return (
            "this action passes artifacts, and the pipeline has no artifact store: set artifact_store: "
            "s3://<bucket>/<prefix> (or the ARTIFACT_STORE setting)"
        )
    if region is None:
        return "artifact_store is a mapping of region to store: set the pipeline's region to pick this action's"
    return f"no artifact store in {region}: make artifact_store a mapping with an s3:// store for {region}"


def artifact_kwargs(pipeline: Pipeline, action: Action) -> dict[str, Any] | None:
    """What the compiler hands the operator of an action that passes artifacts: where each input is (the
    producer's store), where each output goes, and the action's own store (inputs are copied there)."""
    if not uses_artifacts(action):
        return None
    found = producers(pipeline)
    own = store_for(pipeline, action)
    inputs = []
    for name in action.input_artifacts:
        producer = found[name].action
        inputs.append(
            {
                "name": name,
                "store": store_for(pipeline, producer),
                "region": action_region(pipeline, producer),
                "producer": f"{airflow_key(found[name].stage.name)}.{airflow_key(producer.name)}",
            }
        )
    return {
        "store": own,
        "kms_key": kms_key_for(pipeline, action),
        "region": action_region(pipeline, action),
        "aws_conn_id": action.aws_conn_id or pipeline.aws_conn_id,
        "inputs": inputs,
        "outputs": [{"name": name} for name in action.output_artifacts],
    }


def artifact_permissions(pipeline: Pipeline, action: Action) -> list[Permission]:
    """What an action passing artifacts does in the stores: reads its inputs (copying them from another
    region's store), writes its outputs; only under the pipeline's folders."""
    wiring = artifact_kwargs(pipeline, action) if uses_artifacts(action) else None
    if wiring is None or not wiring["store"]:
        return []

    def objects(store: str) -> str:
        bucket, _, prefix = store.removeprefix("s3://").partition("/")
        return f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}{pipeline.name}/*"

    out = []
    if wiring["inputs"]:
        readable = sorted({objects(wiring["store"])} | {objects(i["store"]) for i in wiring["inputs"] if i["store"]})
        out += [
            Permission("s3", ("s3:GetObject", "s3:GetObjectVersion"), arn, "S3ReadTheRunsInputArtifacts")
            for arn in readable
        ]
    if wiring["outputs"] or any(i["store"] != wiring["store"] for i in wiring["inputs"]):
        out.append(Permission("s3", ("s3:PutObject",), objects(wiring["store"]), "S3WriteTheRunsArtifacts"))
    found = producers(pipeline)
    writers = [found[name].action for name in action.input_artifacts if isinstance(name, str) and name in found]
    keys = {kms_key_for(pipeline, action)} | {kms_key_for(pipeline, writer) for writer in writers}
    for key in sorted(k for k in keys if k):
        arn = (
            key if key.startswith("arn:") else "arn:aws:kms:{region}:{account}:" + ("" if "/" in key else "key/") + key
        )
        out.append(Permission("kms", ("kms:Decrypt", "kms:GenerateDataKey"), arn, "KmsEncryptAndDecryptTheArtifacts"))
    config = action.configuration if isinstance(action.configuration, dict) else {}
    if action.type == "deploy.codedeploy" and config.get("platform") == "lambda" and action.input_artifacts:
        function = str(config.get("function_name"))
        arn = function if function.startswith("arn:") else regional_arn("lambda", f"function:{function}")
        out.append(Permission("lambda", ("lambda:UpdateFunctionCode",), arn, "LambdaUpdateTheCodeFromTheArtifact"))
    return out


# --- retention: an S3 lifecycle rule per pipeline folder ------------------------------------------------------

RETENTION_RULE_PREFIX = "release-orchestrator:"  # the ids of the rules `artifact-retention` owns


@dataclass(frozen=True)
class StoreFolder:
    bucket: str
    region: str | None
    prefix: str  # the pipeline's folder in the bucket, ending in "/"
    pipeline: str


def store_folders(pipeline: Pipeline) -> list[StoreFolder]:
    """Each store (one per region) of a pipeline, with the pipeline's folder in it."""
    store = pipeline_store(pipeline)
    stores = store if isinstance(store, dict) else {pipeline.region: store} if store else {}
    out = []
    for region, uri in stores.items():
        bucket, _, prefix = str(uri).removeprefix("s3://").rstrip("/").partition("/")
        out.append(StoreFolder(bucket, region, f"{prefix + '/' if prefix else ''}{pipeline.name}/", pipeline.name))
    return out


def retention_rule(folder: StoreFolder, days: int) -> dict[str, Any]:
    """Objects (and old versions) of the pipeline's runs expire `days` after they were written."""
    return {
        "ID": f"{RETENTION_RULE_PREFIX}{folder.pipeline}"[:255],
        "Filter": {"Prefix": folder.prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def apply_retention(client: Any, bucket: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put `rules` into the bucket's lifecycle configuration, keeping every rule of its own that is not one of
    ours for these pipelines (PutBucketLifecycleConfiguration replaces the whole configuration)."""
    try:
        existing = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except client.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        existing = []
    ours = {rule["ID"] for rule in rules}
    merged = [rule for rule in existing if rule.get("ID") not in ours] + rules
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": merged})
    return merged
