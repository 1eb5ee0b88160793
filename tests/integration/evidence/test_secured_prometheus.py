"""A real Prometheus behind `--web.config.file`: TLS from a private CA and bcrypt basic auth,
and behind a bearer-token gateway (a test double: Prometheus itself has no bearer tokens).
The right CA and password confirm; a wrong password shows Prometheus' refusal; a CA the
client does not trust is a certificate error, asked once and not retried."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class AuthGateway:
    """TEST DOUBLE for the bearer-token gateway a team puts in front of Prometheus (oauth2-proxy,
    Mimir's gateway): Prometheus' own web config has no bearer tokens, so this stands in for
    that one piece. It checks `Authorization: Bearer` and the tenant header, then forwards the
    request to the real secured Prometheus (private CA, basic auth) and relays its answer."""

    TOKEN = "tok-gateway-4f1d"  # noqa: S105 - a test secret

    def __init__(self, upstream: SecuredPrometheus) -> None:
        self.seen_tenants: list[str | None] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                gateway.seen_tenants.append(self.headers.get("X-Scope-OrgID"))
                if self.headers.get("Authorization") != f"Bearer {gateway.TOKEN}":
                    self._reply(401, b"gateway: invalid bearer token\n", "text/plain")
                    return
                trust = ssl.create_default_context(cafile=str(upstream.ca_file))
                with httpx.Client(verify=trust, auth=(USER, PASSWORD)) as client:
                    answer = client.get(upstream.url + self.path, timeout=5)
                self._reply(answer.status_code, answer.content, answer.headers["content-type"])

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(secured: SecuredPrometheus) -> Iterator[AuthGateway]:
    found = AuthGateway(secured)
    yield found
    found.close()


async def test_a_bearer_token_and_tenant_reach_prometheus_through_its_gateway(
    gateway: AuthGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = SourceSpec.model_validate(
        {
            "kind": "prometheus",
            "url": gateway.url,
            "bearer_token": {"env": "TEST_GATEWAY_TOKEN"},
            "tenant": "team-a",
            "checks": {"high_error_ratio": {"query": 'error_ratio{service="$service"}', "above": 0.05}},
        }
    )
    monkeypatch.setenv("TEST_GATEWAY_TOKEN", AuthGateway.TOKEN)
    found = await ask(source)
    # The real Prometheus answered through the gateway: its sample, not the gateway's words.
    assert found.fetched and not found.supports, found.reason
    assert found.reason == 'error_ratio{service="inventory-api"} is 0 for inventory-api, not > 0.05'
    assert gateway.seen_tenants[-1] == "team-a"

    monkeypatch.setenv("TEST_GATEWAY_TOKEN", "not-" + AuthGateway.TOKEN)
    refused = await ask(source)
    assert not refused.fetched and "(HTTP 401)" in refused.reason, refused.reason
    assert "invalid bearer token" in refused.reason, refused.reason
    for record in (found, refused):
        assert AuthGateway.TOKEN not in record.model_dump_json()
