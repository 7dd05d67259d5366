"""Static checks of docker-compose.yaml (and the Dockerfile it builds).

No Docker engine is needed: the file is loaded with PyYAML (which resolves the anchors and `<<`
merge keys the way Compose does) and Compose's `${VAR...}` interpolation is applied here, so the
checks see what each container would get.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomllib
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# What a user puts in .env (docs/deployment.md). The secrets have no defaults on purpose.
DOTENV = {
    "AIRFLOW_FERNET_KEY": "fernet-key",
    "AIRFLOW_JWT_SECRET": "jwt-secret",
    "AIRFLOW_API_SECRET_KEY": "api-secret-key",
    "_AIRFLOW_WWW_USER_PASSWORD": "admin-password",
}
REQUIRED_SECRETS = {
    "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
}

# Environment keys a single Airflow service may add to the common environment.
SERVICE_SPECIFIC_ENV = {
    "DUMB_INIT_SETSID",  # airflow-worker: warm shutdown
    "_AIRFLOW_WWW_USER_USERNAME",  # airflow-init: the admin user it writes a password for
    "_AIRFLOW_WWW_USER_PASSWORD",
    "CONNECTION_CHECK_MAX_COUNT",  # airflow-cli
}
ONE_SHOT_SERVICES = {"airflow-init", "airflow-cli"}
REQUIRED_MOUNTS = ("dags", "include", "logs", "config")


# ---- Compose interpolation ---------------------------------------------------------------------
class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<invalid>))"
)


def interpolate_string(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise ValueError(f"invalid interpolation in {value!r} at {match.start()}")
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        set_and_non_empty = bool(current)
        is_set = current is not None
        if op in (":-", "-"):
            return current if (set_and_non_empty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (set_and_non_empty if op == ":?" else is_set):
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return arg if (set_and_non_empty if op == ":+" else is_set) else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def interpolate(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def test_interpolation_helper_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert (
        interpolate_string("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$SET/$${HOSTNAME}", env)
        == "x/d//d/x/${HOSTNAME}"
    )
    assert interpolate_string("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(MissingVariable):
        interpolate_string("${EMPTY:?needed}", env)
    with pytest.raises(ValueError):
        interpolate_string("$(id -u)", env)


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw() -> dict:
    with COMPOSE_FILE.open() as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """The file as Compose sees it with a minimal .env (and nothing else) set."""
    return interpolate(raw, dict(DOTENV))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_services(services) -> dict:
    found = {name: svc for name, svc in services.items() if name.startswith("airflow-")}
    assert found, "no airflow-* services"
    return found


@pytest.fixture(scope="module")
def common_env(compose) -> dict:
    return compose["x-airflow-common"]["environment"]


def requirements_airflow_version() -> str:
    text = (REPO_ROOT / "requirements.txt").read_text()
    match = re.search(r"^apache-airflow(?:\[[^\]]*\])?==(\S+)\s*$", text, re.MULTILINE)
    assert match, "requirements.txt does not pin apache-airflow"
    return match.group(1)


def env_of(service: dict) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return env


def healthcheck_command(service: dict) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:])


def url_port(url, default: int) -> int:
    return url.port or default


# ---- the services ------------------------------------------------------------------------------
def test_expected_services_exist(services):
    expected = {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
        "airflow-cli",
        "flower",
        "sandbox",
        "airflow-webhook-starter",
    }
    assert expected <= set(services)
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["postgres"]["image"].split(":")[1].split(".")[0] == "16"
    assert services["redis"]["image"].split(":")[0] == "redis"


def test_airflow_commands(services):
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["flower"]["command"] == "celery flower"
    # Webhook runs are created by a starter of their own, not in the api-server (WEBHOOK_STARTER).
    starter = services["airflow-webhook-starter"]["command"].split()
    assert starter[:3] == ["python", "-m", "release_orchestrator.webhooks.starter"]
    heartbeat = starter[starter.index("--heartbeat-file") + 1]
    assert heartbeat in healthcheck_command(services["airflow-webhook-starter"])
    assert env_of(services["airflow-apiserver"])["RELEASE_ORCHESTRATOR_WEBHOOK_STARTER"] == "separate"
    init_script = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init_script


def test_optional_services_sit_behind_profiles(services):
    assert "debug" in services["airflow-cli"]["profiles"]
    assert "flower" in services["flower"]["profiles"]
    assert "sandbox" in services["sandbox"]["profiles"]
    core = [name for name in services if name not in ("airflow-cli", "flower", "sandbox")]
    for name in core:
        assert not services[name].get("profiles"), f"{name} must start with a plain `docker compose up`"


@pytest.mark.parametrize("key", ["image", "build", "volumes", "user"])
def test_every_airflow_service_shares_the_common_definition(compose, airflow_services, key):
    common = compose["x-airflow-common"]
    services = dict(airflow_services, flower=compose["services"]["flower"])
    for name, svc in services.items():
        if key == "user" and name == "airflow-init":
            assert svc["user"] == "0:0"  # it chowns the mounted folders
            continue
        assert svc.get(key) == common.get(key), f"{name}: {key} differs from x-airflow-common"


def test_every_airflow_service_shares_the_common_environment(compose, airflow_services, common_env):
    services = dict(airflow_services, flower=compose["services"]["flower"])
    for name, svc in services.items():
        env = env_of(svc)
        extra = set(env) - set(common_env)
        assert extra <= SERVICE_SPECIFIC_ENV, f"{name} adds {sorted(extra - SERVICE_SPECIFIC_ENV)}"
        for key, value in common_env.items():
            if key in SERVICE_SPECIFIC_ENV:
                continue
            assert env.get(key) == value, f"{name}: {key} is {env.get(key)!r}, common is {value!r}"
    assert env_of(compose["services"]["airflow-worker"]).get("DUMB_INIT_SETSID") == "0"


def test_image_is_built_from_the_dockerfile_and_tagged_with_the_airflow_pin(compose):
    common = compose["x-airflow-common"]
    version = requirements_airflow_version()
    image = common["image"]
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    assert tag.split("-")[0] == version, f"image {image!r} is not tagged with Airflow {version}"
    if "build" in common:
        build = common["build"]
        context = REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.resolve() == DOCKERFILE.resolve()
    else:
        assert image.startswith("apache/airflow:")


def dockerfile_stages() -> list[dict]:
    """The Dockerfile's stages in order: base image, stage name and instructions (continuations joined)."""
    stages: list[dict] = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) == 4 and words[2].upper() == "AS" else None
            stages.append({"base": words[1], "name": name, "instructions": []})
        else:
            assert stages, f"{line!r} comes before any FROM"
            stages[-1]["instructions"].append(line)
    return stages


