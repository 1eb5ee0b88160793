"""Configuration: a wrong setting stops the command at start with the variable's name and the
reason (one line, exit 2); `interlock config show` prints the effective settings, secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli import app
from interlock.settings import Settings, env_name

CLEAN = {env_name(Settings, f): "" for f in Settings.model_fields}


def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    # Unset every Interlock variable of this process first, so only `env` counts.
    base = {k: v for k, v in os.environ.items() if k not in CLEAN}
    runner = CliRunner()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(base | env)
    try:
        result = runner.invoke(app, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("TEMPORAL_ADDRESS", "temporal.example.com", "is not host:port"),
        ("TEMPORAL_ADDRESS", "temporal:99999", "out of range"),
        ("TEMPORAL_TLS_CERT", "/nonexistent/client.pem", "does not exist"),
        ("TEMPORAL_TLS_CA", "/nonexistent/ca.pem", "does not exist"),
        ("INTERLOCK_POLICY", "/nonexistent/policy.yaml", "does not exist"),
        ("INTERLOCK_PLAYBOOK_TIMEOUT", "-5", "greater than 0"),
        ("INTERLOCK_SHUTDOWN_GRACE", "-1", "greater than or equal to 0"),
        ("INTERLOCK_MAX_CONCURRENT_PLAYBOOKS", "0", "greater than 0"),
        ("INTERLOCK_MAX_CONCURRENT_PLAYBOOKS", "many", "valid integer"),
        ("INTERLOCK_HISTORY_EVENT_LIMIT", "20000", "less than 10240"),
        ("INTERLOCK_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO"),
        ("INTERLOCK_DATABASE_URL", "mysql://u:secret-pw@db/x", "unsupported database 'mysql'"),
        ("INTERLOCK_DATABASE_URL", "not a url", "not a database URL"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318", "is not an http(s) URL"),
        ("INTERLOCK_SERVICE_MANAGER", "docker", "must be 'lab' or 'systemd'"),
        ("INTERLOCK_PLAYBOOKS", "/tmp", "has no project/ folder"),
        ("INTERLOCK_API_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_a_wrong_setting_fails_at_start_naming_the_variable(variable: str, value: str, reason: str) -> None:
    code, out, err = run(["config", "show"], {variable: value})
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: invalid setting: ")
    assert f"{variable}: " in lines[0] and reason in lines[0], lines[0]
    assert "secret-pw" not in err


def test_the_worker_refuses_to_start_on_a_wrong_setting() -> None:
    # The same check guards `interlock worker`: it stops before connecting to anything.
    code, _, err = run(["worker"], {"TEMPORAL_ADDRESS": "temporal"})
    assert code == 2
    assert err.strip() == (
        "error: invalid setting: TEMPORAL_ADDRESS: 'temporal' is not host:port (e.g. temporal:7233)"
    )


def test_tls_certificate_and_key_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("cert")
    code, _, err = run(["config", "show"], {"TEMPORAL_TLS_CERT": str(cert)})
    assert code == 2
    assert "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together" in err


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\ncert-body\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nkey-material-never-shown\n")
    env = {
        "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
        "TEMPORAL_NAMESPACE": "ns.acct",
        "TEMPORAL_API_KEY": "api-key-never-shown",
        "TEMPORAL_TLS_CERT": str(cert),
        "TEMPORAL_TLS_KEY": str(key),
        "INTERLOCK_DATABASE_URL": "postgresql+psycopg://interlock_app:db-pw-never-shown@db:5432/interlock",
        "INTERLOCK_LOG_LEVEL": "debug",
    }
    code, out, err = run(["config", "show", "--json"], env)
    assert code == 0, err
    rows = {r["variable"]: r for r in json.loads(out)}
    assert rows["TEMPORAL_API_KEY"]["value"] == "****"
    assert rows["TEMPORAL_TLS_KEY"]["value"] == str(key)
    assert (
        rows["INTERLOCK_DATABASE_URL"]["value"] == "postgresql+psycopg://interlock_app:***@db:5432/interlock"
    )
    assert rows["TEMPORAL_ADDRESS"] == {
        "variable": "TEMPORAL_ADDRESS",
        "value": "ns.acct.tmprl.cloud:7233",
        "source": "environment",
        "description": "Temporal frontend, host:port.",
    }
    assert rows["INTERLOCK_LOG_LEVEL"]["value"] == "DEBUG"
    assert rows["INTERLOCK_TASK_QUEUE"]["source"] == "default"
    # Every variable the settings models read is listed.
    assert {env_name(Settings, f) for f in Settings.model_fields} <= set(rows)
    assert "INTERLOCK_API_PORT" in rows

    code, table, _ = run(["config", "show"], env)
    assert code == 0
    for secret in ("api-key-never-shown", "db-pw-never-shown", "key-material-never-shown", "cert-body"):
        assert secret not in out and secret not in table


def test_the_state_folder_is_not_read_from_home() -> None:
    # `home` is a field name; only INTERLOCK_HOME sets it, never $HOME.
    code, out, _ = run(["config", "show", "--json"], {"HOME": "/somewhere/else"})
    assert code == 0
    rows = {r["variable"]: r for r in json.loads(out)}
    assert rows["INTERLOCK_HOME"]["value"] == ".interlock"
