"""docker-compose.yml and the Dockerfile, checked statically (there is no Docker engine here).

Pinned images, known and complete settings, no secrets, free ports, health checks and a start
order that converges, commands that exist, and an audit role that cannot change history.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.api.settings import ApiSettings
from interlock.settings import Settings, SettingsError, env_name, load
from tests.system.deploy.compose import (
    COMPOSE,
    ENV_EXAMPLE,
    ROOT,
    dockerfile_env,
    dockerfile_instructions,
    environment,
    exec_form,
    interpolate,
    is_interlock,
    is_one_shot,
    load_compose,
    published_ports,
    references,
)

SERVICES: dict[str, Any] = load_compose()["services"]
KNOWN = {env_name(Settings, f) for f in Settings.model_fields} | {
    env_name(ApiSettings, f) for f in ApiSettings.model_fields
}
# Every long-running Interlock process needs these to reach its cluster, database and policy.
REQUIRED = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "INTERLOCK_TASK_QUEUE",
    "INTERLOCK_DATABASE_URL",
    "INTERLOCK_POLICY",
}
# Prometheus' own images are tagged with a leading v (prom/prometheus:v2.53.2).
PINNED_TAG = re.compile(r"^[\w./-]+:(?P<tag>v?\d+\.\d+(\.\d+)?[\w.-]*)$")
DIGEST = re.compile(r"^[\w./:-]+@sha256:[0-9a-f]{64}$")
# Images without a shell or any probe binary (FROM scratch) cannot run a healthcheck command.
NO_SHELL_IMAGES = ("otel/opentelemetry-collector-contrib:",)
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|API_KEY|TOKEN")
EXAMPLE = dict(
    line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
)
# .env.example with the passwords an operator fills in.
DOTENV = EXAMPLE | {
    "POSTGRES_PASSWORD": "pg-pw",
    "TEMPORAL_DB_PASSWORD": "t-pw",
    "INTERLOCK_APP_DB_PASSWORD": "a-pw",
    "INTERLOCK_ANCHOR_DB_PASSWORD": "an-pw",
    "GRAFANA_ADMIN_PASSWORD": "g-pw",
}


def long_running() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in SERVICES.items() if not is_one_shot(s)}


def test_the_compose_file_has_every_part_of_the_deployment() -> None:
    images = {name: s.get("image", "") for name, s in SERVICES.items()}
    assert images["postgres"].startswith("postgres:")
    assert images["temporal"].startswith("temporalio/auto-setup:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["jaeger"].startswith("jaegertracing/all-in-one:")
    assert images["otel-collector"].startswith("otel/opentelemetry-collector")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana:")
    assert SERVICES["worker"]["command"] == ["worker"]
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert SERVICES["api"]["command"] == ["api"]
    # The worker and the API share one Temporal cluster, which stores on the same PostgreSQL.
    assert SERVICES["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    assert environment(SERVICES["worker"])["TEMPORAL_ADDRESS"] == "temporal:7233"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_or_built_here(name: str) -> None:
    service = SERVICES[name]
    image = service.get("image", "")
    if is_interlock(service):
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert "${" not in image, f"{name}: the image must not depend on the environment"
    assert not image.endswith(":latest") and ":" in image, f"{name}: {image!r} is not pinned"
    assert PINNED_TAG.match(image) or DIGEST.match(image), f"{name}: {image!r} is not an exact version"


def test_the_dockerfile_base_is_pinned_small_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    bases = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    pinned = re.compile(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?")
    assert bases and all(pinned.fullmatch(b) for b in bases)
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert exec_form(dict(instructions)["ENTRYPOINT"]) == ["interlock"]


def interlock_commands() -> list[list[str]]:
    """Every `interlock ...` the image runs: its CMD, each service's command and health check."""
    commands = [exec_form(dict(dockerfile_instructions())["CMD"])]
    for service in SERVICES.values():
        if is_interlock(service) and "entrypoint" not in service:
            commands.append([str(c) for c in service["command"]])
            test = (service.get("healthcheck") or {}).get("test") or []
            if test[:2] == ["CMD", "interlock"]:
                commands.append([c for c in test[2:] if not c.startswith("--")])
    unique = {tuple(c): c for c in commands}
    return list(unique.values())


