"""CodeBuild over real HTTP: builds take time, fail, hang, stop, throttle and report like the real thing."""

from __future__ import annotations

import io
import re
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources as r

PHASES = [
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
]


def finished(codebuild, wait_until, build_id: str) -> dict:
    return wait_until(lambda: codebuild.batch_get_builds(ids=[build_id])["builds"][0], lambda b: b["buildComplete"])


def log_messages(aws, build: dict) -> list[str]:
    events = aws("logs").get_log_events(
        logGroupName=build["logs"]["groupName"], logStreamName=build["logs"]["streamName"], startFromHead=True
    )["events"]
    return [e["message"] for e in events]


def test_build_runs_through_phases_and_exports_variables(aws, wait_until):
    codebuild = aws("codebuild")
    started = codebuild.start_build(
        projectName=r.BUILD_PROJECT,
        sourceVersion="refs/heads/main",
        timeoutInMinutesOverride=20,
        environmentVariablesOverride=[
            {"name": "RELEASE", "value": "r-1", "type": "PLAINTEXT"},
            {"name": "DB_PASSWORD", "value": "/webapp/db", "type": "PARAMETER_STORE"},
            {"name": "COMMIT_ID", "value": "9fceb02d0ae598e95dc970b74767f19372d61af8", "type": "PLAINTEXT"},
        ],
    )["build"]
    assert re.fullmatch(rf"{r.BUILD_PROJECT}:[0-9a-f-]{{36}}", started["id"])
    first_read = codebuild.batch_get_builds(ids=[started["id"]])["builds"][0]
    assert first_read["buildStatus"] == "IN_PROGRESS"  # not done at the first read

    seen_phases = set()
    build = wait_until(
        lambda: codebuild.batch_get_builds(ids=[started["id"]])["builds"][0],
        lambda b: seen_phases.add(b["currentPhase"]) or b["buildComplete"],
    )
    assert {"PROVISIONING", "BUILD"} & seen_phases  # observed while running
    assert build["buildStatus"] == "SUCCEEDED"
    assert [p["phaseType"] for p in build["phases"]] == PHASES
    for phase in build["phases"][:-1]:
        assert phase["phaseStatus"] == "SUCCEEDED"
        assert phase["endTime"] >= phase["startTime"] and "durationInSeconds" in phase
    assert build["endTime"] > build["startTime"]
    assert build["timeoutInMinutes"] == 20
    variables = {v["name"]: v for v in build["environment"]["environmentVariables"]}
    assert variables["RELEASE"]["value"] == "r-1"
    assert variables["DB_PASSWORD"]["type"] == "PARAMETER_STORE"
    assert variables["ECR_REPOSITORY"]["value"] == r.ECR_REPOSITORY  # from the project
    assert build["logs"]["groupName"] == f"/aws/codebuild/{r.BUILD_PROJECT}"
    assert build["logs"]["streamName"] == build["id"].split(":")[1]

    sha = build["resolvedSourceVersion"]
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    # The sample buildspec tags the image with the commit the pipeline passes (COMMIT_ID).
    assert exported["IMAGE_TAG"] == "9fceb02"
    assert exported["IMAGE_URI"] == f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}:9fceb02"
    # The exported key is where the artifact really landed.
    assert aws("s3").head_object(Bucket=r.ARTIFACT_BUCKET, Key=exported["ARTIFACT_KEY"])
    assert build["artifacts"]["location"] == f"arn:aws:s3:::{r.ARTIFACT_BUCKET}/{exported['ARTIFACT_KEY']}"

    messages = log_messages(aws, build)
    assert any("Running command docker push" in m for m in messages)
    assert any("Phase complete: BUILD State: SUCCEEDED" in m for m in messages)


