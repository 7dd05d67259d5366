"""The release-orchestrator distribution, as a user installs it.

Builds the wheel from pyproject.toml once per module, checks what it holds, then installs it into a
fresh virtual environment and asks Airflow there what it found: the provider (`airflow providers list`
and `providers get`), the webhook plugin (`airflow plugins`), and, from a short script, every module
the provider lists imported from the installed copy.

The fresh environment gets Airflow and the amazon provider without installing them again: a .pth
file in its site-packages appends this interpreter's site-packages, which come after its own on
sys.path, so `release_orchestrator` resolves to the installed wheel. Nothing in it sees plugins/: no
PYTHONPATH, a scratch AIRFLOW_HOME with empty dags and plugins folders, and a cwd outside the repo.
"""

from __future__ import annotations

import configparser
import email
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "plugins" / "release_orchestrator"
DIST_NAME = "release-orchestrator"
PROVIDER_ENTRY_POINT = "release_orchestrator.provider_info:get_provider_info"
PLUGIN_ENTRY_POINT = "release_orchestrator.plugin:ReleaseOrchestratorPlugin"
WEBHOOKS_URL_PREFIX = "/release-webhooks"
CONSOLE_URL_PREFIX = "/releases"


def modules_of(package: str, but: tuple[str, ...] = ()) -> set[str]:
    """The modules of release_orchestrator.<package> in the source tree, except `but`."""
    return {
        f"release_orchestrator.{package}.{path.stem}"
        for path in (PACKAGE_DIR / package).glob("*.py")
        if path.stem != "__init__" and path.stem not in but
    }


COMMAND_TIMEOUT = 180

# Run by the fresh environment's interpreter; prints one JSON object.
PROBE = r"""
import importlib, json
from importlib import metadata, resources

import release_orchestrator.operators.codebuild as codebuild
from airflow.providers_manager import ProvidersManager

waiters = resources.files("release_orchestrator").joinpath("waiters")
manager = ProvidersManager()
info = manager.providers["release-orchestrator"].data
modules = sorted({
    module
    for key in ("operators", "hooks", "triggers")
    for entry in info.get(key, [])
    for module in entry["python-modules"]
})
print(json.dumps({
    "codebuild_file": codebuild.__file__,
    "codebuild_operator": codebuild.CodeBuildOperator.__qualname__,
    "modules": {module: importlib.import_module(module).__file__ for module in modules},
    "notifications": sorted(manager.notification),
    "extra_links": sorted(manager.extra_links_class_names),
    "waiters": sorted(path.name for path in waiters.iterdir() if path.name.endswith(".json")),
    "waiters_dir": str(waiters),
    "dist_version": metadata.version("release-orchestrator"),
}))
"""


# ---- building --------------------------------------------------------------------------------
def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def build_command(outdir: Path) -> list[str]:
    if _installed("build") and _installed("hatchling"):
        return [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir), str(REPO_ROOT)]
    if _installed("hatchling"):
        return [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(outdir),
            str(REPO_ROOT),
        ]
    # An environment made before requirements.txt listed the build tools: pip builds in an isolated
    # environment, with the backend from the configured index, pinned by constraints.txt.
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(outdir), str(REPO_ROOT)]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, **kwargs)
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("package")


