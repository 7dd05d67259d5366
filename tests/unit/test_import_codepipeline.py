"""Importing CodePipeline definitions: the spec written for each fixture loads, validates and keeps the meaning."""

import json
from pathlib import Path

import pytest

from release_orchestrator.pipeline.importer import (
    PLACEHOLDER,
    ImportInputError,
    import_codepipeline,
    read_codepipeline_json,
)
from release_orchestrator.pipeline.loader import load_spec_text

FIXTURES = Path(__file__).parent / "fixtures" / "codepipeline"


def imported(name):
    path = FIXTURES / name
    result = import_codepipeline(read_codepipeline_json(path), source=str(path))
    return result, load_spec_text(result.yaml, source=str(path))


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_imports_to_a_valid_spec(name):
    result, pipeline = imported(name)
    assert result.errors == []
    assert {"pipeline": result.spec["pipeline"]} == result.spec and pipeline.name == result.name


def test_v1_with_outer_wrapper():
    result, p = imported("v1-wrapped.json")
    assert result.complete and result.unmapped == []
    assert (p.name, p.execution_mode, p.region) == ("legacy-webapp", "SUPERSEDED", "us-east-1")
    assert p.artifact_store == "s3://codepipeline-us-east-1-111111111111"
    (source,) = p.stages[0].actions
    assert (source.type, source.namespace, source.configuration) == (
        "source.codecommit",
        "SourceVariables",
        {"repository": "legacy-webapp", "branch": "main"},
    )
    (build,) = p.stages[1].actions
    assert build.configuration["environment_variables"] == [
        {"name": "COMMIT_ID", "value": "#{SourceVariables.CommitId}", "type": "PLAINTEXT"},
        {"name": "DB_PASSWORD", "value": "/legacy/db-password", "type": "PARAMETER_STORE"},
    ]
    (approve,) = p.stages[2].actions
    assert approve.configuration["custom_data"] == (
        "Release commit #{SourceVariables.CommitId} built by #{BuildVariables.BUILD_TAG}"
    )
    (deploy,) = p.stages[3].actions
    assert deploy.configuration["platform"] == "server"
    # The deployment takes its revision from the build's artifact, as in CodePipeline: no placeholder.
    assert deploy.input_artifacts == ["BuildArtifact"] and "revision_s3_key" not in deploy.configuration
    # roles become Airflow connections named after them
    assert deploy.aws_conn_id == "aws_productiondeployrole"
    assert result.connections["aws_productiondeployrole"] == "arn:aws:iam::222222222222:role/ProductionDeployRole"
    assert p.aws_conn_id in result.connections
    assert "airflow connections add aws_productiondeployrole --conn-type aws" in result.yaml
    assert not any("placeholder" in n and "revision" in n for n in result.notes)