def test_build_numbers_listing_and_lookups(aws, wait_until):
    codebuild = aws("codebuild")
    sha = "0123456789abcdef0123456789abcdef01234567"
    one = codebuild.start_build(projectName=r.BUILD_PROJECT, sourceVersion=sha)["build"]
    two = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]
    assert two["buildNumber"] == one["buildNumber"] + 1
    assert one["resolvedSourceVersion"] == sha
    ids = codebuild.list_builds_for_project(projectName=r.BUILD_PROJECT)["ids"]
    assert ids[:2] == [two["id"], one["id"]]  # newest first
    assert two["id"] in codebuild.list_builds()["ids"]

    answer = codebuild.batch_get_builds(ids=[one["id"], f"{r.BUILD_PROJECT}:00000000-0000-0000-0000-000000000000"])
    assert [b["id"] for b in answer["builds"]] == [one["id"]]
    assert answer["buildsNotFound"] == [f"{r.BUILD_PROJECT}:00000000-0000-0000-0000-000000000000"]
    with pytest.raises(ClientError) as error:
        codebuild.start_build(projectName="no-such-project")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for build in (one, two):
        codebuild.stop_build(id=build["id"])


def test_idempotency_token_returns_the_same_build(aws):
    codebuild = aws("codebuild")
    first = codebuild.start_build(projectName=r.BUILD_PROJECT, idempotencyToken="release-42")["build"]
    again = codebuild.start_build(projectName=r.BUILD_PROJECT, idempotencyToken="release-42")["build"]
    other = codebuild.start_build(projectName=r.BUILD_PROJECT, idempotencyToken="release-43")["build"]
    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    for build in (first, other):
        codebuild.stop_build(id=build["id"])