@pytest.fixture(scope="module")
def wheel(workdir) -> Path:
    outdir = workdir / "dist"
    env = dict(os.environ, PIP_CONSTRAINT=str(REPO_ROOT / "constraints.txt"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    run(build_command(outdir), cwd=workdir, env=env)
    wheels = list(outdir.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_files(wheel) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def dist_info_file(wheel_files: dict[str, bytes], name: str) -> str:
    matches = [path for path in wheel_files if path.endswith(f".dist-info/{name}")]
    assert len(matches) == 1, f"{name}: {matches}"
    return wheel_files[matches[0]].decode()


@pytest.fixture(scope="module")
def wheel_metadata(wheel_files) -> email.message.Message:
    return email.message_from_string(dist_info_file(wheel_files, "METADATA"))


# ---- the wheel ---------------------------------------------------------------------------------
def test_wheel_holds_the_package_with_its_data_files(wheel, wheel_files):
    assert wheel.name.startswith("release_orchestrator-0.1.0-py3-none-any")
    expected = {
        "release_orchestrator/" + path.relative_to(PACKAGE_DIR).as_posix()
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert "release_orchestrator/waiters/codebuild.json" in expected
    assert "release_orchestrator/waiters/codedeploy.json" in expected
    assert "release_orchestrator/provider_info.py" in expected
    missing = expected - set(wheel_files)
    assert not missing, f"not in the wheel: {sorted(missing)}"
    for name in ("codebuild.json", "codedeploy.json"):
        assert json.loads(wheel_files[f"release_orchestrator/waiters/{name}"])["waiters"]
    # Only the package and its metadata: no tests, DAGs, include/ or the plugins-folder shim.
    outside = [
        path
        for path in wheel_files
        if not path.startswith(("release_orchestrator/", "release_orchestrator-0.1.0.dist-info/"))
    ]
    assert not outside, outside
    assert not [path for path in wheel_files if "__pycache__" in path or path.endswith(".pyc")]


def test_wheel_declares_both_entry_points(wheel_files):
    entry_points = configparser.ConfigParser()
    entry_points.optionxform = str  # entry point names are case-sensitive
    entry_points.read_string(dist_info_file(wheel_files, "entry_points.txt"))
    assert dict(entry_points["apache_airflow_provider"]) == {"provider_info": PROVIDER_ENTRY_POINT}
    assert dict(entry_points["airflow.plugins"]) == {"release_orchestrator": PLUGIN_ENTRY_POINT}


def test_wheel_metadata_and_runtime_requirements(wheel_metadata):
    assert wheel_metadata["Name"] == DIST_NAME
    assert wheel_metadata["Version"] == "0.1.0"
    assert wheel_metadata["Requires-Python"] == ">=3.10"
    requires = {canonicalize_name(r.name): r for r in map(Requirement, wheel_metadata.get_all("Requires-Dist"))}
    assert requires["apache-airflow"].specifier.contains("3.3.2")
    assert not requires["apache-airflow"].specifier.contains("3.2.9")
    assert not requires["apache-airflow"].specifier.contains("4.0.0")
    assert requires["apache-airflow-providers-amazon"].specifier.contains("9.39.0")
    assert not requires["apache-airflow-providers-amazon"].specifier.contains("9.38.0")
    assert {"boto3", "pyyaml"} <= set(requires)
    # Test and sandbox tools are not what a user installs.
    assert not {"moto", "pytest", "build", "hatchling"} & set(requires)
    assert not [r for r in requires.values() if r.marker and "extra" in str(r.marker)]


def test_every_requirement_is_met_by_the_pins_it_is_installed_with(wheel_metadata):
    """The Dockerfile and docs/install.md install the wheel with constraints.txt: the pins must fit."""
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    for requirement in map(Requirement, wheel_metadata.get_all("Requires-Dist")):
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned), f"{requirement} does not accept the pinned {pinned}"


# ---- installed in a fresh environment --------------------------------------------------------
@pytest.fixture(scope="module")
def fresh_venv(workdir, wheel) -> Path:
    venv = workdir / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout
    site_packages = Path(purelib.strip())
    assert site_packages.is_relative_to(venv)
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "_release_orchestrator_test_base.pth").write_text("".join(f"{path}\n" for path in ours))
    # pip comes from the appended site-packages; --no-deps: everything else is already there.
    run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
        cwd=workdir,
    )
    return venv


@pytest.fixture(scope="module")
def airflow_outputs(workdir, fresh_venv) -> dict[str, str]:
    """The Airflow commands and the probe, run side by side in the fresh environment."""
    home = workdir / "airflow-home"
    for folder in ("dags", "plugins"):
        (home / folder).mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTHON"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    python = str(fresh_venv / "bin" / "python")
    commands = {
        "providers list": [python, "-m", "airflow", "providers", "list", "-o", "json"],
        "providers get": [python, "-m", "airflow", "providers", "get", DIST_NAME, "--full", "-o", "json"],
        "plugins": [python, "-m", "airflow", "plugins", "-o", "json"],
        "probe": [python, "-c", PROBE],
    }
    processes = {
        name: subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in commands.items()
    }
    outputs, failures = {}, []
    for name, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        if process.returncode != 0:
            failures.append(f"{name} exited {process.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}")
        outputs[name] = stdout
        outputs[f"{name} stderr"] = stderr
    assert not failures, "\n\n".join(failures)
    return outputs


def json_output(outputs: dict[str, str], name: str):
    text = outputs[name]
    starts = [text.index(bracket) for bracket in "[{" if bracket in text]
    assert starts, f"{name} printed no JSON: {text!r}"
    return json.loads(text[min(starts) :])


def test_airflow_lists_the_provider_with_its_version(airflow_outputs):
    providers = {entry["package_name"]: entry for entry in json_output(airflow_outputs, "providers list")}
    assert DIST_NAME in providers, sorted(providers)
    assert providers[DIST_NAME]["version"] == "0.1.0"
    assert "apache-airflow-providers-amazon" in providers  # from the appended site-packages


def test_provider_info_names_our_hooks_and_triggers(airflow_outputs):
    (info,) = json_output(airflow_outputs, "providers get")
    assert info["package-name"] == DIST_NAME
    assert info["versions"] == ["0.1.0"]
    hooks = {module for entry in info["hooks"] for module in entry["python-modules"]}
    triggers = {module for entry in info["triggers"] for module in entry["python-modules"]}
    operators = {module for entry in info["operators"] for module in entry["python-modules"]}
    # Every hook and trigger module of the package (the shared bases aside) is declared.
    assert hooks == modules_of("hooks", but=("base",))
    assert triggers == modules_of("triggers", but=("base", "poller")) | {"release_orchestrator.events.trigger"}
    assert {"release_orchestrator.operators.codebuild", "release_orchestrator.operators.codedeploy"} <= operators
    integrations = {entry["integration-name"] for entry in info["integrations"]}
    for key in ("hooks", "triggers", "operators"):
        assert {entry["integration-name"] for entry in info[key]} <= integrations, key


def test_airflow_loads_the_webhook_plugin_from_the_entry_point(airflow_outputs):
    plugins = {entry["name"]: entry for entry in json_output(airflow_outputs, "plugins")}
    assert "release_orchestrator" in plugins, sorted(plugins)
    plugin = plugins["release_orchestrator"]
    assert f"{DIST_NAME}==0.1.0" in plugin["source"] and "airflow.plugins" in plugin["source"], plugin["source"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == [WEBHOOKS_URL_PREFIX, CONSOLE_URL_PREFIX]
    assert [view["href"] for view in plugin["external_views"]] == [f"{CONSOLE_URL_PREFIX}/"]


def test_everything_imports_from_the_installed_copy(airflow_outputs, fresh_venv):
    probe = json_output(airflow_outputs, "probe")
    venv = fresh_venv.resolve()
    assert Path(probe["codebuild_file"]).resolve().is_relative_to(venv), probe["codebuild_file"]
    assert probe["codebuild_operator"] == "CodeBuildOperator"
    assert probe["dist_version"] == "0.1.0"
    assert len(probe["modules"]) >= 8
    for module, path in probe["modules"].items():
        assert Path(path).resolve().is_relative_to(venv), f"{module} imported from {path}"
    # The classes the providers manager imports (it drops any that fail to import).
    assert "release_orchestrator.notifications.notifier.PipelineEventNotifier" in probe["notifications"]
    assert {
        "release_orchestrator.links.CodeBuildBuildLink",
        "release_orchestrator.links.CodeBuildLogsLink",
        "release_orchestrator.links.CodeDeployDeploymentLink",
    } <= set(probe["extra_links"])
    # The waiter definitions the hooks load were installed with the package.
    assert Path(probe["waiters_dir"]).resolve().is_relative_to(venv)
    assert probe["waiters"] == sorted(path.name for path in (PACKAGE_DIR / "waiters").glob("*.json"))


def test_airflow_reported_no_problem_with_the_package(airflow_outputs):
    for name in ("providers list", "providers get", "plugins", "probe"):
        for line in airflow_outputs[f"{name} stderr"].splitlines():
            lowered = line.lower()
            if "release_orchestrator" in lowered or "release-orchestrator" in lowered:
                assert not any(word in lowered for word in ("error", "warning", "fail", "traceback")), f"{name}: {line}"
