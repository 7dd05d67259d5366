"""A spec that used to crash the loader (not just fail it) hides no other pipeline in the DAG processor."""

import shutil
from pathlib import Path

import pytest

from release_orchestrator.pipeline import compiler

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "include" / "pipelines" / "webapp-release.yaml").read_text(encoding="utf-8")
# The line of the first `platform: server`, which platform.yaml breaks.
PLATFORM_LINE = EXAMPLE.splitlines().index("            platform: server") + 1


def crashing_specs() -> dict[str, str]:
    """Specs that raised TypeError, RecursionError or ate memory before they became spec errors."""

    def other(name: str) -> str:
        return EXAMPLE.replace("name: webapp-release", f"name: {name}", 1)

    bomb = "".join(f"            lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]\n" for i in range(1, 9))
    anchor = "            auto_rollback: true\n        - name: ECS\n"
    return {
        "platform.yaml": other("platform").replace("platform: server", "platform: []", 1),
        "deep.yaml": other("deep").replace(
            "platform: server", "platform: server\n            deep: " + "[" * 400 + "]" * 400, 1
        ),
        "bomb.yaml": other("bomb").replace(
            anchor, anchor.replace("\n", "\n            lol0: &lol0 [lol, lol, lol]\n" + bomb, 1), 1
        ),
    }


@pytest.fixture
def spec_dir(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "webapp-release.yaml").write_text(EXAMPLE, encoding="utf-8")
    shutil.copytree(REPO / "include" / "sample_app", tmp_path / "sample_app")
    for name, text in crashing_specs().items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_build_dags_keeps_the_good_pipeline(spec_dir):
    dags, errors = compiler.build_dags(str(spec_dir))
    assert list(dags) == ["webapp-release"]
    assert sorted(Path(path).name for path in errors) == ["bomb.yaml", "deep.yaml", "platform.yaml"]


def test_dag_processor_view(spec_dir, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RELEASE_ORCHESTRATOR_PIPELINES_DIR", str(spec_dir))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.dag_ids == ["webapp-release"]
    assert list(bag.import_errors) == [str(REPO / "dags" / "release_pipeline_errors.py")]
    report = next(iter(bag.import_errors.values()))
    assert "3 pipeline spec(s) invalid" in report
    assert (
        f"{spec_dir / 'platform.yaml'}:{PLATFORM_LINE}: stage 'Test', action 'DeployStaging', field "
        "'configuration.platform'" in report
    )
    assert f"{spec_dir / 'deep.yaml'}:" in report and "nested deeper than" in report
    assert f"{spec_dir / 'bomb.yaml'}:" in report and "aliases" in report
    assert len(report) < 3000


def test_a_defect_on_one_spec_is_that_spec_error(spec_dir, monkeypatch):
    """Whatever a future check gets wrong on one spec, it is that spec's error and the others load."""
    import release_orchestrator.pipeline.loader as loader

    real = loader.validate

    def fails_on_platform(pipeline):
        if pipeline.name == "platform":
            raise KeyError("a defect")
        return real(pipeline)

    (spec_dir / "platform.yaml").write_text(EXAMPLE.replace("name: webapp-release", "name: platform", 1))
    monkeypatch.setattr(loader, "validate", fails_on_platform)
    pipelines, errors = loader.load_specs(spec_dir)
    assert [p.name for p in pipelines] == ["webapp-release"]
    message = str(errors[str(spec_dir / "platform.yaml")])
    assert message.startswith(str(spec_dir / "platform.yaml")) and "KeyError" in message and "defect" in message
