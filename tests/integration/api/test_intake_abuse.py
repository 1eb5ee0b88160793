"""The intake under abuse: a body nested too deeply to parse, and a storm of token guesses.

Both against the real uvicorn server; the guesses come from their own loopback address
(127.0.0.2), so the server sees two clients.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from interlock.api.settings import Rate
from interlock.settings import Settings
from tests.integration.api.support import RunningApi, intake_settings, proposal_doc, running_api
from tests.integration.api.test_intake import assert_error, post, started


@pytest.mark.parametrize("depth", [10_000, 30_000])
async def test_deeply_nested_json_is_422_not_500(api: RunningApi, client: Client, depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    doc = proposal_doc()
    inside = json.dumps(doc).encode()[:-1] + b', "extra": ' + nested + b"}"
    for body in (nested, inside):
        response = await post(api, body, api.token())
        details = assert_error(response, 422)["details"]
        assert details == ["(document): JSON nested too deeply to read"]
        assert response.json()["error"] == "the body is nested too deeply"
    assert not await started(client, doc["proposal_id"])
    # The intake is still there and accepts the next proposal.
    assert (await post(api, proposal_doc(), api.token())).status_code == 201


def _from(address: str) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(local_address=address)


async def test_failed_authentications_are_limited_per_address(
    settings: Settings, task_queue: str, tmp_path: Path, client: Client
) -> None:
    home = tmp_path / "home"
    async with running_api(intake_settings(settings, home, task_queue), auth_failures="5/3s") as api:
        valid = api.token()
        doc = proposal_doc()
        guesses = {"Authorization": "Bearer ilk_guessed-token-number-one"}
        async with httpx.AsyncClient(base_url=api.url, transport=_from("127.0.0.2"), timeout=30) as attacker:
            answers = [await attacker.post("/v1/proposals", json=doc, headers=guesses) for _ in range(8)]
            assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
            body = assert_error(answers[-1], 429)
            assert body["error"] == "too many failed authentications from this address (limit 5/3s)"
            wait = int(answers[-1].headers["Retry-After"])
            assert 1 <= wait <= 3
            # Once blocked, even a valid token from that address is turned away (a guess
            # must learn nothing) and reading is limited too.
            blocked = await attacker.post(
                "/v1/proposals", json=doc, headers={"Authorization": f"Bearer {valid}"}
            )
            assert_error(blocked, 429)
            assert_error(await attacker.get("/v1/proposals", headers=guesses), 429)

            # Meanwhile another client's valid token is unaffected.
            assert (await post(api, doc, valid)).status_code == 201

            # After Retry-After the address may try again.
            await asyncio.sleep(wait + 0.2)
            listed = await attacker.get("/v1/proposals", headers={"Authorization": f"Bearer {valid}"})
            assert listed.status_code == 200, listed.text
        assert await started(client, doc["proposal_id"])


async def test_successful_authentications_never_use_up_the_window(
    settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    async with running_api(intake_settings(settings, home, task_queue), auth_failures="2/minute") as api:
        headers = api.auth()
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            answers = [await http.get("/v1/proposals", headers=headers) for _ in range(10)]
        assert {a.status_code for a in answers} == {200}


def test_failure_window_counts_failures_per_key_and_forgets_them() -> None:
    from interlock.api.ratelimit import FailureWindow

    now = [0.0]
    window = FailureWindow(Rate(3, 10.0), clock=lambda: now[0])
    for _ in range(3):
        assert window.wait("10.0.0.1") == 0.0
        window.fail("10.0.0.1")
    assert window.wait("10.0.0.1") == pytest.approx(10.0)
    assert window.wait("10.0.0.2") == 0.0
    now[0] = 4.0
    assert window.wait("10.0.0.1") == pytest.approx(6.0)
    now[0] = 10.0
    assert window.wait("10.0.0.1") == 0.0
    # Memory is bounded: the oldest addresses are forgotten first.
    window.MAX_CLIENTS = 5
    for i in range(20):
        window.fail(f"10.1.0.{i}")
    assert len(window._failures) == 5