@pytest.mark.parametrize("command", interlock_commands(), ids=" ".join)
def test_each_command_the_image_runs_exists(command: list[str]) -> None:
    interlock = Path(sys.executable).parent / "interlock"
    done = subprocess.run([str(interlock), *command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "entrypoint" in s))
def test_each_module_an_entrypoint_runs_takes_its_arguments(name: str) -> None:
    entrypoint = [str(c) for c in SERVICES[name]["entrypoint"]]
    assert entrypoint[:2] == ["python", "-m"], f"{name}: only `python -m MODULE` is checked here"
    args = [str(c) for c in SERVICES[name].get("command") or []]
    # The module parses the service's own arguments (a typo in a flag fails here), then --help.
    done = subprocess.run(
        [sys.executable, "-m", entrypoint[2], *args, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert all(a.lstrip("-").split("=")[0] in done.stdout for a in args if a.startswith("--"))


def test_prometheus_scrapes_the_exporter_and_loads_the_rules_and_grafana_shows_the_dashboard() -> None:
    metrics = SERVICES["metrics"]
    port = metrics["command"][metrics["command"].index("--port") + 1]
    prometheus = SERVICES["prometheus"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = config["scrape_configs"]
    targets = [t for job in jobs for c in job.get("static_configs", []) for t in c["targets"]]
    assert f"metrics:{port}" in targets
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")}
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == "./deploy/prometheus/interlock-rules.yml"
    # One exporter of the store's figures: replicas would all export the same values.
    assert (metrics.get("deploy") or {}).get("replicas", 1) == 1
    grafana = SERVICES["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = ROOT / mounted["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "interlock.yml").read_text())
    dashboards = ROOT / mounted[provider["providers"][0]["options"]["path"]]
    assert (dashboards / "interlock.json").is_file()
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in prometheus["ports"]


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if is_interlock(s)))
def test_interlock_services_set_only_known_settings(name: str) -> None:
    env = environment(SERVICES[name])
    unknown = set(env) - KNOWN
    assert not unknown, f"{name} sets variables Interlock does not read: {sorted(unknown)}"
    # The values are valid too: loading them fails on a bad address, URL, level or number.
    values = {k: interpolate(v, DOTENV) for k, v in env.items()}
    volumes = [interpolate(str(v), DOTENV) for v in SERVICES[name].get("volumes") or []]
    mounted = {v.split(":")[1] for v in volumes if ":" in v}
    if "INTERLOCK_POLICY" in values:
        assert values.pop("INTERLOCK_POLICY") in mounted, f"{name}: the policy file is not mounted"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key in KNOWN:
                mp.delenv(key, raising=False)
            for key, value in values.items():
                mp.setenv(key, value)
            load(Settings)
            load(ApiSettings)
    except SettingsError as exc:
        pytest.fail(f"{name}: {exc}")


@pytest.mark.parametrize("name", sorted(n for n, s in long_running().items() if is_interlock(s)))
def test_long_running_interlock_services_set_every_required_setting(name: str) -> None:
    missing = REQUIRED - set(environment(SERVICES[name]))
    assert not missing, f"{name} does not set {sorted(missing)}"


def test_the_dockerfile_sets_only_known_settings() -> None:
    env = dockerfile_env()
    ours = {k for k in env if k.startswith(("INTERLOCK_", "TEMPORAL_", "OTEL_"))}
    assert ours <= KNOWN
    # The built-in playbooks are package data of the installed wheel: no path to set.
    assert "INTERLOCK_PLAYBOOKS" not in env
    copies = [rest for word, rest in dockerfile_instructions() if word == "COPY"]
    assert "playbooks ./playbooks" in copies


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"{name}.{key} is not a ${{VAR:?}}"
            if "://" in value and "@" in value:
                credentials = value.split("://", 1)[1].split("@", 1)[0]
                password = credentials.partition(":")[2]
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", password), f"{name}.{key} has a password"
    # Without the .env values compose refuses to start rather than using a default password.
    for service in SERVICES.values():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                with pytest.raises(KeyError):
                    interpolate(value, {})