def test_v2_variables_triggers_and_parallel_mode():
    result, p = imported("v2-variables-triggers.json")
    assert result.complete
    assert p.execution_mode == "PARALLEL"
    assert [(v.name, v.default, v.description) for v in p.variables] == [
        ("DeployEnv", "staging", "environment to deploy to"),
        ("ReleaseNote", None, ""),
    ]
    assert p.triggers == [
        {
            "source_action": "Checkout",
            "push": [
                {
                    "branches": {"includes": ["main", "release/*"], "excludes": ["release/old-*"]},
                    "file_paths": {"includes": ["src/**"], "excludes": ["docs/**"]},
                },
                {"tags": {"includes": ["v*"]}},
            ],
            "pull_request": [{"events": ["OPEN", "UPDATED"], "branches": {"includes": ["main"]}}],
        },
        # The S3 source polls for changes (PollForSourceChanges: true): a change event starts a run.
        {"provider": "s3", "source_action": "Config"},
    ]
    # Pull-request webhooks list no changed files: the path filter is left out, and said so.
    assert any("file path filter of pull request filter 0 was left out" in n for n in result.notes)
    checkout, config = p.stages[0].actions
    # DetectChanges, the connection and the artifact format have no key here: the trigger above starts runs.
    assert checkout.configuration == {"repository": "acme/webapp", "branch": "main"}
    assert any(
        n.endswith(
            "ConnectionArn left out: pushes reach the pipeline at the webhook endpoint "
            "(add the repository's webhook and secret, docs/triggers.md)"
        )
        for n in result.notes
    )
    assert config.type == "source.s3" and config.configuration == {
        "bucket": "webapp-config",
        "object_key": "config.zip",
    }
    compile_, tests = p.stages[1].actions
    # The primary input is the build's source; the other a secondary source.
    assert compile_.input_artifacts == ["SourceArtifact", "ConfigArtifact"]
    assert compile_.configuration["primary_source"] == "SourceArtifact"
    assert compile_.configuration["environment_variables"] == {
        "COMMIT": "#{SourceVariables.CommitId}",
        "CONFIG_VERSION": "#{ConfigVariables.VersionId}",
    }
    assert (tests.type, tests.run_order) == ("test.codebuild", 2)
    assert not any("BatchEnabled" in n for n in result.notes)  # "false" is the default, nothing lost


def test_ecs_blue_green():
    result, p = imported("ecs-blue-green.json")
    assert result.complete and p.execution_mode == "QUEUED"
    image_source = p.stages[0].actions[0]
    assert image_source.type == "source.ecr" and image_source.namespace == "Image"  # given one for the image
    (deploy,) = p.stages[1].actions
    assert deploy.configuration["platform"] == "ecs"
    assert deploy.configuration["image"] == "#{Image.ImageURI}"
    # The task definition and AppSpec are files of the CodeCommit source's artifact, read as CodePipeline does.
    assert deploy.configuration["task_definition_template"] == "ManifestArtifact::ecs/taskdef.json"
    assert deploy.configuration["appspec_template"] == "ManifestArtifact::ecs/appspec.yaml"
    assert "container_name" not in deploy.configuration and PLACEHOLDER not in result.yaml


def test_step_functions_and_elastic_beanstalk():
    result, p = imported("stepfunctions-beanstalk.json")
    assert result.complete and result.errors == []
    (beanstalk,) = p.stages[1].actions
    # It deploys the CodeCommit source's artifact, as on CodePipeline.
    assert (beanstalk.type, beanstalk.input_artifacts, beanstalk.configuration) == (
        "deploy.elasticbeanstalk",
        ["SourceArtifact"],
        {"application_name": "webapp-eb", "environment_name": "webapp-eb-production"},
    )
    smoke, load = p.stages[2].actions
    assert (smoke.type, smoke.namespace, smoke.configuration) == (
        "invoke.stepfunctions",
        "Smoke",
        {
            "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:release-smoke-tests",
            "execution_name_prefix": "webapp",
            "input": {"commit": "#{SourceVariables.CommitId}", "checks": 3},
        },
    )
    assert load.configuration["input"] == "SourceArtifact::tests/load-input.json"  # read from the source's files
    assert not any("which no imported action writes" in n for n in result.notes)
    assert any("output variables" in n for n in result.notes)  # LoadReport is not written
    assert not any("has no equivalent" in n for n in result.notes)  # every CodePipeline key was mapped


@pytest.mark.parametrize("literal", ["not json", "42", '"text"', 7])
def test_step_functions_input_that_is_not_a_json_object_or_array_is_left_out_with_a_note(literal):
    definition = json.loads((FIXTURES / "stepfunctions-beanstalk.json").read_text())
    smoke = definition["pipeline"]["stages"][2]["actions"][0]
    smoke["configuration"]["Input"] = literal
    result = import_codepipeline(definition, source="inline.json")
    assert result.errors == []
    smoke = result.spec["pipeline"]["stages"][2]["actions"][0]
    assert "input" not in smoke["configuration"]
    assert any("Input is not a JSON object or array" in n for n in result.notes)


