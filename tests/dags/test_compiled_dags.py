"""The compiler and the DAG factory: DAG shape, params, references, and bad specs beside good ones."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from release_orchestrator import settings
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "include" / "pipelines"


@pytest.fixture(scope="module")
def example_dag():
    dags, errors = compiler.build_dags(str(EXAMPLE_DIR))
    assert errors == {}
    return dags["webapp-release"]


def test_one_task_group_per_stage_in_order(example_dag):
    groups = list(example_dag.task_group.children)
    assert groups == ["Source", "Build", "Test", "Approval", "Deploy"]
    # QUEUED: each stage's actions also wait for the stage's door (stages/entry.py), and doors are chained.
    assert example_dag.task_dict["Build.Compile"].upstream_task_ids == {"Source.Checkout", "Build.Enter"}
    assert example_dag.task_dict["Approval.QALeadSignOff"].upstream_task_ids == {
        "Test.IntegrationTests",
        "Approval.Enter",
    }
    assert [task.task_id for task in example_dag.roots] == ["Source.Enter"]
    assert example_dag.task_dict["Deploy.Enter"].upstream_task_ids == {"Approval.Enter"}


def test_run_order_sequences_and_equal_run_order_is_parallel(example_dag):
    # Test stage: DeployStaging (run_order 1) then IntegrationTests (run_order 2)
    assert example_dag.task_dict["Test.IntegrationTests"].upstream_task_ids == {"Test.DeployStaging"}
    # Deploy stage: three actions with equal run_order, all after the approval, none after another
    for task_id in ("Deploy.EC2", "Deploy.ECS", "Deploy.Lambda"):
        assert example_dag.task_dict[task_id].upstream_task_ids == {"Approval.QALeadSignOff", "Deploy.Enter"}
        assert example_dag.task_dict[task_id].downstream_task_ids == set()


def test_variables_become_params_and_mode_limits_runs(example_dag):
    params = example_dag.params
    assert params["environment_url"] == "https://staging.webapp.example.com"
    assert params["source_revision"] is None
    # QUEUED: runs overlap, one run per stage at a time (the stages' Enter tasks)
    assert example_dag.max_active_runs == settings.PARALLEL_RUNS.default
    assert "release-pipeline" in example_dag.tags
    assert "| Deploy | 1 | Lambda | `deploy.codedeploy` | DeployLambda |" in example_dag.doc_md


def test_references_compile_to_run_time_lookups(example_dag):
    build = example_dag.task_dict["Build.Compile"]
    env = {v["name"]: v["value"] for v in build.environment_variables}
    assert env["COMMIT_ID"] == "{{ release_output(ti, 'Source.Checkout', 'Source', 'CommitId') }}"
    assert env["RELEASE_ID"] == "{{ run_id }}"
    lam = example_dag.task_dict["Deploy.Lambda"]
    assert lam.deployment_config_name == "{{ params['deploy_config_lambda'] }}"
    assert lam.region_name == "eu-west-1"


def test_artifacts_compile_to_where_each_reader_finds_them(example_dag):
    store = "s3://release-artifacts/runs"
    build = example_dag.task_dict["Build.Compile"]
    assert build.artifacts["inputs"] == [
        {"name": "SourceCode", "store": store, "region": "us-east-1", "producer": "Source.Checkout"}
    ]
    assert build.artifacts["outputs"] == [{"name": "BuildOutput"}]
    ecs = example_dag.task_dict["Deploy.ECS"]
    assert ecs.input_names == ["BuildOutput"]
    # A file in an artifact stays as written (read when the run gets there), unlike a file in the spec's folder.
    assert ecs.task_definition_template == "BuildOutput::taskdef.json"
    # The Lambda deployment in eu-west-1 reads the bundle from that region's store (copied there first).
    lam = example_dag.task_dict["Deploy.Lambda"].artifacts
    assert (lam["store"], lam["region"]) == ("s3://release-artifacts-eu-west-1/runs", "eu-west-1")
    assert lam["inputs"] == [
        {"name": "BuildOutput", "store": store, "region": "us-east-1", "producer": "Build.Compile"}
    ]


def test_parallel_mode_allows_concurrent_runs():
    spec = pipeline(
        "parallel-demo",
        execution_mode="PARALLEL",
        stages=[stage("Source", [action("Checkout", "source.github", repository="a/b", branch="main")])],
    )
    dag = compiler.build_dag(spec)
    assert dag.max_active_runs == settings.PARALLEL_RUNS.get() > 1


class FakeTI:
    run_id = "run-2"

    def __init__(self, outputs, conf=None):
        self.outputs, self.conf = outputs, conf or {}

    def get_template_context(self):
        return {"dag_run": SimpleNamespace(run_id=self.run_id, conf=self.conf)}

    def xcom_pull(self, task_ids, run_id):
        return self.outputs.get((run_id, task_ids))


def test_release_output_resolves_and_explains_missing_values():
    ti = FakeTI({("run-2", "Build.Compile"): {"IMAGE_URI": "repo:abc"}})
    assert compiler.release_output(ti, "Build.Compile", "Build", "IMAGE_URI") == "repo:abc"
    with pytest.raises(compiler.UnresolvedReference, match=r"#\{Build.NOPE\}.*has: IMAGE_URI"):
        compiler.release_output(ti, "Build.Compile", "Build", "NOPE")
    with pytest.raises(compiler.UnresolvedReference, match="recorded no outputs"):
        compiler.release_output(ti, "Source.Checkout", "Source", "CommitId")


def test_a_rollback_run_reads_the_outputs_of_earlier_stages_from_the_run_it_rolls_back_to():
    outputs = {("run-1", "Build.Compile"): {"IMAGE_URI": "repo:old"}, ("run-2", "Deploy.Web"): {"Url": "new"}}
    ti = FakeTI(outputs, conf={"rollback": {"stage": "Deploy", "target_run_id": "run-1"}})
    assert compiler.release_output(ti, "Build.Compile", "Build", "IMAGE_URI") == "repo:old"
    assert compiler.release_output(ti, "Deploy.Web", "Web", "Url") == "new"  # its own stage: this run's
    with pytest.raises(compiler.UnresolvedReference, match="in run run-1, which this run rolls back to"):
        compiler.release_output(ti, "Source.Checkout", "Source", "CommitId")


def test_a_bad_spec_is_reported_and_the_others_still_load(tmp_path):
    shutil.copy(EXAMPLE_DIR / "webapp-release.yaml", tmp_path / "webapp-release.yaml")
    shutil.copytree(REPO / "include" / "sample_app", tmp_path.parent / "sample_app", dirs_exist_ok=True)
    (tmp_path / "broken.yaml").write_text(
        "pipeline:\n  name: broken\n  stages:\n    - name: Build\n      actions:\n"
        "        - name: Compile\n          type: build.codebuild\n          configuration: {}\n"
    )
    dags, errors = compiler.build_dags(str(tmp_path))
    assert list(dags) == ["webapp-release"]
    report = compiler.spec_errors_report(str(tmp_path))
    assert "broken.yaml:8" in report
    assert "project_name" in report and "stage 'Build'" in report and "action 'Compile'" in report


def test_dag_files_in_a_real_dagbag(tmp_path, monkeypatch):
    """The DAG processor's view: valid pipelines load, the bad spec is one import error."""
    from airflow.dag_processing.dagbag import DagBag

    shutil.copy(EXAMPLE_DIR / "webapp-release.yaml", tmp_path / "webapp-release.yaml")
    shutil.copytree(REPO / "include" / "sample_app", tmp_path.parent / "sample_app", dirs_exist_ok=True)
    (tmp_path / "bad.yaml").write_text("pipeline:\n  name: bad\n  execution_mode: SOMETIMES\n  stages: []\n")
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_PIPELINES_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert "webapp-release" in bag.dag_ids
    assert list(bag.import_errors) == [str(REPO / "dags" / "release_pipeline_errors.py")]
    message = next(iter(bag.import_errors.values()))
    assert "bad.yaml" in message and "execution_mode" in message
