"""Sources with credentials: read from the environment or a file, sent to the source, and
never written into a policy, an evidence record, the checks' assessment or the logs."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from interlock.activities.checks import ProposalChecks
from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.policy import PolicyError, default_policy_text, load_policy, parse_policy
from interlock.proposals import parse_proposal
from interlock.settings import Settings
from interlock.sources import SourceSpec
from tests.integration.evidence.support import LateServer, claim, free_port

TOKEN = "tok-8f2e4c1d9a"  # noqa: S105 - a test secret, searched for in every record
PASSWORD = "pw-77c1b0e3"  # noqa: S105
HEADER_SECRET = "hdr-5a9d0f"  # noqa: S105


def header_checking_source() -> type[BaseHTTPRequestHandler]:
    """A real Prometheus-shaped source that answers only with the right credentials, and
    quotes what it was sent when refusing (as some proxies do)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            sent = {k: v for k, v in self.headers.items()}
            ok = (
                self.headers.get("Authorization") == f"Bearer {TOKEN}"
                and self.headers.get("X-Scope-OrgID") == "team-a"
                and self.headers.get("X-Api-Key") == HEADER_SECRET
            )
            if ok:
                status, body = (
                    200,
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {"app": "checkout-api"}, "value": [1700000000, "0.3"]}],
                        },
                    },
                )
            else:
                status, body = 401, {"status": "error", "error": f"unauthorized: got {sent}"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def secrets_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("TEST_PROM_TOKEN", TOKEN)
    key_file = tmp_path / "api-key"
    key_file.write_text(HEADER_SECRET + "\n")
    server = LateServer(free_port(), header_checking_source())
    server.serve_now()
    spec = {
        "kind": "prometheus",
        "url": f"http://127.0.0.1:{server.port}",
        "service_label": "app",
        "bearer_token": {"env": "TEST_PROM_TOKEN"},
        "tenant": "team-a",
        "headers": {"X-Api-Key": {"file": str(key_file)}},
        "checks": {"high_error_ratio": {"query": 'errors{app="$service"}', "above": 0.05}},
    }
    try:
        yield spec
    finally:
        server.close()


def assert_no_secret(text: str) -> None:
    for secret in (TOKEN, PASSWORD, HEADER_SECRET):
        assert secret not in text


async def test_credentials_reach_the_source_and_no_record(
    http: httpx.AsyncClient, secrets_source: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = SourceSpec.model_validate(secrets_source)
    found = await claim(http, "prometheus", "", "high_error_ratio", spec=spec)
    assert found.fetched and found.supports, found.reason
    assert_no_secret(found.model_dump_json())

    # Without the header the source refuses, quoting what it got: the record is scrubbed.
    spec = SourceSpec.model_validate({**secrets_source, "headers": {}})
    refused = await claim(http, "prometheus", "", "high_error_ratio", spec=spec)
    assert not refused.supports
    assert "(HTTP 401): unauthorized" in refused.reason and "[redacted]" in refused.reason
    assert_no_secret(refused.model_dump_json())
    assert_no_secret(caplog.text)


async def test_a_missing_secret_is_refused_naming_where_it_was_looked_for(
    http: httpx.AsyncClient, secrets_source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_PROM_TOKEN")
    spec = SourceSpec.model_validate(secrets_source)
    found = await claim(http, "prometheus", "", "high_error_ratio", spec=spec)
    assert not found.fetched
    assert found.reason == (
        "cannot ask source lab-prometheus: environment variable TEST_PROM_TOKEN is not set"
    )


def test_a_policy_never_holds_a_secret() -> None:
    base = yaml.safe_load(default_policy_text())
    cases = {
        "http://user:hunter2@prometheus:9090": "carries credentials: use basic_auth",
    }
    for url, problem in cases.items():
        doc = json.loads(json.dumps(base))
        doc["sources"]["lab-prometheus"]["url"] = url
        with pytest.raises(PolicyError) as err:
            parse_policy(yaml.safe_dump(doc))
        assert problem in str(err.value)
        assert "hunter2" not in str(err.value)
    doc = json.loads(json.dumps(base))
    doc["sources"]["lab-prometheus"]["bearer_token"] = "literal-token"
    with pytest.raises(PolicyError) as err:
        parse_policy(yaml.safe_dump(doc))
    assert "a secret is never written in the policy: use {env: VARIABLE} or {file: PATH}" in str(err.value)


async def test_the_checks_assessment_carries_no_credential(
    healthy_lab: Lab, tmp_path: Path, secrets_source: dict[str, Any]
) -> None:
    # The assessment is what lands in Temporal history and the audit trail.
    policy = yaml.safe_load(default_policy_text())
    policy["sources"]["vault-prometheus"] = secrets_source
    policy["actions"]["restart_service"]["evidence_sources"]["vault-prometheus"] = {"max_age": "30m"}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    assert_no_secret(path.read_text())
    settings = Settings(home=tmp_path / "home", lab_root=healthy_lab.root, policy_file=path)
    doc = example_proposal("restart_service")
    stamp = doc["evidence"][0]["observed_at"]
    doc["evidence"] = [{"source": "vault-prometheus", "ref": "high_error_ratio", "observed_at": stamp}]
    proposal = parse_proposal(doc, load_policy(path))
    checks = ProposalChecks(settings)
    try:
        found = await ActivityEnvironment().run(checks.check_proposal, proposal)
    finally:
        await checks.aclose()
    assert found.evidence is not None and found.evidence.items[0].ok, found.reasons
    assert_no_secret(found.model_dump_json())
