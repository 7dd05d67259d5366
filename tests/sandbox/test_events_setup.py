"""`python -m release_orchestrator events-setup` against the sandbox: the plan, then the queue, rules,
targets, queue policy and bucket notifications it routes the specs' source events with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from include.sandbox import resources as r

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
pipeline:
  name: events-setup-test
  triggers:
    - provider: s3
      source_action: Artifact
      queue: {queue}
    - provider: ecr
      repository: {repository}
      image_tag: setup-test
      queue: {queue}
    - provider: codecommit
      repository: setup-test-repo
      branches: [main]
      queue: {queue}
  stages:
    - name: Source
      actions:
        - name: Artifact
          type: source.s3
          configuration:
            bucket: {bucket}
            object_key: setup-test/{queue}.zip
"""


@pytest.fixture
def queue(tmp_path) -> str:
    """A queue of this test's own, named by the only spec in a temporary pipelines directory."""
    name = f"setup-test-{uuid.uuid4().hex[:8]}"
    text = SPEC.format(queue=name, repository=r.ECR_REPOSITORY, bucket=r.ARTIFACT_BUCKET)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "events.yaml").write_text(text)
    return name


@pytest.fixture
def events_setup(sandbox, tmp_path):
    """Runs the command line as an administrator would, on the sandbox; returns its output."""

    def run(*arguments: str) -> str:
        command = [sys.executable, "-m", "release_orchestrator", "events-setup", *arguments]
        command += ["--endpoint-url", sandbox.url, "--region", r.REGION, str(tmp_path / "pipelines")]
        environment = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def rule_names(queue: str) -> list[str]:
    return [f"release-orchestrator-{queue}-{provider}" for provider in ("codecommit", "ecr", "s3")]


def routing(aws, queue: str) -> dict:
    """What the setup made for the queue, as AWS reports it (moto reports no bucket's EventBridge
    notifications: an upload reaching the queue shows them)."""
    sqs, events = aws("sqs"), aws("events")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
    rules = {
        rule["Name"]: (rule["Arn"], json.loads(rule["EventPattern"]), rule["State"])
        for rule in events.list_rules(NamePrefix=f"release-orchestrator-{queue}")["Rules"]
    }
    targets = {name: events.list_targets_by_rule(Rule=name)["Targets"] for name in rules}
    return {
        "url": url,
        "arn": attributes["QueueArn"],
        "policy": json.loads(attributes.get("Policy", "{}")),
        "rules": rules,
        "targets": targets,
    }


def test_dry_run_prints_the_plan_and_creates_nothing(aws, queue, events_setup):
    output = events_setup("--dry-run")
    assert f"[{r.REGION}] queue {queue}" in output
    for name in rule_names(queue):
        assert f"rule {name}: " in output
    assert f'"repository-name": ["{r.ECR_REPOSITORY}"]' in output
    assert aws("events").list_rules(NamePrefix=f"release-orchestrator-{queue}")["Rules"] == []
    assert not [url for url in aws("sqs").list_queues().get("QueueUrls", []) if url.endswith(f"/{queue}")]


def test_apply_routes_the_watched_sources_to_the_queue_and_again_changes_nothing(aws, queue, events_setup, wait_until):
    events_setup()
    made = routing(aws, queue)

    assert sorted(made["rules"]) == rule_names(queue)
    patterns = {name.rsplit("-", 1)[1]: pattern for name, (_, pattern, _) in made["rules"].items()}
    assert patterns["s3"]["detail"] == {
        "bucket": {"name": [r.ARTIFACT_BUCKET]},
        "object": {"key": [f"setup-test/{queue}.zip"]},
    }
    assert patterns["ecr"]["detail"]["repository-name"] == [r.ECR_REPOSITORY]
    assert patterns["codecommit"]["detail"]["repositoryName"] == ["setup-test-repo"]
    assert {state for _, _, state in made["rules"].values()} == {"ENABLED"}
    for targets in made["targets"].values():
        assert [target["Arn"] for target in targets] == [made["arn"]]
    # EventBridge may send to the queue for these rules only.
    assert made["policy"], "no queue policy: EventBridge could not deliver"
    [statement] = made["policy"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert (statement["Action"], statement["Resource"]) == ("sqs:SendMessage", made["arn"])
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        arn for arn, _, _ in made["rules"].values()
    )

    events_setup()
    assert routing(aws, queue) == made
    assert len([url for url in aws("sqs").list_queues()["QueueUrls"] if url.endswith(f"/{queue}")]) == 1

    # The S3 rule and target at work (the sandbox seeded the bucket's EventBridge notifications).
    aws("s3").put_object(Bucket=r.ARTIFACT_BUCKET, Key=f"setup-test/{queue}.zip", Body=b"1")
    received = wait_until(lambda: aws("sqs").receive_message(QueueUrl=made["url"]).get("Messages", []), bool)
    assert json.loads(received[0]["Body"])["detail"]["object"]["key"] == f"setup-test/{queue}.zip"
