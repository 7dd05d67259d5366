"""In the real dag-processor: a bad spec is one import error naming it; every other pipeline loads."""

from __future__ import annotations

import pytest

from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def import_error_naming(api, spec_file: str) -> dict:
    def error():
        errors = api.request("GET", "/importErrors")["import_errors"]
        return next((e for e in errors if spec_file in e["stack_trace"]), None)

    return wait_for(error, timeout=120, what=f"the import error of {spec_file}")


def test_bad_spec_is_an_import_error_and_the_others_load(api):
    api.wait_for_dag("webapp-release", timeout=180)

    error = import_error_naming(api, "zz-broken-spec.yaml")
    assert error["filename"].endswith("release_pipeline_errors.py")
    trace = error["stack_trace"]
    assert "zz-broken-spec.yaml:11" in trace
    assert "stage 'Build', action 'Compile'" in trace
    assert "unknown key (did you mean 'project_name'?)" in trace
    dag_ids = {d["dag_id"] for d in api.request("GET", "/dags", params={"limit": 100})["dags"]}
    assert "webapp-release" in dag_ids
    assert "broken-spec" not in dag_ids


def test_an_input_artifact_nobody_writes_is_an_import_error_naming_the_field(api):
    trace = import_error_naming(api, "zz-misnamed-artifact.yaml")["stack_trace"]
    assert (
        "zz-misnamed-artifact.yaml:17: stage 'Build', action 'Compile', field 'input_artifacts[0]': "
        "no action writes artifact 'SourceCod'; artifacts written in this pipeline: SourceCode"
    ) in trace
    dag_ids = {d["dag_id"] for d in api.request("GET", "/dags", params={"limit": 100})["dags"]}
    assert "misnamed-artifact" not in dag_ids