def pip_install_args(instruction: str) -> list[str]:
    """The arguments of the (first) `pip install` of a RUN instruction."""
    for command in re.split(r"&&|;", instruction[len("RUN ") :]):
        args = shlex.split(command)
        if args[:2] == ["pip", "install"] or args[1:4] == ["-m", "pip", "install"]:
            return args[args.index("install") + 1 :]
    raise AssertionError(f"no pip install in {instruction!r}")


def option(args: list[str], short: str, long: str) -> str:
    return args[args.index(short) + 1] if short in args else args[args.index(long) + 1]


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_dockerfile_extends_the_pinned_official_image_and_installs_with_constraints():
    version = requirements_airflow_version()
    stages = dockerfile_stages()
    final = stages[-1]
    match = re.fullmatch(r"apache/airflow:(?P<airflow>[\d.]+)-python(?P<python>[\d.]+)", final["base"])
    assert match, f"unexpected base image {final['base']!r}"
    assert match.group("airflow") == version
    # A build stage on another image would build with another Python than the one that runs the wheel.
    assert all(stage["base"] == final["base"] for stage in stages), [stage["base"] for stage in stages]

    # constraints.txt was frozen with the Makefile's Python; the image must run the same minor.
    makefile_python = re.search(r"^PYTHON \?= python(\S+)", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_python and match.group("python") == makefile_python.group(1)
    assert f"apache-airflow=={version}" in (REPO_ROOT / "constraints.txt").read_text().splitlines()

    copies = " ".join(line for line in final["instructions"] if line.upper().startswith(("COPY ", "ADD ")))
    assert "requirements.txt" in copies and "constraints.txt" in copies
    installs = [line for line in final["instructions"] if line.upper().startswith("RUN ") and "pip install" in line]
    assert installs, "the final stage does not pip install anything"
    args = pip_install_args(installs[0])
    assert Path(option(args, "-r", "--requirement")).name == "requirements.txt"
    assert Path(option(args, "-c", "--constraint")).name == "constraints.txt"


def test_dockerfile_builds_the_wheel_and_installs_it_in_the_final_image():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "no build stage: the image should install the wheel built from this checkout"
    *builders, final = stages
    build = next(
        (stage for stage in builders if any("python -m build" in line for line in stage["instructions"])), None
    )
    assert build and build["name"], "no named stage runs `python -m build`"

    # The build stage gets what the wheel is made of, and builds it with the pinned build tools.
    build_copies = " ".join(line for line in build["instructions"] if line.upper().startswith("COPY "))
    assert "pyproject.toml" in build_copies and "plugins/release_orchestrator" in build_copies
    build_run = next(line for line in build["instructions"] if "python -m build" in line)
    tools = pip_install_args(build_run)
    assert {"build", "hatchling"} <= set(tools)
    assert Path(option(tools, "-c", "--constraint")).name == "constraints.txt"
    pins = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("build==") for line in pins) and any(line.startswith("hatchling==") for line in pins)
    outdir = shlex.split(build_run[build_run.index("python -m build") :])
    assert "--wheel" in outdir
    outdir = outdir[outdir.index("--outdir") + 1]

    # The final stage copies the wheel out of the build stage and installs it with the constraints.
    copied = [
        shlex.split(line)
        for line in final["instructions"]
        if line.upper().startswith("COPY ") and f"--from={build['name']}" in line
    ]
    assert len(copied) == 1, copied
    source, target = copied[0][-2], copied[0][-1]
    assert source.rstrip("/") == outdir.rstrip("/")
    project = pyproject()["project"]
    wheel = f"{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"
    installs = [
        pip_install_args(line)
        for line in final["instructions"]
        if line.upper().startswith("RUN ") and "pip install" in line
    ]
    wheels = [arg for args in installs for arg in args if arg.endswith(".whl")]
    assert wheels == [f"{target.rstrip('/')}/{wheel}"], f"the final stage should install {wheel} from {target}"
    install = next(args for args in installs if wheels[0] in args)
    assert Path(option(install, "-c", "--constraint")).name == "constraints.txt"
    # The package comes from the wheel only.
    final_copies = " ".join(line for line in final["instructions"] if line.upper().startswith(("COPY ", "ADD ")))
    assert "plugins" not in final_copies


