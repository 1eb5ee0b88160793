"""The HTTP intake against a real uvicorn server and the real Temporal dev server.

Each refusal is checked for its status, its JSON error shape and that nothing was started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from interlock.api import ApiServeError, ApiSettings, create_app, serve
from interlock.settings import Settings
from tests.integration.api.support import (
    RunningApi,
    TcpRelay,
    free_port,
    intake_settings,
    proposal_doc,
    running_api,
)


async def post(api: RunningApi, doc: Any, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post(
            "/v1/proposals",
            content=content,
            headers={"Content-Type": "application/json", **headers},
        )


async def started(client: Client, proposal_id: str) -> bool:
    try:
        await client.get_workflow_handle(proposal_id).describe()
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "details"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert all(isinstance(line, str) for line in body["details"])
    return body


# --- Accepting -----------------------------------------------------------------------------


async def test_valid_proposal_starts_its_workflow(api: RunningApi, client: Client) -> None:
    doc = proposal_doc()

    response = await post(api, doc, api.token())

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["proposal_id"] == doc["proposal_id"]
    assert body["status"] == "submitted"
    assert body["created"] is True
    assert body["duplicate_of"] is None
    desc = await client.get_workflow_handle(doc["proposal_id"]).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert desc.task_queue == api.settings.task_queue
    assert desc.workflow_type == "RemediationWorkflow"


async def test_same_key_twice_starts_one_workflow_and_answers_identically(
    api: RunningApi, client: Client
) -> None:
    token = api.token()
    doc = proposal_doc()

    first = await post(api, doc, token, **{"Idempotency-Key": "retry-me"})
    # Re-serialised differently: the key and the proposal are what count, not the bytes.
    second = await post(api, json.dumps(doc, indent=2).encode(), token, **{"Idempotency-Key": "retry-me"})

    assert first.status_code == second.status_code == 201
    assert first.text == second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    runs = await eventually(lambda: count_runs(client, doc["proposal_id"]))
    assert runs == 1


async def test_concurrent_retries_with_one_key_get_one_answer(api: RunningApi, client: Client) -> None:
    token = api.token()
    doc = proposal_doc()

    answers = await asyncio.gather(*(post(api, doc, token, **{"Idempotency-Key": "burst"}) for _ in range(5)))

    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1
    assert await eventually(lambda: count_runs(client, doc["proposal_id"])) == 1


async def test_repeat_without_key_replays_and_other_key_sees_the_workflow(
    api: RunningApi, client: Client
) -> None:
    token = api.token()
    doc = proposal_doc()

    first = await post(api, doc, token)
    again = await post(api, doc, token)
    other_key = await post(api, doc, token, **{"Idempotency-Key": "another-key"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    # A different key reaches Temporal, which already runs this proposal: 200, not created.
    assert other_key.status_code == 200, other_key.text
    assert other_key.json()["created"] is False
    assert other_key.json()["proposal_id"] == doc["proposal_id"]
    assert await eventually(lambda: count_runs(client, doc["proposal_id"])) == 1


async def test_same_key_with_a_different_body_is_a_conflict(api: RunningApi, client: Client) -> None:
    token = api.token()
    first_doc, second_doc = proposal_doc(), proposal_doc()
    assert (await post(api, first_doc, token, **{"Idempotency-Key": "k-1"})).status_code == 201

    response = await post(api, second_doc, token, **{"Idempotency-Key": "k-1"})

    body = assert_error(response, 409)
    assert "k-1" in body["error"]
    assert not await started(client, second_doc["proposal_id"])


async def test_same_proposal_id_with_a_different_body_is_a_conflict(api: RunningApi) -> None:
    token = api.token()
    doc = proposal_doc()
    assert (await post(api, doc, token)).status_code == 201
    changed = {**doc, "confidence": 0.5}

    by_default_key = await post(api, changed, token)
    by_new_key = await post(api, changed, token, **{"Idempotency-Key": "fresh"})

    assert "proposal_id" in assert_error(by_default_key, 409)["error"]
    # The stored answers differ per key, but Temporal still refuses a second body for the id.
    assert doc["proposal_id"] in assert_error(by_new_key, 409)["error"]


# --- Who is calling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ilk_not-a-real-token-at-all", "Bearer nonsense", "Basic dXNlcjpwYXNz"],
    ids=["no token", "unknown token", "malformed token", "wrong scheme"],
)
async def test_without_a_valid_token_is_401(
    api: RunningApi, client: Client, authorization: str | None
) -> None:
    doc = proposal_doc()
    headers = {"Authorization": authorization} if authorization else {}

    response = await post(api, doc, None, **headers)

    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not await started(client, doc["proposal_id"])


async def test_revoked_token_is_401(api: RunningApi, client: Client) -> None:
    token = api.token()
    assert (await post(api, proposal_doc(), token)).status_code == 201
    assert api.tokens.revoke(token)
    doc = proposal_doc()

    response = await post(api, doc, token)

    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not await started(client, doc["proposal_id"])


async def test_a_token_cannot_speak_for_another_recommender(api: RunningApi, client: Client) -> None:
    doc = proposal_doc(recommender="deploy-bot")

    response = await post(api, doc, api.token("triage-bot"))

    body = assert_error(response, 403)
    assert "triage-bot" in body["error"] and "deploy-bot" in body["error"]
    assert not await started(client, doc["proposal_id"])


async def test_a_recommender_reads_only_its_own_proposals(api: RunningApi) -> None:
    doc = proposal_doc(recommender="triage-bot")
    assert (await post(api, doc, api.token("triage-bot"))).status_code == 201

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        other = await http.get(f"/v1/proposals/{doc['proposal_id']}", headers=api.auth("deploy-bot"))
        missing = await http.get("/v1/proposals/prop-does-not-exist", headers=api.auth())

    assert_error(other, 403)
    assert_error(missing, 404)


# --- What is refused -----------------------------------------------------------------------


async def test_every_invalid_field_is_listed(api: RunningApi, client: Client) -> None:
    doc = proposal_doc()
    doc["confidence"] = 1.5
    doc["priority"] = "urgent"
    del doc["rationale"]
    doc["target"]["environment"] = "lab; rm -rf /"
    doc["evidence"][0]["observed_at"] = "yesterday"

    response = await post(api, doc, api.token())

    details = assert_error(response, 422)["details"]
    fields = {line.split(":", 1)[0] for line in details}
    assert {"confidence", "priority", "rationale", "target.environment"} <= fields, details
    assert any(f.startswith("evidence.0.observed_at") for f in fields), details
    assert not await started(client, doc["proposal_id"])


async def test_policy_refusals_are_listed_like_the_cli(api: RunningApi, client: Client) -> None:
    doc = proposal_doc(action="rollback_deployment")
    doc["target"]["service"] = "billing-api"
    doc["parameters"] = {"release": "v9", "force": "yes"}

    response = await post(api, doc, api.token())

    fields = {line.split(":", 1)[0] for line in assert_error(response, 422)["details"]}
    assert {"target.service", "parameters.release", "parameters.force"} <= fields
    assert not await started(client, doc["proposal_id"])


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b"null"], ids=repr)
async def test_a_body_that_is_not_a_proposal_document_is_422(api: RunningApi, body: bytes) -> None:
    details = assert_error(await post(api, body, api.token()), 422)["details"]
    assert details and details[0].startswith("(document)")


async def test_an_oversized_body_is_413_by_length_and_by_stream(
    settings: Settings, task_queue: str, tmp_path: Path, client: Client
) -> None:
    doc = proposal_doc()
    doc["evidence"][0]["summary"] = "x" * 1900
    doc["rationale"] = "r" * 3900
    body = json.dumps(doc).encode()
    assert len(body) > 4096

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: only counting what arrives can catch this one.
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    home = tmp_path / "home"
    async with running_api(intake_settings(settings, home, task_queue), max_body=4096) as api:
        headers = api.auth()
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            declared = await http.post("/v1/proposals", content=body, headers=headers)
            streamed = await http.post("/v1/proposals", content=chunks(), headers=headers)

    assert_error(declared, 413)
    assert_error(streamed, 413)
    assert "transfer-encoding" not in declared.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert not await started(client, doc["proposal_id"])


async def test_over_the_rate_is_429_then_accepted_after_retry_after(
    settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    # 2 per 4 s: slow enough refill that three quick posts on a busy machine still hit the limit.
    async with running_api(intake_settings(settings, home, task_queue), rate="2/4s") as api:
        token = api.token()
        answers = [await post(api, proposal_doc(), token) for _ in range(3)]
        # Buckets are per recommender: another one is not slowed down.
        other = await post(api, proposal_doc(recommender="deploy-bot"), api.token("deploy-bot"))

        assert [a.status_code for a in answers[:2]] == [201, 201]
        assert_error(answers[2], 429)
        assert other.status_code == 201
        wait = int(answers[2].headers["Retry-After"])
        assert 1 <= wait <= 2
        await asyncio.sleep(wait)
        assert (await post(api, proposal_doc(), token)).status_code == 201


async def test_503_while_temporal_is_down_then_accepted_once_it_is_up(
    settings: Settings, task_queue: str, tmp_path: Path, client: Client
) -> None:
    port = free_port()  # nothing listens here until the relay starts
    down = intake_settings(settings, tmp_path / "home", task_queue, temporal_address=f"127.0.0.1:{port}")
    relay = TcpRelay(port, settings.temporal_address)
    doc = proposal_doc()
    async with running_api(down) as api:
        token = api.token()

        refused = await post(api, doc, token)

        body = assert_error(refused, 503)
        assert "nothing was started" in body["error"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert not await started(client, doc["proposal_id"])

        await relay.start()
        try:
            accepted = await post(api, doc, token)
        finally:
            await relay.stop()

    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["created"] is True
    assert await started(client, doc["proposal_id"])


# --- Reading -------------------------------------------------------------------------------


async def test_read_and_list_own_proposals(worker_api: RunningApi) -> None:
    api = worker_api
    mine, theirs = proposal_doc(), proposal_doc(recommender="deploy-bot")
    token = api.token()
    assert (await post(api, mine, token)).status_code == 201
    assert (await post(api, theirs, api.token("deploy-bot"))).status_code == 201

    async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=api.auth()) as http:
        state = await eventually(lambda: settled(http, mine["proposal_id"]), timeout=120)
        listed = await eventually(lambda: listed_ids(http, "awaiting_approval"), timeout=30)
        bad_status = await http.get("/v1/proposals", params={"status": "approved-ish"})

    assert state["proposal_id"] == mine["proposal_id"]
    assert state["status"] == "awaiting_approval"
    assert state["risk"]["tier"] in {"low", "medium", "high", "critical"}
    assert state["evidence"]["ok"] is True
    assert state["decisions"] == []
    assert set(state) == {
        "proposal_id",
        "status",
        "risk",
        "decisions",
        "reasons",
        "evidence",
        "duplicate_count",
        "duplicates",
    }
    assert (state["duplicate_count"], state["duplicates"]) == (0, [])
    assert mine["proposal_id"] in listed
    assert theirs["proposal_id"] not in listed
    assert "status" in assert_error(bad_status, 422)["details"][0]


# --- What the API is -----------------------------------------------------------------------


FORBIDDEN_WORDS = ("approve", "reject", "pause", "resume", "decide", "signal", "update", "cancel")


def test_route_table_has_no_decision_routes(settings: Settings, tmp_path: Path) -> None:
    app = create_app(intake_settings(settings, tmp_path / "home", "unused"))
    routes = {
        (method, route.path)
        for route in app.routes
        for method in (getattr(route, "methods", None) or ())
        if route.path.startswith("/v1") or route.path == "/healthz"
    }

    assert routes == {
        ("POST", "/v1/proposals"),
        ("GET", "/v1/proposals"),
        ("GET", "/v1/proposals/{proposal_id}"),
        ("GET", "/healthz"),
    }
    for route in app.routes:
        assert not any(word in route.path.lower() for word in FORBIDDEN_WORDS), route.path


async def test_decision_paths_do_not_exist(api: RunningApi) -> None:
    doc = proposal_doc()
    token = api.token()
    assert (await post(api, doc, token)).status_code == 201
    async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=api.auth()) as http:
        for word in ("approve", "reject", "pause"):
            for method in ("POST", "PUT", "PATCH"):
                response = await http.request(
                    method, f"/v1/proposals/{doc['proposal_id']}/{word}", json={"approver": "alice"}
                )
                assert response.status_code in (404, 405), (method, word)
        # Nor may a recommender change its proposal through the collection.
        for method in ("PUT", "PATCH", "DELETE"):
            response = await http.request(method, f"/v1/proposals/{doc['proposal_id']}")
            assert_error(response, 405)


async def test_openapi_documents_the_intake(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        schema = (await http.get("/openapi.json")).json()

    assert set(schema["paths"]) == {"/v1/proposals", "/v1/proposals/{proposal_id}", "/healthz"}
    components = schema["components"]
    assert components["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": components["securitySchemes"]["bearer"]["description"],
    }
    proposal = components["schemas"]["Proposal"]
    assert proposal["examples"][0]["action"] == "restart_service"
    assert set(proposal["required"]) >= {"proposal_id", "recommender", "action", "evidence"}
    post_op = schema["paths"]["/v1/proposals"]["post"]
    body = post_op["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Proposal"}
    assert body["example"]["recommender"] == "triage-bot"
    assert {"200", "201", "202", "401", "403", "409", "413", "422", "429", "503"} <= set(post_op["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post_op["parameters"])
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1"):
                assert operation["security"] == [{"bearer": []}]
                for code, response in operation["responses"].items():
                    if code.startswith("4") or code.startswith("5"):
                        assert response["content"]["application/json"]["schema"] == error_ref
    assert set(components["schemas"]["ErrorBody"]["properties"]) == {"error", "details"}


async def test_healthz_needs_no_token(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- helpers ---------------------------------------------------------------------------------


async def eventually(probe: Any, timeout: float = 20.0, interval: float = 0.25) -> Any:
    """The first truthy result of `probe()`: visibility and the workflow catch up over time."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{probe} still falsy after {timeout}s")
        await asyncio.sleep(interval)


