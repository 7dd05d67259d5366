"""What a spec's YAML may cost: aliases, nesting and odd characters end in a spec error, not a crash or a hang."""

import os
import subprocess
import sys
import time
from pathlib import Path

from release_orchestrator.pipeline.loader import MAX_ALIAS_EXPANSION, MAX_DEPTH, load_specs, parse_spec_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "include" / "pipelines" / "webapp-release.yaml").read_text(encoding="utf-8")
ANCHOR = "            auto_rollback: true\n        - name: ECS\n"  # the end of action Deploy/EC2


def with_configuration(extra: str) -> str:
    """The example spec with `extra` (lines at the configuration's indentation) added to Deploy/EC2."""
    assert EXAMPLE.count(ANCHOR) == 1
    return EXAMPLE.replace(ANCHOR, ANCHOR.replace("\n", "\n" + extra, 1))


def billion_laughs(levels: int) -> str:
    lines = [f"lol0: &lol0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "".join(f"            {line}\n" for line in lines)


def test_an_alias_bomb_is_refused_at_once_naming_file_line_stage_action_and_field():
    bomb = billion_laughs(9)  # 9^10 "lol"s: about 3 GB once expanded
    assert len(bomb) < 800
    started = time.perf_counter()
    pipeline, errors = parse_spec_text(with_configuration(bomb), "specs/bomb.yaml")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert pipeline is None and len(errors) == 1
    error = errors[0]
    assert (error.file, error.stage, error.action) == ("specs/bomb.yaml", "Deploy", "EC2")
    assert error.field.startswith("configuration.lol") and error.line > 100
    assert "aliases" in error.message and f"{MAX_ALIAS_EXPANSION:,}" in error.message
    assert len(str(error)) < 400


def test_the_validate_command_refuses_a_bomb_quickly(tmp_path):
    (tmp_path / "bomb.yaml").write_text(with_configuration(billion_laughs(8)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}/plugins:{ROOT}"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "release_orchestrator", "validate", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.perf_counter() - started < 30  # the interpreter and imports; the bomb itself costs milliseconds
    assert result.returncode == 1
    assert f"{tmp_path / 'bomb.yaml'}:" in result.stderr and "aliases" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr) < 2000


def test_the_bound_leaves_anchors_for_shared_settings_alone():
    """Beside the bomb test: what the bound refuses is the expansion, not aliases as such."""
    assert parse_spec_text(with_configuration(billion_laughs(3)), "small.yaml")[1][0].field == "configuration.lol0"
    shared = "{name: SHARED, value: x, type: PLAINTEXT}"
    text = EXAMPLE.replace(
        "              - {name: COMMIT_ID,", f"              - &shared {shared}\n              - {{name: COMMIT_ID,"
    ).replace("              - {name: RELEASE_ID,", "              - *shared\n              - {name: RELEASE_ID,")
    pipeline, errors = parse_spec_text(text, "anchors.yaml")
    assert errors == []
    env = pipeline.stages[1].actions[0].configuration["environment_variables"]
    assert [e["name"] for e in env] == ["SHARED", "COMMIT_ID", "SHARED", "RELEASE_ID"]


def test_deep_nesting_is_a_spec_error_not_a_recursion_error():
    deep = "            deep: " + "[" * 300 + "]" * 300 + "\n"
    pipeline, errors = parse_spec_text(with_configuration(deep), "deep.yaml")
    assert pipeline is None and len(errors) == 1
    error = errors[0]
    assert (error.file, error.stage, error.action) == ("deep.yaml", "Deploy", "EC2")
    assert error.field.startswith("configuration.deep[0]") and error.line
    assert f"nested deeper than {MAX_DEPTH} levels" in error.message


def test_a_recursive_alias_is_refused():
    pipeline, errors = parse_spec_text(with_configuration("            loop: &loop [*loop]\n"), "loop.yaml")
    assert pipeline is None
    assert [(e.stage, e.action, e.field) for e in errors] == [("Deploy", "EC2", "configuration.loop[0]")]
    assert "contains it" in errors[0].message


def test_a_control_character_names_its_line():
    pipeline, errors = parse_spec_text("pipeline:\n  name: ü\n  description: \x8e\n", "ctl.yaml")
    assert pipeline is None and errors[0].line == 3 and "#x008e" in errors[0].message


def test_text_that_is_not_unicode_is_a_spec_error():
    pipeline, errors = parse_spec_text('pipeline:\n  name: "\ud800"\n', "api.yaml")
    assert pipeline is None and errors[0].file == "api.yaml" and "not valid Unicode" in errors[0].message


def test_a_wrongly_typed_platform_is_reported_on_its_field():
    text = EXAMPLE.replace("platform: server", "platform: []", 1)
    pipeline, errors = parse_spec_text(text, "platform.yaml")
    assert [(e.stage, e.action, e.field) for e in errors] == [("Test", "DeployStaging", "configuration.platform")]
    assert "expected a string, got []" in errors[0].message


def test_a_huge_value_is_quoted_short_in_the_error():
    text = EXAMPLE.replace("platform: server", "platform: [" + ", ".join(["x" * 50] * 2000) + "]", 1)
    _, errors = parse_spec_text(text, "huge.yaml")
    assert [e.field for e in errors] == ["configuration.platform"] and len(str(errors[0])) < 400


def test_an_action_that_is_not_a_mapping_is_located():
    text = EXAMPLE.replace("        - name: Lambda\n", "        - 42\n        - name: Lambda\n", 1)
    _, errors = parse_spec_text(text, "item.yaml")
    item = [e for e in errors if e.field == "actions[2]"]
    assert len(item) == 1 and item[0].stage == "Deploy" and item[0].line == text.split("\n").index("        - 42") + 1


def test_one_spec_that_crashed_the_loader_hides_no_other(tmp_path):
    (tmp_path / "good.yaml").write_text(EXAMPLE.replace("../sample_app/", ""), encoding="utf-8")
    (tmp_path / "platform.yaml").write_text(
        EXAMPLE.replace("name: webapp-release", "name: other", 1).replace("platform: server", "platform: []", 1),
        encoding="utf-8",
    )
    (tmp_path / "taskdef.json").write_text("{}")
    pipelines, errors = load_specs(tmp_path)
    assert [p.name for p in pipelines] == ["webapp-release"]
    assert list(errors) == [str(tmp_path / "platform.yaml")]


def test_a_tag_longer_than_airflow_takes_is_a_spec_error_not_a_dag_that_fails_to_build():
    text = EXAMPLE.replace("tags: [webapp, example]", f"tags: [webapp, {'t' * 101}]", 1)
    pipeline, errors = parse_spec_text(text, "tags.yaml")
    assert [(e.field, e.line) for e in errors] == [("tags[1]", 9)]
    assert "up to 100 characters, this one has 101" in errors[0].message
    assert parse_spec_text(text.replace("t" * 101, "t" * 100), "tags.yaml")[1] == []
