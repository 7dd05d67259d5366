"""Settings: one module, read when used, two ways to give each, clear errors, docs in sync."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from release_orchestrator import settings
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "release_orchestrator"


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch):
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
        monkeypatch.delenv(setting.airflow_env, raising=False)


def parallel_pipeline():
    return pipeline("p", [stage("Approve", [action("Ok", "approval.manual")])], execution_mode="PARALLEL")


def test_defaults_when_unset_or_empty(monkeypatch):
    assert settings.PARALLEL_RUNS.get() == 16
    assert settings.POLL_INTERVAL.get() is None
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_PARALLEL_RUNS", " ")
    assert settings.PARALLEL_RUNS.get() == 16


def test_read_when_used_not_at_import(monkeypatch):
    assert compiler.build_dag(parallel_pipeline()).max_active_runs == 16
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_PARALLEL_RUNS", "3")
    assert compiler.build_dag(parallel_pipeline()).max_active_runs == 3


def test_airflow_configuration_form_and_which_wins(monkeypatch):
    monkeypatch.setenv("AIRFLOW__RELEASE_ORCHESTRATOR__POLL_INTERVAL", "7")
    assert settings.POLL_INTERVAL.get() == 7.0
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_POLL_INTERVAL", "2.5")
    assert settings.POLL_INTERVAL.get() == 2.5


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        (settings.PARALLEL_RUNS, "many", "a whole number, at least 1"),
        (settings.PARALLEL_RUNS, "0", "a whole number, at least 1"),
        (settings.POLL_INTERVAL, "0", "at least 0.1"),
        (settings.EVENTS_WAIT_SECONDS, "21", "0 to 20"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_it_expects(monkeypatch, setting, value, expected):
    monkeypatch.setenv(setting.env, value)
    with pytest.raises(settings.SettingError) as caught:
        setting.get()
    assert setting.env in str(caught.value) and repr(value) in str(caught.value)
    assert expected in str(caught.value)


def test_pipelines_dirs(monkeypatch, tmp_path):
    # Loaded from this repository's plugins/ folder: include/pipelines next to it.
    assert settings.pipelines_dirs() == [str(ROOT / "include" / "pipelines")]
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_PIPELINES_DIR", os.pathsep.join([str(tmp_path), "", "/elsewhere"]))
    assert settings.pipelines_dirs() == [str(tmp_path), "/elsewhere"]


def test_the_docs_table_is_the_settings_table():
    assert settings.markdown_table() in (ROOT / "docs" / "settings.md").read_text()


def test_every_setting_is_listed_in_the_table():
    defined = [value for value in vars(settings).values() if isinstance(value, settings.Setting)]
    assert sorted(s.name for s in defined) == sorted(s.name for s in settings.SETTINGS)


def test_no_module_reads_a_setting_from_the_environment_itself():
    readers = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py" or "sandbox" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.(environ|getenv).*RELEASE_ORCHESTRATOR_", line):
                readers.append(f"{path.relative_to(ROOT)}:{number}")
    assert readers == []


def test_a_bad_setting_is_the_dag_files_import_error_not_a_missing_pipeline(monkeypatch):
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_POLL_INTERVAL", "fast")
    with pytest.raises(settings.SettingError, match="RELEASE_ORCHESTRATOR_POLL_INTERVAL='fast'"):
        compiler.build_dags(str(ROOT / "include" / "pipelines"))
