"""The Python API builds the same model as YAML, validated the same way."""

from pathlib import Path

import pytest

from release_orchestrator.pipeline.api import action, notifications, pipeline, stage, variable
from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.loader import load_spec

WEBAPP = Path(__file__).parent / "fixtures" / "specs" / "webapp.yaml"


def webapp():
    return pipeline(
        "webapp",
        source_file=str(WEBAPP),  # files it names (ecs/taskdef.json) are beside the YAML spec
        description="Build, test and release the web app",
        schedule="0 6 * * 1-5",
        region="us-east-1",
        artifact_store="s3://release-artifacts/webapp",
        tags=["webapp", "production"],
        variables=[variable("DeployEnv", "staging", "environment to deploy to")],
        notifications=notifications(
            "arn:aws:sns:us-east-1:123456789012:release-notifications", ["pipeline-failed", "approval-needed"]
        ),
        stages=[
            stage(
                "Source",
                [
                    action(
                        "Checkout",
                        "source.github",
                        namespace="Source",
                        output_artifacts=["SourceArtifact"],
                        repository="acme/webapp",
                        branch="main",
                    ),
                    action("Config", "source.s3", namespace="Config", bucket="webapp-config", object_key="config.zip"),
                    action("Image", "source.ecr", namespace="Image", repository="webapp"),
                    action("Infra", "source.codecommit", repository="webapp-infra", branch="main"),
                ],
            ),
            stage(
                "Build",
                [
                    action(
                        "Compile",
                        "build.codebuild",
                        namespace="Build",
                        input_artifacts=["SourceArtifact"],
                        output_artifacts=["BuildArtifact"],
                        project_name="webapp-build",
                        environment_variables={
                            "ENV": "#{variables.DeployEnv}",
                            "CONFIG_VERSION": "#{Config.VersionId}",
                        },
                    ),
                    action(
                        "IntegrationTests",
                        "test.codebuild",
                        run_order=2,
                        timeout_minutes=60,
                        project_name="webapp-integration-tests",
                        junit_path="reports/junit.xml",
                        environment_variables=[
                            {"name": "ARTIFACT", "value": "#{Build.ARTIFACT_KEY}"},
                            {"name": "API_TOKEN", "value": "/webapp/api-token", "type": "SECRETS_MANAGER"},
                        ],
                    ),
                ],
            ),
            stage(
                "Staging",
                [
                    action(
                        "DeployServers",
                        "deploy.codedeploy",
                        namespace="Staging",
                        application_name="webapp-ec2",
                        deployment_group_name="staging",
                        revision_s3_bucket="release-artifacts",
                        revision_s3_key="webapp/#{codepipeline.PipelineExecutionId}/bundle.zip",
                    ),
                    action(
                        "Approve",
                        "approval.manual",
                        run_order=2,
                        custom_data="Staging deployment #{Staging.DeploymentId} done; promote?",
                        timeout="1d12h",
                        approvers=["alice", "bob"],
                    ),
                ],
            ),
            stage(
                "Production",
                [
                    action(
                        "DeployContainers",
                        "deploy.codedeploy",
                        application_name="webapp-ecs",
                        deployment_group_name="production",
                        platform="ecs",
                        task_definition_template="ecs/taskdef.json",
                        container_name="web",
                        container_port=8080,
                        image="#{Image.ImageURI}",
                        hooks={"AfterAllowTestTraffic": "webapp-smoke-test"},
                    ),
                    action(
                        "DeployFunction",
                        "deploy.codedeploy",
                        region="eu-west-1",
                        aws_conn_id="aws_eu",
                        application_name="webapp-lambda",
                        deployment_group_name="production",
                        platform="lambda",
                        function_name="webapp-api",
                        alias="live",
                        publish_version=True,
                    ),
                ],
            ),
        ],
    )


def test_python_api_and_yaml_give_equal_models():
    assert webapp() == load_spec(WEBAPP)


def test_invalid_pipeline_raises_listing_every_problem():
    with pytest.raises(SpecError) as e:
        pipeline("web app", stages=[stage("Build", [action("Compile", "build.codebuild", projectName="x")])])
    fields = [err.field for err in e.value.errors]
    assert fields == ["name", "configuration.project_name", "configuration.projectName"]
    assert str(e.value).splitlines()[2] == (
        "pipeline 'web app': stage 'Build', action 'Compile', field 'configuration.projectName': unknown key "
        "(did you mean 'project_name'?); allowed keys: project_name, source_version, environment_variables, "
        "buildspec, build_timeout_minutes, primary_source"
    )


def test_unknown_pipeline_field():
    with pytest.raises(SpecError, match=r"unknown field 'executionMode' \(did you mean 'execution_mode'\?\)"):
        pipeline("webapp", stages=[], executionMode="QUEUED")


def test_configuration_mapping_and_plain_variable_names():
    p = pipeline(
        "webapp",
        variables=["Env"],
        notifications={"topic_arn": "arn:aws:sns:us-east-1:1:t"},
        stages=[
            stage(
                "Build",
                [
                    action(
                        "Compile",
                        "build.codebuild",
                        configuration={"project_name": "b"},
                        source_version="#{variables.Env}",
                    )
                ],
            )
        ],
    )
    assert p.stages[0].actions[0].configuration == {"project_name": "b", "source_version": "#{variables.Env}"}
    assert p.variables[0].name == "Env" and p.notifications.events == []