def test_cloudformation_actions_import_with_every_key_mapped_or_noted():
    result, p = imported("cloudformation.json")
    assert result.complete and result.unmapped == [] and result.errors == []
    staging = p.stages[1].actions[0]
    assert (staging.type, staging.namespace) == ("deploy.cloudformation", "StagingStack")
    assert staging.configuration == {
        "action_mode": "CREATE_UPDATE",
        "stack_name": "webapp-staging",
        "role_arn": "arn:aws:iam::123456789012:role/cfn-deploy",
        "template": "SourceArtifact::infra/webapp.yaml",
        "template_configuration": "SourceArtifact::infra/staging.json",
        "parameter_overrides": {"ImageTag": "#{variables.image_tag}", "BucketName": PLACEHOLDER},
        "capabilities": ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    }
    create, execute, delete = p.stages[2].actions
    assert (create.configuration["action_mode"], create.configuration["change_set_name"]) == (
        "CHANGE_SET_REPLACE",
        "webapp-changes",
    )
    assert execute.configuration == {
        "action_mode": "CHANGE_SET_EXECUTE",
        "stack_name": "webapp-production",
        "change_set_name": "webapp-changes",
    }
    assert delete.configuration["action_mode"] == "DELETE_ONLY"
    notes = "\n".join(result.notes) + result.yaml
    assert "put that file next to this spec" not in notes  # the templates are read from the source's artifact
    assert "OutputFileName outputs.json left out" in notes
    assert "TemplatePath left out: not used by ActionMode CHANGE_SET_EXECUTE" in notes
    assert "parameter_overrides.BucketName is a placeholder" in notes
    assert "has no equivalent" not in notes  # every CodePipeline key was mapped or named


def test_ecs_rolling_and_commands():
    result, p = imported("ecs-rolling-commands.json")
    assert result.complete and result.errors == []
    (commands,) = p.stages[1].actions
    assert commands.type == "compute.commands" and commands.namespace == "Migrate"
    assert commands.configuration == {
        "commands": ["./manage.py migrate", "export SCHEMA_VERSION=42"],
        "output_variables": ["SCHEMA_VERSION"],
        "project_name": PLACEHOLDER,
        "environment_variables": {"STAGE": "prod"},
    }
    assert any("project_name is a placeholder" in n for n in result.notes)
    assert any("ComputeType='BUILD_GENERAL1_MEDIUM' was left out" in n for n in result.notes)
    worker, scheduler = p.stages[2].actions
    # From an ECR source: its image, in CodePipeline's imagedefinitions.json shape; the container is to be named.
    assert worker.type == "deploy.ecs" and p.stages[0].actions[0].namespace == "Image"
    assert worker.configuration == {
        "cluster_name": "webapp",
        "service_name": "webapp-worker",
        "image_definitions": [{"name": PLACEHOLDER, "imageUri": "#{Image.ImageURI}"}],
        "deployment_timeout": 30,
    }
    # From another action's artifact: the file CodePipeline read, to be put next to the spec.
    assert scheduler.configuration["image_definitions"] == "scheduler.json"
    assert any("CodePipeline read scheduler.json from artifact 'Definitions'" in n for n in result.notes)


def test_unsupported_providers_are_listed_and_kept_as_comments():
    result, p = imported("unsupported.json")
    assert not result.complete and result.errors == []
    assert [(u.stage, u.action, u.provider) for u in result.unmapped] == [
        ("Build", "JenkinsBuild", "Build/Custom/Jenkins v1"),
        ("Infrastructure", "DeployStackSet", "Deploy/AWS/CloudFormationStackSet v1"),
        ("Infrastructure", "DeployInstances", "Deploy/AWS/CloudFormationStackInstances v1"),
    ]
    assert all(u.reason for u in result.unmapped)
    assert [s.name for s in p.stages] == ["Source", "Build"]  # a stage with nothing left is left out
    assert [a.name for a in p.stages[1].actions] == ["Lint"]
    assert "#     StackSetName: infra" in result.yaml and "# NOT IMPORTED: stage 'Infrastructure'" in result.yaml
    (source,) = p.stages[0].actions
    assert source.configuration == {"repository": "acme/infra", "branch": "main"}
    # PollForSourceChanges (GitHub version 1's default: true) became a push trigger on the branch.
    assert p.triggers == [{"source_action": source.name, "push": [{"branches": {"includes": ["main"]}}]}]
    assert any("OAuth token" in n for n in result.notes)