def test_plugins_folder_is_neither_mounted_nor_imported(services):
    """The image has the package and its plugin entry point; Airflow would load the plugin twice."""
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert not source.rstrip("/").endswith("plugins") and target != "/opt/airflow/plugins", f"{name}: {volume}"
        pythonpath = env_of(svc).get("PYTHONPATH", "")
        assert "/opt/airflow/plugins" not in pythonpath.split(":"), f"{name}: PYTHONPATH={pythonpath}"


# ---- configuration agrees with the services ----------------------------------------------------
def test_executor_and_basic_settings(common_env):
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert common_env["AIRFLOW__API__BASE_URL"].startswith("http")
    assert common_env["RELEASE_ORCHESTRATOR_PIPELINES_DIR"] == "/opt/airflow/include/pipelines"
    pythonpath = common_env["PYTHONPATH"].split(":")
    assert "/opt/airflow" in pythonpath


def test_metadata_db_url_names_the_postgres_service(services, common_env):
    url = urlsplit(common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert url.scheme == "postgresql+psycopg2"
    assert url.hostname in services, f"DB host {url.hostname!r} is not a service"
    postgres = services[url.hostname]
    assert postgres["image"].startswith("postgres:")
    pg_env = env_of(postgres)
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.password == pg_env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == pg_env.get("POSTGRES_DB", pg_env["POSTGRES_USER"])
    assert url_port(url, 5432) == int(pg_env.get("PGPORT", 5432))


def test_celery_result_backend_is_the_same_database(services, common_env):
    backend = common_env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+postgresql")
    backend_url = urlsplit(backend[len("db+") :])
    db_url = urlsplit(common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert backend_url.hostname in services
    assert (backend_url.hostname, backend_url.username, backend_url.password, backend_url.path) == (
        db_url.hostname,
        db_url.username,
        db_url.password,
        db_url.path,
    )
    assert url_port(backend_url, 5432) == url_port(db_url, 5432)


def test_broker_url_names_the_redis_service(services, common_env):
    url = urlsplit(common_env["AIRFLOW__CELERY__BROKER_URL"])
    assert url.scheme == "redis"
    assert url.hostname in services, f"broker host {url.hostname!r} is not a service"
    redis = services[url.hostname]
    assert redis["image"].startswith("redis:")
    command = redis.get("command", "")
    command = command if isinstance(command, str) else " ".join(map(str, command))
    port = re.search(r"--port\s+(\d+)", command)
    redis_port = int(port.group(1)) if port else 6379
    assert url_port(url, 6379) == redis_port
    assert redis_port in [int(p) for p in redis.get("expose", [redis_port])]
    requirepass = re.search(r"--requirepass\s+(\S+)", command)
    assert (url.password or None) == (requirepass.group(1) if requirepass else None)


def test_execution_api_url_names_the_api_server(services, common_env):
    url = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver" and url.hostname in services
    assert url.path == "/execution/"
    container_ports = {int(str(p).split(":")[-1]) for p in services["airflow-apiserver"]["ports"]}
    assert url_port(url, 80) in container_ports


def test_secrets_are_shared_and_never_defaulted(raw, common_env):
    for key, variable in REQUIRED_SECRETS.items():
        assert common_env[key] == DOTENV[variable], f"{key} is not taken from {variable}"
        without = {k: v for k, v in DOTENV.items() if k != variable}
        with pytest.raises(MissingVariable):
            interpolate(raw["x-airflow-common"]["environment"][key], without)


def test_simple_auth_manager_users_and_password_file(services, common_env, compose):
    assert common_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    init_env = env_of(services["airflow-init"])
    users = dict(user.split(":")[:2] for user in common_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users.get(init_env["_AIRFLOW_WWW_USER_USERNAME"]) == "admin"
    # airflow-init writes the file; the api-server reads it: it must live on a shared mount.
    passwords_file = common_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    targets = [volume.split(":")[1] for volume in compose["x-airflow-common"]["volumes"]]
    assert any(passwords_file.startswith(target + "/") for target in targets)
    assert passwords_file in " ".join(services["airflow-init"]["command"])


def test_aws_connection_points_at_the_sandbox_service(services, common_env):
    conn = json.loads(common_env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["conn_type"] == "aws"
    endpoint = urlsplit(conn["extra"]["endpoint_url"])
    assert endpoint.hostname == "sandbox" and endpoint.hostname in services
    sandbox_command = services["sandbox"]["command"]
    sandbox_args = shlex.split(sandbox_command) if isinstance(sandbox_command, str) else sandbox_command
    assert endpoint.port == int(sandbox_args[sandbox_args.index("--port") + 1])
    assert conn["extra"]["region_name"]
    assert conn.get("login") and conn.get("password"), "the sandbox connection carries test credentials"


def test_sandbox_service(compose, services):
    sandbox = services["sandbox"]
    command = sandbox["command"]
    args = shlex.split(command) if isinstance(command, str) else command
    assert args[:3] == ["python", "-m", "include.sandbox.server"]
    assert "--seed" in args and args[args.index("--host") + 1] == "0.0.0.0"
    assert sandbox.get("image") == compose["x-airflow-common"]["image"]
    assert sandbox.get("build") == compose["x-airflow-common"].get("build")
    port = args[args.index("--port") + 1]
    assert f"localhost:{port}/_sandbox/health" in healthcheck_command(sandbox)
    targets = {volume.split(":")[1] for volume in sandbox["volumes"]}
    assert "/opt/airflow/include" in targets
    assert "/opt/airflow" in env_of(sandbox)["PYTHONPATH"].split(":")


# ---- mounts, health checks, start order --------------------------------------------------------
def test_project_folders_are_mounted(compose, airflow_services):
    for name, svc in airflow_services.items():
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in svc["volumes"]}
        for folder in REQUIRED_MOUNTS:
            target = f"/opt/airflow/{folder}"
            assert target in mounts, f"{name} does not mount {folder}"
            assert mounts[target].endswith(f"/{folder}") or mounts[target] == f"./{folder}"
    for volume in compose["services"]["postgres"]["volumes"]:
        source = volume.split(":")[0]
        if not source.startswith((".", "/")):
            assert source in compose.get("volumes", {}), f"named volume {source!r} is not declared"


def test_long_running_services_have_health_checks(services):
    for name, svc in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert healthcheck_command(svc).strip(), f"{name} has an empty health check"


def test_health_checks_are_the_right_ones(services, common_env):
    assert "http://localhost:8080/api/v2/version" in healthcheck_command(services["airflow-apiserver"])
    assert "curl --fail" in healthcheck_command(services["airflow-apiserver"])
    assert "http://localhost:8974/health" in healthcheck_command(services["airflow-scheduler"])
    assert common_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"
    for name, job in (("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob")):
        command = healthcheck_command(services[name])
        assert f"airflow jobs check --job-type {job}" in command
        assert '--hostname "${HOSTNAME}"' in command  # `$$` in the file: expanded by the shell, not Compose
    worker = healthcheck_command(services["airflow-worker"])
    assert "inspect ping" in worker and "celery@${HOSTNAME}" in worker
    assert "pg_isready" in healthcheck_command(services["postgres"])
    assert "redis-cli ping" in healthcheck_command(services["redis"])


def test_depends_on_targets_exist_and_conditions_fit(services):
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target != name
            condition = spec.get("condition", "service_started")
            if target in ONE_SHOT_SERVICES:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no health check"
            if not svc.get("profiles"):
                assert not services[target].get("profiles"), f"{name} depends on {target}, which sits behind a profile"


def test_airflow_services_wait_for_their_backends_and_init(services):
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
    ):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    init_depends = services["airflow-init"]["depends_on"]
    assert init_depends["postgres"]["condition"] == "service_healthy"
    assert "airflow-init" not in init_depends


# ---- what the host exposes, what git keeps -----------------------------------------------------
# Services that answer anyone who reaches the host: the api-server has Airflow's login, and its webhooks
# their signatures. Everything else is published on loopback only, or not at all.
PUBLIC_SERVICES = {"airflow-apiserver"}


def published_ports(service: dict) -> list[tuple[str, str]]:
    """(host address, host port) of each published port, in Compose's short or long syntax."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), str(port.get("published", ""))))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0].strip("[]"), parts[1]))
        elif len(parts) == 2:
            found.append(("", parts[0]))
        else:  # a container port alone: Docker picks a host port on every interface
            found.append(("", ""))
    return found


@pytest.mark.parametrize("name", ["sandbox", "flower"])
def test_unauthenticated_services_are_published_on_loopback_only(services, name):
    ports = published_ports(services[name])
    assert ports, f"{name} publishes no port"
    assert all(address == "127.0.0.1" for address, _ in ports), f"{name}: {services[name]['ports']}"


def test_only_the_api_server_is_published_on_every_interface(services):
    for name, service in services.items():
        for address, port in published_ports(service):
            if address not in ("127.0.0.1", "::1", "localhost"):
                assert name in PUBLIC_SERVICES, f"{name} publishes port {port or '(any)'} on every interface"


GENERATED_FILES = [
    ".airflow/passwords.json",  # the local environment's users and passwords
    ".airflow/airflow.db",
    ".airflow/process-logs/api-server.log",
    ".sandbox/state.json",
    ".env",  # the Fernet key, JWT secret and API secret key docker compose reads
    "logs/dag_id=x/run_id=y/task_id=z/attempt=1.log",
]


def assert_git_ignores(path: str) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # --no-index: the rules alone decide, whether or not such a file exists or was ever added.
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{path} is not git-ignored {result.stderr}"


def compose_written_files(compose: dict, common_env: dict) -> list[str]:
    """airflow-init writes the users' passwords, and Airflow its configuration, into the project's config/."""
    found = []
    for variable in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "AIRFLOW_CONFIG"):
        container_path = common_env[variable]
        for volume in compose["x-airflow-common"]["volumes"]:
            host, target = volume.split(":")[:2]
            if container_path.startswith(target.rstrip("/") + "/"):
                found.append((Path(host).relative_to(".") / container_path[len(target) + 1 :]).as_posix())
                break
        else:
            pytest.fail(f"{variable}={container_path} is in no mounted folder")
    return found


def test_generated_secrets_and_config_are_ignored_by_git(compose, common_env):
    paths = GENERATED_FILES + compose_written_files(compose, common_env)
    assert "config/simple_auth_manager_passwords.json" in paths
    for path in paths:
        assert_git_ignores(path)