async def count_runs(client: Client, workflow_id: str) -> int:
    return len([wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


async def settled(http: httpx.AsyncClient, proposal_id: str) -> dict[str, Any] | None:
    response = await http.get(f"/v1/proposals/{proposal_id}")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state if state["status"] not in ("submitted", "checking", "previewing") else None


async def listed_ids(http: httpx.AsyncClient, status: str) -> set[str] | None:
    response = await http.get("/v1/proposals", params={"status": status})
    assert response.status_code == 200, response.text
    return {p["proposal_id"] for p in response.json()["proposals"]} or None


async def test_serve_reports_a_taken_port_instead_of_exiting(
    settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api_settings = ApiSettings(host="127.0.0.1", port=port)
        with pytest.raises(ApiServeError, match=str(port)):
            await serve(intake_settings(settings, home, task_queue), api_settings)


async def test_api_command_serves_until_sigterm_then_drains(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import typer\n"
        "from interlock.api import api_command\n"
        "app = typer.Typer()\n"
        "app.command('api')(api_command)\n"
        "app.command('other')(lambda: None)\n"
        "app()\n"
    )
    env = {
        **os.environ,
        "INTERLOCK_HOME": str(tmp_path / "home"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "INTERLOCK_LOG_LEVEL": "INFO",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        "api",
        "--api-port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            # Generous: on a loaded machine importing the MCP SDK alone takes many seconds.
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline or proc.returncode is not None:
                    pytest.fail("`api` did not start")
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()
    assert b"intake stopped" in output