def test_leftover_configuration_is_reported_not_dropped_silently():
    definition = json.loads((FIXTURES / "v2-variables-triggers.json").read_text())
    definition["stages"][1]["actions"][0]["configuration"]["BatchEnabled"] = "true"
    result = import_codepipeline(definition)
    assert any("BatchEnabled='true' has no equivalent" in n for n in result.notes)


def test_reference_to_a_dropped_action_makes_the_result_incomplete():
    definition = json.loads((FIXTURES / "unsupported.json").read_text())
    jenkins = definition["pipeline"]["stages"][1]["actions"][0]
    jenkins["namespace"] = "Jenkins"
    definition["pipeline"]["stages"][1]["actions"][1]["runOrder"] = 2
    definition["pipeline"]["stages"][1]["actions"][1]["configuration"]["PrimarySource"] = "#{Jenkins.Build}"
    result = import_codepipeline(definition)
    assert [e.field for e in result.errors] == ["configuration.primary_source"]
    assert not result.complete


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        ('{"name": "x"}', "not a CodePipeline definition"),
        ("[1, 2]", "not a CodePipeline definition"),
    ],
)
def test_unreadable_input_names_the_file(tmp_path, content, message):
    path = tmp_path / "pipeline.json"
    path.write_text(content)
    with pytest.raises(ImportInputError, match=message) as e:
        read_codepipeline_json(path)
    assert str(path) in str(e.value)


def test_stage_rules_and_action_timeouts_are_carried_or_listed_never_dropped():
    definition = json.loads((FIXTURES / "v2-variables-triggers.json").read_text())
    source, build = definition["stages"][0], definition["stages"][1]
    build["actions"][0]["timeoutInMinutes"] = 45
    build["actions"][0]["someFutureField"] = "x"
    source["onFailure"] = {"result": "FAIL"}  # what a failed stage does here: carried, nothing to write
    build["beforeEntry"] = {"conditions": [{"result": "FAIL", "rules": [{"name": "Window"}]}]}
    build["onFailure"] = {"result": "ROLLBACK"}
    definition["stages"][2]["onFailure"] = {"result": "RETRY", "retryConfiguration": {"retryMode": "ALL_ACTIONS"}}
    result = import_codepipeline(definition)
    pipeline = load_spec_text(result.yaml)
    assert pipeline.stages[1].actions[0].timeout_minutes == 45
    assert pipeline.stages[1].on_failure == {"result": "ROLLBACK"}
    assert [(n.stage, n.rule) for n in result.not_carried] == [
        (build["name"], "beforeEntry"),
        (definition["stages"][2]["name"], "onFailure"),
    ]
    assert not result.complete and result.errors == []  # exit 3: the spec is written, something was left out
    assert '#   onFailure: {"result":"RETRY",' in result.yaml and "# NOT CARRIED: beforeEntry" in result.yaml
    # The first stage has nothing before it to reuse: its ROLLBACK is listed, not carried.
    source["onFailure"] = {"result": "ROLLBACK"}
    assert ("Source", "onFailure") in [(n.stage, n.rule) for n in import_codepipeline(definition).not_carried]
    assert any("someFutureField='x' has no equivalent" in n for n in result.notes)