def test_failing_build_reports_phase_context_and_logs(aws, control, wait_until):
    control.set_fault("codebuild", r.BUILD_PROJECT, "fail")
    codebuild = aws("codebuild")
    build = finished(codebuild, wait_until, codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"])

    assert build["buildStatus"] == "FAILED"
    failed = [p for p in build["phases"] if p.get("phaseStatus") == "FAILED"]
    assert [p["phaseType"] for p in failed] == ["BUILD"]
    context = failed[0]["contexts"][0]
    assert context["statusCode"] == "COMMAND_EXECUTION_ERROR"
    assert context["message"] == "Error while executing command: docker push $IMAGE_URI. Reason: exit status 1"
    assert "POST_BUILD" not in [p["phaseType"] for p in build["phases"]]

    last_lines = "\n".join(log_messages(aws, build)[-3:])
    assert "Command did not exit successfully docker push $IMAGE_URI exit status 1" in last_lines
    assert "Phase complete: BUILD State: FAILED" in last_lines


def test_stop_build(aws, wait_until):
    codebuild = aws("codebuild")
    build_id = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
    wait_until(
        lambda: codebuild.batch_get_builds(ids=[build_id])["builds"][0],
        lambda b: b["currentPhase"] not in ("QUEUED", "SUBMITTED"),
    )
    stopped = codebuild.stop_build(id=build_id)["build"]
    assert stopped["buildStatus"] == "STOPPED"
    assert stopped["buildComplete"] is True
    assert [p for p in stopped["phases"] if p.get("phaseStatus") == "STOPPED"]
    assert codebuild.batch_get_builds(ids=[build_id])["builds"][0]["buildStatus"] == "STOPPED"


def test_hanging_build_stays_in_progress_until_stopped(aws, control, wait_until, build_seconds):
    control.set_fault("codebuild", r.BUILD_PROJECT, "hang")
    codebuild = aws("codebuild")
    build_id = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
    wait_until(lambda: codebuild.batch_get_builds(ids=[build_id])["builds"][0], lambda b: b["currentPhase"] == "BUILD")
    time.sleep(build_seconds)  # the behaviour under test: a whole build's time later it is still running
    build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
    assert (build["buildStatus"], build["currentPhase"]) == ("IN_PROGRESS", "BUILD")
    assert codebuild.stop_build(id=build_id)["build"]["buildStatus"] == "STOPPED"


def test_hanging_build_times_out_after_the_faults_timeout_seconds(aws, control, wait_until):
    control.set_fault("codebuild", r.BUILD_PROJECT, "hang", timeout_seconds=2)
    codebuild = aws("codebuild")
    build_id = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
    build = finished(codebuild, wait_until, build_id)
    assert build["buildStatus"] == "TIMED_OUT"
    assert (build["endTime"] - build["startTime"]).total_seconds() == pytest.approx(2, abs=0.5)
    [phase] = [p for p in build["phases"] if p["phaseType"] == "BUILD"]
    assert phase["phaseStatus"] == "TIMED_OUT"
    with pytest.raises(Exception, match="timeout_seconds must be a number"):
        control.set_fault("codebuild", r.BUILD_PROJECT, "hang", timeout_seconds=0)


def test_slow_build_takes_its_own_time(aws, control, wait_until, build_seconds):
    control.set_fault("codebuild", r.BUILD_PROJECT, "slow", seconds=build_seconds * 3)
    codebuild = aws("codebuild")
    build_id = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
    time.sleep(build_seconds * 1.5)  # the behaviour under test: a normal build would be over by now
    assert codebuild.batch_get_builds(ids=[build_id])["builds"][0]["buildStatus"] == "IN_PROGRESS"
    build = finished(codebuild, wait_until, build_id)
    assert build["buildStatus"] == "SUCCEEDED"
    assert (build["endTime"] - build["startTime"]).total_seconds() == pytest.approx(build_seconds * 3, abs=0.5)
    # Only builds started while the fault is set are slow.
    control.clear_fault("codebuild", r.BUILD_PROJECT)
    quick = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
    assert finished(codebuild, wait_until, quick)["buildStatus"] == "SUCCEEDED"
    with pytest.raises(Exception, match="seconds must be a number"):
        control.set_fault("codebuild", r.BUILD_PROJECT, "slow", seconds=0)


def test_a_counted_fault_fails_that_many_builds_then_goes_away(aws, control, wait_until):
    control.set_fault("codebuild", r.BUILD_PROJECT, "fail", times=2)
    codebuild = aws("codebuild")
    started = [codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"] for _ in range(3)]
    assert [finished(codebuild, wait_until, b)["buildStatus"] for b in started] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert r.BUILD_PROJECT not in control.faults()["codebuild"]


def test_throttled_project_refuses_some_calls(aws, control):
    control.set_fault("codebuild", r.BUILD_PROJECT, "throttle", rate=0.5)
    codebuild = aws("codebuild", retry=False)
    outcomes = []
    for _ in range(6):
        try:
            codebuild.batch_get_projects(names=[r.BUILD_PROJECT])
            outcomes.append("ok")
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ThrottlingException"
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            outcomes.append("throttled")
    assert outcomes == ["ok", "throttled"] * 3
    # Other projects are not affected.
    for _ in range(3):
        codebuild.batch_get_projects(names=[r.TEST_PROJECT])


def test_fail_tests_uploads_junit_report_with_failures(aws, control, wait_until):
    codebuild, s3 = aws("codebuild"), aws("s3")
    passing = codebuild.start_build(projectName=r.TEST_PROJECT)["build"]["id"]
    control.set_fault("codebuild", r.TEST_PROJECT, "fail-tests")  # only builds started from now on
    failing = codebuild.start_build(projectName=r.TEST_PROJECT)["build"]["id"]

    def report(build: dict) -> str:
        key = f"{r.TEST_PROJECT}/{build['id'].split(':')[1]}/junit.xml"
        return s3.get_object(Bucket=r.ARTIFACT_BUCKET, Key=key)["Body"].read().decode()

    good = finished(codebuild, wait_until, passing)
    assert good["buildStatus"] == "SUCCEEDED"
    assert 'tests="12" failures="0"' in report(good)

    bad = finished(codebuild, wait_until, failing)
    assert bad["buildStatus"] == "FAILED"
    failed_phase = next(p for p in bad["phases"] if p.get("phaseStatus") == "FAILED")
    assert failed_phase["phaseType"] == "BUILD"
    assert "pytest tests/integration" in failed_phase["contexts"][0]["message"]
    assert bad["reportArns"] and bad["reportArns"][0].startswith(f"arn:aws:codebuild:{r.REGION}:{r.ACCOUNT_ID}:report/")
    cases = codebuild.describe_test_cases(reportArn=bad["reportArns"][0], filter={"status": "FAILED"})["testCases"]
    assert sorted(c["name"] for c in cases) == ["test_checkout_applies_discount", "test_order_confirmation_email"]
    summary = codebuild.batch_get_reports(reportArns=bad["reportArns"])["reports"][0]["testSummary"]
    assert summary["total"] == 12 and summary["statusCounts"]["FAILED"] == 2
    xml = report(bad)
    assert 'tests="12" failures="2"' in xml
    assert xml.count("<failure") == 2
    assert 'name="test_checkout_applies_discount"' in xml and 'name="test_order_confirmation_email"' in xml


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def test_zip_sources_from_s3_become_the_builds_files_and_its_artifacts(aws, wait_until):
    """As a pipeline's input artifacts: the primary source, a secondary one, and two output artifacts."""
    s3, codebuild = aws("s3"), aws("codebuild")
    app = {"appspec.yml": "version: 0.0\n", "scripts/start.sh": "echo", "web/app.py": "print()"}
    version = s3.put_object(Bucket=r.ARTIFACT_BUCKET, Key="cb-tests/src.zip", Body=zipped(app))["VersionId"]
    s3.put_object(Bucket=r.ARTIFACT_BUCKET, Key="cb-tests/config.zip", Body=zipped({"prod.json": "{}"}))
    buildspec = (
        "version: 0.2\nphases:\n  build:\n    commands: ['true']\nartifacts:\n  files: [appspec.yml, 'scripts/**/*']\n"
        "  secondary-artifacts:\n    Config:\n      files: ['Settings/*']\n"
    )
    started = codebuild.start_build(
        projectName=r.BUILD_PROJECT,
        buildspecOverride=buildspec,
        sourceTypeOverride="S3",
        sourceLocationOverride=f"{r.ARTIFACT_BUCKET}/cb-tests/src.zip",
        secondarySourcesOverride=[
            {"type": "S3", "location": f"{r.ARTIFACT_BUCKET}/cb-tests/config.zip", "sourceIdentifier": "Settings"}
        ],
        artifactsOverride={
            "type": "S3",
            "location": r.ARTIFACT_BUCKET,
            "path": "cb-tests/out",
            "name": "Bundle.zip",
            "namespaceType": "NONE",
            "packaging": "ZIP",
        },
        secondaryArtifactsOverride=[
            {
                "type": "S3",
                "location": r.ARTIFACT_BUCKET,
                "path": "cb-tests/out",
                "name": "Config.zip",
                "namespaceType": "NONE",
                "packaging": "ZIP",
                "artifactIdentifier": "Config",
            }
        ],
    )["build"]
    build = finished(codebuild, wait_until, started["id"])
    assert build["buildStatus"] == "SUCCEEDED" and build["resolvedSourceVersion"] == version
    assert build["secondarySources"][0]["sourceIdentifier"] == "Settings"

    def contents(key: str) -> set[str]:
        body = s3.get_object(Bucket=r.ARTIFACT_BUCKET, Key=key)["Body"].read()
        return set(zipfile.ZipFile(io.BytesIO(body)).namelist())

    assert contents("cb-tests/out/Bundle.zip") == {"appspec.yml", "scripts/start.sh", "build-info.json"}
    assert contents("cb-tests/out/Config.zip") == {"Settings/prod.json", "build-info.json"}
    # A source that is not there fails StartBuild, naming it.
    with pytest.raises(ClientError, match="cb-tests/missing.zip"):
        codebuild.start_build(
            projectName=r.BUILD_PROJECT,
            sourceTypeOverride="S3",
            sourceLocationOverride=f"{r.ARTIFACT_BUCKET}/cb-tests/missing.zip",
        )