def test_every_reference_is_documented_in_env_example() -> None:
    documented = EXAMPLE
    used = {m.group("name") for m in references(COMPOSE.read_text())}
    assert used <= set(documented), f"not in .env.example: {sorted(used - set(documented))}"
    for m in references(COMPOSE.read_text()):
        if (m.group("op") or "").endswith("?") and SECRET_NAME.search(m.group("name")):
            assert documented[m.group("name")] == "", f"{m.group('name')} must not ship with a value"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_host_ports_do_not_collide_and_stay_on_localhost() -> None:
    seen: dict[int, str] = {}
    for name, service in SERVICES.items():
        ports = published_ports(service)
        if ports:
            replicas = (service.get("deploy") or {}).get("replicas", 1)
            assert replicas == 1, f"{name}: its replicas would share a host port"
        for address, port in ports:
            assert port not in seen, f"{name} and {seen[port]} both publish {port}"
            assert address == "127.0.0.1", f"{name} publishes {port} on {address}"
            seen[port] = name


@pytest.mark.parametrize("name", sorted(long_running()))
def test_long_running_services_have_a_health_check(name: str) -> None:
    service = SERVICES[name]
    if service["image"].startswith(NO_SHELL_IMAGES):
        config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
        assert "health_check" in config["service"]["extensions"]
        return
    check = service.get("healthcheck") or {}
    assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_start_order_converges() -> None:
    """Every dependency exists, waits on something that can become true, and there is no cycle."""
    graph: dict[str, set[str]] = {}
    for name, service in SERVICES.items():
        deps = service.get("depends_on") or {}
        graph[name] = set(deps)
        for dep, spec in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep}, which has no health check"
            elif condition == "service_completed_successfully":
                assert is_one_shot(SERVICES[dep]), f"{name} waits for long-running {dep} to exit"
            else:
                assert condition == "service_started"
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"dependency cycle among {sorted(set(graph) - done)}"
        done |= ready
    # The Interlock processes start only once the audit role's rights are in place.
    for name in ("worker", "api"):
        grants_done = SERVICES[name]["depends_on"]["interlock-grants"]["condition"]
        assert grants_done == "service_completed_successfully"


def test_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes") or []:
            source = interpolate(str(volume), DOTENV).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_traces_flow_from_interlock_through_the_collector_to_jaeger() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert "otlp" in pipeline["receivers"]
    exporters = [config["exporters"][e]["endpoint"] for e in pipeline["exporters"]]
    assert any(e.startswith("jaeger:") for e in exporters)
    assert SERVICES["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name in ("worker", "api"):
        endpoint = environment(SERVICES[name])["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert (
            endpoint
            == f"http://otel-collector:{config['receivers']['otlp']['protocols']['http']['endpoint'].split(':')[-1]}"
        )


def grants(sql: str) -> list[str]:
    body = re.sub(r"--[^\n]*", "", sql)
    return [g.strip() for g in re.findall(r"\bGRANT\b[^;]*;", body, flags=re.IGNORECASE)]


def test_the_restricted_role_cannot_change_audit_rows() -> None:
    sql = (ROOT / "interlock" / "audit" / "roles.sql").read_text() + (
        ROOT / "deploy" / "postgres" / "grants.sql"
    ).read_text()
    on_audit = [g for g in grants(sql) if re.search(r"\baudit_events\b", g, flags=re.IGNORECASE)]
    assert on_audit, "roles.sql grants nothing on audit_events"
    for grant in on_audit:
        assert not re.search(r"\b(UPDATE|DELETE|TRUNCATE|ALL)\b", grant, flags=re.IGNORECASE), grant
    # And nothing broader that would cover it.
    assert not [g for g in grants(sql) if re.search(r"ALL\s+TABLES", g, flags=re.IGNORECASE)]
    assert "interlock/audit/roles.sql" in " ".join(SERVICES["interlock-grants"]["volumes"])


def test_the_production_docs_document_every_variable() -> None:
    # Generated from the settings models by scripts/docs_reference.py (kept current by its test).
    docs = (ROOT / "docs" / "reference" / "settings.md").read_text()
    missing = sorted(v for v in KNOWN if f"| `{v}` |" not in docs)
    assert not missing, f"the settings reference has no row for {missing}"