def test_entry_conditions_are_carried_rule_by_rule():
    definition = json.loads((FIXTURES / "v2-variables-triggers.json").read_text())
    build = definition["stages"][1]

    def rule(name: str, provider: str, configuration: dict) -> dict:
        type_id = {"category": "Rule", "owner": "AWS", "provider": provider, "version": "1"}
        return {"name": name, "ruleTypeId": type_id, "configuration": configuration}

    build["beforeEntry"] = {
        "conditions": [
            {
                "result": "FAIL",
                "rules": [
                    rule("Hours", "DeploymentWindow", {"Cron": "* * 9-16 ? * MON-FRI", "TimeZone": "Europe/Berlin"}),
                    rule(
                        "Healthy",
                        "CloudWatchAlarm",
                        {"AlarmName": "webapp-5xx", "AlarmStates": "ALARM, INSUFFICIENT_DATA", "WaitTime": "5"},
                    ),
                ],
            }
        ]
    }
    result = import_codepipeline(definition)
    assert result.errors == [] and result.not_carried == []
    stage = load_spec_text(result.yaml).stages[1]
    assert stage.before_entry == {
        "rules": [
            {
                "name": "Hours",
                "type": "DeploymentWindow",
                "configuration": {"cron": "* * 9-16 ? * MON-FRI", "time_zone": "Europe/Berlin"},
            },
            {
                "name": "Healthy",
                "type": "CloudWatchAlarm",
                "configuration": {"alarm_name": "webapp-5xx", "alarm_states": ["ALARM", "INSUFFICIENT_DATA"]},
            },
        ]
    }
    # A rule type with no equivalent leaves the condition out, saying which.
    build["beforeEntry"]["conditions"][0]["rules"].append(rule("Custom", "Commands", {}))
    result = import_codepipeline(definition)
    assert [(n.rule, n.reason) for n in result.not_carried] == [
        (
            "beforeEntry",
            "rule 'Custom': rule type Commands has no equivalent; the stage starts as soon as the previous one succeeds",
        )
    ]


def test_success_conditions_and_a_retry_of_failed_actions_are_carried():
    definition = json.loads((FIXTURES / "v2-variables-triggers.json").read_text())
    build = definition["stages"][1]
    alarm = {"category": "Rule", "owner": "AWS", "provider": "CloudWatchAlarm", "version": "1"}
    build["onSuccess"] = {
        "conditions": [
            {
                "result": "ROLLBACK",
                "rules": [
                    {
                        "name": "No5xx",
                        "ruleTypeId": alarm,
                        "configuration": {"AlarmName": "webapp-5xx", "WaitTime": "15"},
                    }
                ],
            }
        ]
    }
    build["onFailure"] = {"result": "RETRY", "retryConfiguration": {"retryMode": "FAILED_ACTIONS"}}
    result = import_codepipeline(definition)
    assert result.errors == [] and result.not_carried == []
    stage = load_spec_text(result.yaml).stages[1]
    assert stage.on_success == {
        "result": "ROLLBACK",
        "rules": [
            {"name": "No5xx", "type": "CloudWatchAlarm", "configuration": {"alarm_name": "webapp-5xx", "wait_time": 15}}
        ],
    }
    assert stage.on_failure == {"result": "RETRY", "retry_mode": "FAILED_ACTIONS", "max_attempts": 1}
    # A window is no success condition: the condition is listed, not carried.
    window = {**alarm, "provider": "DeploymentWindow"}
    build["onSuccess"]["conditions"][0]["rules"].append({"name": "Hours", "ruleTypeId": window, "configuration": {}})
    assert [(n.rule, n.reason) for n in import_codepipeline(definition).not_carried] == [
        (
            "onSuccess",
            "rule 'Hours': rule type DeploymentWindow has no equivalent; the stage succeeds when its actions do",
        )
    ]


