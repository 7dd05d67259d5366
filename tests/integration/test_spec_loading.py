"""In the real dag-processor: a bad spec is one import error naming it; every other pipeline loads."""

from __future__ import annotations

import pytest

from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def test_bad_spec_is_an_import_error_and_the_others_load(api):
    api.wait_for_dag("webapp-release", timeout=180)

    def broken_spec_error():
        errors = api.request("GET", "/importErrors")["import_errors"]
        return next((e for e in errors if "zz-broken-spec.yaml" in e["stack_trace"]), None)

    error = wait_for(broken_spec_error, timeout=120, what="the broken spec's import error")
    assert error["filename"].endswith("release_pipeline_errors.py")
    trace = error["stack_trace"]
    assert "zz-broken-spec.yaml:11" in trace
    assert "stage 'Build', action 'Compile'" in trace
    assert "unknown key (did you mean 'project_name'?)" in trace
    dag_ids = {d["dag_id"] for d in api.request("GET", "/dags", params={"limit": 100})["dags"]}
    assert "webapp-release" in dag_ids
    assert "broken-spec" not in dag_ids
