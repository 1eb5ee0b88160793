"""A real Prometheus behind `--web.config.file`: TLS from a private CA and bcrypt basic auth.
The right CA and password confirm; a wrong password shows Prometheus' refusal; a CA the
client does not trust is a certificate error, asked once and not retried."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.evidence.credentials import client_for, tls_settings
from interlock.lab import Lab
from interlock.sources import SourceSpec
from tests.integration.evidence.secured import PASSWORD, USER, SecuredPrometheus, secured_prometheus
from tests.integration.evidence.support import claim

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def secured(monitored_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    port = int(monitored_lab.config["monitor_port"])
    with secured_prometheus(tmp_path_factory.mktemp("secured"), f"127.0.0.1:{port}") as found:
        yield found


def spec(secured: SecuredPrometheus, **changes: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "prometheus",
            "url": secured.url,
            "ca_file": str(secured.ca_file),
            "basic_auth": {"username": USER, "password": {"env": "TEST_SECURED_PASSWORD"}},
            "checks": {"high_error_ratio": {"query": 'error_ratio{service="$service"}', "above": 0.05}},
            **changes,
        }
    )


async def ask(source: SourceSpec, **kw: Any) -> Any:
    # The client the checks activity would build for this source: its CA, no proxy.
    async with client_for(tls_settings(source)) as http:
        return await claim(http, "prometheus", "", "high_error_ratio", "inventory-api", spec=source, **kw)


async def test_basic_auth_over_a_private_ca(
    secured: SecuredPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SECURED_PASSWORD", PASSWORD)
    found = await ask(spec(secured))
    # Healthy inventory-api: fetched, the claim not supported, and no secret in the record.
    assert found.fetched and not found.supports, found.reason
    assert found.reason == 'error_ratio{service="inventory-api"} is 0 for inventory-api, not > 0.05'
    assert PASSWORD not in found.model_dump_json()


async def test_a_wrong_password_shows_the_servers_refusal(
    secured: SecuredPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SECURED_PASSWORD", "not-" + PASSWORD)
    found = await ask(spec(secured))
    assert not found.fetched and not found.supports, found.reason
    assert "(HTTP 401)" in found.reason and "Unauthorized" in found.reason, found.reason
    assert PASSWORD not in found.model_dump_json()


async def test_prometheus_has_no_bearer_tokens(
    secured: SecuredPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its web config knows only basic auth: a token (meant for a proxy or Mimir's gateway in
    front) is refused, and the refusal carries no token."""
    monkeypatch.setenv("TEST_SECURED_TOKEN", "tok-secured-77e1")
    source = spec(secured, basic_auth=None, bearer_token={"env": "TEST_SECURED_TOKEN"})
    found = await ask(source)
    assert not found.fetched and "(HTTP 401)" in found.reason, found.reason
    assert "tok-secured-77e1" not in found.model_dump_json()


async def test_an_untrusted_certificate_is_not_retried(
    secured: SecuredPrometheus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEST_SECURED_PASSWORD", PASSWORD)
    # The system's CAs do not know the private CA.
    found = await ask(spec(secured, ca_file=None), retries=3)
    assert not found.fetched
    assert found.reason.startswith(f"certificate error from {secured.url}: "), found.reason
    assert "certificate verify failed" in found.reason or "unable to get local issuer" in found.reason
    assert found.attempts == 1
    with httpx.Client(verify=ssl.create_default_context(cafile=str(secured.ca_file))) as plain:
        # Not a fluke of the server: with the CA and without credentials it answers 401.
        assert plain.get(f"{secured.url}/api/v1/query", params={"query": "up"}).status_code == 401