def test_a_stage_rule_of_the_wrong_shape_is_refused_naming_where():
    definition = json.loads((FIXTURES / "v2-variables-triggers.json").read_text())
    definition["stages"][1]["onFailure"] = "ROLLBACK"
    with pytest.raises(ImportInputError, match=r"stages\[1\]\.onFailure"):
        import_codepipeline(definition)


def test_s3_deploy_and_lambda_invoke():
    result, p = imported("static-site-lambda.json")
    assert result.complete and result.errors == []
    website, archive, smoke = p.stages[2].actions
    # The build's artifact is what is deployed: no source to fill in.
    assert website.type == "deploy.s3" and website.input_artifacts == ["SiteArtifact"]
    assert website.configuration == {
        "bucket_name": "static-site-www",
        "extract": True,
        "object_key": "releases/#{BuildVariables.RELEASE}",
        "kms_encryption_key_arn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "canned_acl": "bucket-owner-full-control",
        "cache_control": "max-age=300",
    }
    assert archive.configuration["extract"] is False and archive.configuration["object_key"] == "site.zip"
    assert not any("set source" in n for n in result.notes)
    assert smoke.type == "invoke.lambda" and smoke.namespace == "Smoke" and smoke.run_order == 2
    assert smoke.configuration == {
        "function_name": "site-smoke-test:live",
        "user_parameters": '{"url": "https://www.example.com"}',
    }
    assert any("instead of calling PutJobSuccessResult" in n for n in result.notes)
    assert not any("has no equivalent" in n for n in result.notes)  # every key was mapped


def test_a_typical_pipeline_passes_its_artifacts_with_no_placeholder_for_them():
    """Source (GitHub) -> CodeBuild -> CodeDeploy to EC2 and ECS: the artifacts carry the release."""
    result, p = imported("github-build-ecs-ec2.json")
    assert result.errors == [] and p.artifact_store == "s3://codepipeline-us-east-1-123456789012"
    assert p.artifact_kms_key == "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    (source,), (build,), (ec2, ecs) = (stage.actions for stage in p.stages)
    assert source.output_artifacts == ["SourceArtifact"]
    assert (build.input_artifacts, build.output_artifacts) == (["SourceArtifact"], ["BuildArtifact"])
    assert ec2.input_artifacts == ["BuildArtifact"] and not {"revision_s3_bucket", "revision_s3_key"} & set(
        ec2.configuration
    )
    assert ecs.input_artifacts == ["BuildArtifact"]
    assert ecs.configuration["task_definition_template"] == "BuildArtifact::taskdef.json"
    assert ecs.configuration["image"] == "BuildArtifact::imageDetail.json"
    assert ecs.configuration["appspec_template"] == "BuildArtifact::appspec.yaml"
    assert "container_name" not in ecs.configuration  # the AppSpec template names the container and port
    assert not [n for n in result.notes if PLACEHOLDER in n or "placeholder" in n]
    assert PLACEHOLDER not in result.yaml


def test_a_deployment_whose_artifact_no_imported_action_writes_names_its_bundle_by_hand():
    definition = json.loads((FIXTURES / "github-build-ecs-ec2.json").read_text())["pipeline"]
    # A Jenkins build (a custom action, not imported) wrote the bundle the EC2 deployment reads.
    definition["stages"][1]["actions"][0]["actionTypeId"] = {
        "category": "Build",
        "owner": "Custom",
        "provider": "Jenkins",
        "version": "1",
    }
    definition["stages"][1]["actions"][0]["configuration"] = {"ProjectName": "webapp"}
    definition["stages"][2]["actions"] = definition["stages"][2]["actions"][:1]
    result = import_codepipeline(definition, source="inline.json")
    assert result.errors == []
    ec2 = load_spec_text(result.yaml).stages[1].actions[0]
    assert ec2.input_artifacts == [] and ec2.configuration["revision_s3_key"] == f"{PLACEHOLDER}.zip"
    assert any("the revision was artifact 'BuildArtifact', which no imported action writes" in n for n in result.notes)
