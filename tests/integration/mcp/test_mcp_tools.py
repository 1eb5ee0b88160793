"""The MCP server through the official MCP client, over streamable HTTP and over stdio.

Against the real intake (uvicorn, `/mcp`) and the real dev server; no worker here, so started
workflows stay `submitted` (see test_mcp_lifecycle.py for the path to `completed`).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from temporalio.client import Client as TemporalClient

from interlock.mcp.agent import connect_http
from interlock.models import RemediationInput
from tests.conftest import cli_env
from tests.integration.api.support import RunningApi, proposal_doc
from tests.integration.mcp.support import answer, http_session, stdio_session, text
from tests.support import new_id

Session = Callable[[RunningApi, str], AbstractAsyncContextManager[Client]]
TOOLS = {"list_actions", "propose_remediation", "get_proposal", "wait_for_outcome", "list_my_proposals"}
DECISION_WORDS = ("approve", "reject", "pause", "resume", "decide", "signal", "update", "cancel", "sign")


@pytest.fixture(params=["http", "stdio"])
def session(request: pytest.FixtureRequest) -> Session:
    return http_session if request.param == "http" else stdio_session


def doc_for(recommender: str, action: str = "restart_service", **kw: Any) -> dict[str, Any]:
    """An example proposal as an agent sends it: without `recommender` (its token says who)."""
    doc = proposal_doc(recommender, action, **kw)
    del doc["recommender"]
    return doc


async def workflow_input(client: TemporalClient, proposal_id: str) -> RemediationInput:
    history = await client.get_workflow_handle(proposal_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (payload,) = started.input.payloads
    value = client.data_converter.payload_converter.from_payload(payload, RemediationInput)
    assert isinstance(value, RemediationInput)
    return value


async def test_the_tools_are_five_and_none_decides(mcp_api: RunningApi, session: Session) -> None:
    async with session(mcp_api, "narrow-agent") as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        refused = await asyncio.gather(
            *(mcp.call_tool(word, {"proposal_id": "x"}) for word in ("approve", "reject", "pause", "resume")),
            return_exceptions=True,
        )

    assert set(tools) == TOOLS
    assert not [name for name in tools for word in DECISION_WORDS if word in name]
    assert all(isinstance(r, MCPError) and "unknown tool" in r.message for r in refused), refused
    propose = tools["propose_remediation"]
    # The intake's Proposal schema, minus the identity the token gives.
    assert "recommender" not in propose.input_schema["properties"]
    assert {"proposal_id", "action", "target", "evidence"} <= set(propose.input_schema["required"])
    assert "a person approves" in (propose.description or "")
    assert "from its source" in (propose.description or "")
    assert propose.annotations is not None and propose.annotations.destructive_hint is False
    for name in TOOLS - {"propose_remediation"}:
        assert tools[name].annotations is not None and tools[name].annotations.read_only_hint


def test_no_code_path_in_the_mcp_package_reaches_a_decision() -> None:
    """Besides the tool list: nothing in the package can send an Update or a Signal."""
    package = Path(__file__).parents[3] / "interlock" / "mcp"
    source = "\n".join(p.read_text() for p in sorted(package.glob("*.py")))
    for needle in ("execute_update", "start_update", ".signal(", "decide(", "broadcast(", "DecisionInput"):
        assert needle not in source, needle


async def test_list_actions_is_scoped_by_the_token(mcp_api: RunningApi, session: Session) -> None:
    async with session(mcp_api, "narrow-agent") as mcp:
        narrow = answer(await mcp.call_tool("list_actions", {}))
    async with http_session(mcp_api, "wide-agent") as mcp:
        wide = answer(await mcp.call_tool("list_actions", {}))

    assert narrow["recommender"] == "narrow-agent" and narrow["may_propose"] is True
    assert [a["name"] for a in narrow["actions"]] == ["restart_service"]
    assert [s["name"] for s in narrow["services"]] == ["checkout-api"]
    assert narrow["environments"] == ["lab"] and narrow["hosts"] == {"lab": ["localhost"]}
    assert narrow["max_tier"] == "medium"
    restart = narrow["actions"][0]
    assert "restart_service.yml" in restart["effect"] and "rollback" in restart["effect"]
    sources = {s["source"]: s for s in restart["evidence_sources"]}
    assert set(sources) == {"lab-monitor", "lab-alertmanager", "lab-prometheus"}
    assert sources["lab-monitor"]["ref_format"] == "<service>/health"
    assert sources["lab-monitor"]["max_age_seconds"] == 1800
    assert any("person decides" in n for n in narrow["notes"])

    assert [a["name"] for a in wide["actions"]] == ["restart_service", "rollback_deployment"]
    rollback = wide["actions"][1]
    assert rollback["parameters"] == [
        {
            "name": "release",
            "allowed": ["v0", "v1", "v2"],
            "description": "Release to point `current` at.",
            "required": True,
        }
    ]
    assert {s["name"] for s in wide["services"]} == {
        "checkout-api",
        "inventory-api",
        "storefront",
        "mobile-bff",
    }


async def test_a_token_without_scope_gets_nothing(mcp_api: RunningApi, session: Session) -> None:
    async with session(mcp_api, "unscoped-agent") as mcp:
        catalog = answer(await mcp.call_tool("list_actions", {}))
        refused = await mcp.call_tool("propose_remediation", doc_for("unscoped-agent"))
        mine = answer(await mcp.call_tool("list_my_proposals", {}))

    assert catalog["may_propose"] is False
    assert catalog["actions"] == [] and catalog["services"] == [] and catalog["hosts"] == {}
    assert refused.is_error
    assert "recommender: 'unscoped-agent' has no scope in the policy" in text(refused)
    # The attempt is on record (its checks refuse it with a security event), and it is its own.
    assert "security event" in text(refused)
    assert {p["recommender"] for p in mine["proposals"]} == {"unscoped-agent"}


async def test_propose_starts_the_workflow_with_channel_mcp(
    mcp_api: RunningApi, client: TemporalClient, session: Session
) -> None:
    doc = doc_for("narrow-agent")

    async with session(mcp_api, "narrow-agent") as mcp:
        first = answer(await mcp.call_tool("propose_remediation", doc))
        again = answer(await mcp.call_tool("propose_remediation", doc))
        changed = await mcp.call_tool("propose_remediation", doc | {"confidence": 0.5})

    pid = doc["proposal_id"]
    assert first["proposal_id"] == pid and first["created"] is True and first["status"] == "submitted"
    assert first["follow_id"] == pid and "wait_for_outcome" in first["next_step"]
    # The same call again gets the first answer again (idempotent); another body under its id
    # is refused.
    assert again == first | {"replayed": True}
    assert changed.is_error and "proposal_id" in text(changed) and "(409)" in text(changed)
    inp = await workflow_input(client, pid)
    assert inp.channel == "mcp"
    assert inp.proposal.recommender == "narrow-agent"  # from the token


@pytest.mark.parametrize(
    ("recommender", "change", "expected"),
    [
        (
            "wide-agent",
            {"action": "rollback_deployment", "parameters": {"release": "v9"}},
            "parameters.release: 'v9' is not allowed (allowed: v0, v1, v2)",
        ),
        ("narrow-agent", {"confidence": 7}, "confidence: Input should be less than or equal to 1"),
        ("narrow-agent", {"surprise": True}, "surprise: unknown field"),
        (
            "narrow-agent",
            {"target": {"service": "billing", "environment": "lab"}},
            "target.service: 'billing' is not a service in the catalog",
        ),
        ("narrow-agent", {"recommender": "wide-agent"}, "recommender: 'wide-agent' does not match"),
    ],
    ids=["bad-parameter", "bad-confidence", "unknown-field", "unknown-service", "impersonation"],
)
async def test_a_refused_proposal_is_a_tool_error_naming_the_field(
    mcp_api: RunningApi, client: TemporalClient, recommender: str, change: dict[str, Any], expected: str
) -> None:
    doc = doc_for(recommender) | change

    async with http_session(mcp_api, recommender) as mcp:
        result = await mcp.call_tool("propose_remediation", doc)

    assert result.is_error
    assert expected in text(result), text(result)
    assert result.structured_content is not None and result.structured_content["details"]
    handle = client.get_workflow_handle(doc["proposal_id"])
    with pytest.raises(Exception, match="not found"):
        await handle.describe()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"action": "rollback_deployment", "parameters": {"release": "v1"}},
            "scope: narrow-agent may not propose rollback_deployment",
        ),
        (
            {"target": {"service": "inventory-api", "environment": "lab"}},
            "scope: narrow-agent may not propose changes to inventory-api",
        ),
    ],
    ids=["action", "service"],
)
async def test_a_proposal_outside_the_scope_is_refused_and_recorded(
    mcp_api: RunningApi, client: TemporalClient, change: dict[str, Any], expected: str
) -> None:
    doc = doc_for("narrow-agent") | change

    async with http_session(mcp_api, "narrow-agent") as mcp:
        result = await mcp.call_tool("propose_remediation", doc)

    assert result.is_error and "(403)" in text(result)
    assert expected in text(result), text(result)
    # As through the HTTP intake: its workflow's checks refuse it and audit a security event.
    assert "rejected_by_checks" in text(result) and "security event" in text(result)
    assert (await workflow_input(client, doc["proposal_id"])).channel == "mcp"


async def test_get_and_list_show_only_the_callers_own(mcp_api: RunningApi) -> None:
    mine, theirs = doc_for("narrow-agent"), doc_for("wide-agent")
    async with http_session(mcp_api, "wide-agent") as mcp:
        answer(await mcp.call_tool("propose_remediation", theirs))
    async with http_session(mcp_api, "narrow-agent") as mcp:
        answer(await mcp.call_tool("propose_remediation", mine))
        listed = answer(await mcp.call_tool("list_my_proposals", {}))
        own = answer(await mcp.call_tool("get_proposal", {"proposal_id": mine["proposal_id"]}))
        other = await mcp.call_tool("get_proposal", {"proposal_id": theirs["proposal_id"]})
        missing = await mcp.call_tool("get_proposal", {"proposal_id": new_id("nothing")})
        bad = await mcp.call_tool("get_proposal", {"id": "x"})

    ids = {p["proposal_id"] for p in listed["proposals"]}
    assert mine["proposal_id"] in ids and theirs["proposal_id"] not in ids
    assert {p["recommender"] for p in listed["proposals"]} == {"narrow-agent"}
    assert own["proposal_id"] == mine["proposal_id"] and own["status"] == "submitted" and not own["final"]
    assert other.is_error and "belongs to another recommender" in text(other)
    assert missing.is_error and "(404)" in text(missing)
    assert bad.is_error and "proposal_id: missing field" in text(bad) and "id: unknown field" in text(bad)


async def test_a_duplicate_proposal_is_attached(mcp_api: RunningApi, client: TemporalClient) -> None:
    incident = new_id("INC")
    first, second = doc_for("narrow-agent", incident=incident), doc_for("wide-agent", incident=incident)

    async with http_session(mcp_api, "narrow-agent") as mcp:
        owner = answer(await mcp.call_tool("propose_remediation", first))
    async with http_session(mcp_api, "wide-agent") as mcp:
        dup = answer(await mcp.call_tool("propose_remediation", second))

    assert owner["created"] is True
    assert dup["created"] is False and dup["duplicate_of"] == first["proposal_id"]
    assert dup["follow_id"] == first["proposal_id"] and "attached" in dup["next_step"]
    with pytest.raises(Exception, match="not found"):
        await client.get_workflow_handle(second["proposal_id"]).describe()


async def test_a_wrong_token_is_refused_over_http(mcp_api: RunningApi) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as http:
        none = await http.post("/mcp", json=body)
        wrong = await http.post("/mcp", json=body, headers={"Authorization": "Bearer ilk_not-a-token"})
    assert none.status_code == 401 and wrong.status_code == 401
    assert "Bearer" in wrong.headers["www-authenticate"]

    token = mcp_api.token("narrow-agent")
    mcp_api.tokens.revoke(token)

    # The official client cannot even open a session with a revoked token (the server said 401).
    with pytest.raises(BaseExceptionGroup) as refused:
        async with connect_http(mcp_api.url, token) as mcp:
            await mcp.list_tools()
    assert refused.group_contains(MCPError)


async def test_a_revoked_token_stops_a_stdio_session_at_the_next_call(mcp_api: RunningApi) -> None:
    async with stdio_session(mcp_api, "narrow-agent") as mcp:
        answer(await mcp.call_tool("list_actions", {}))
        for info in mcp_api.tokens.list():
            if info.recommender == "narrow-agent":
                mcp_api.tokens.revoke(info.id)
        refused = await mcp.call_tool("list_actions", {})
    assert refused.is_error and "the token is unknown or revoked" in text(refused)


@pytest.mark.parametrize("token", [None, "ilk_wrong"])
async def test_interlock_mcp_without_a_valid_token_does_not_start(
    mcp_api: RunningApi, token: str | None
) -> None:
    env = cli_env(mcp_api.settings, mcp_api.settings.task_queue)
    env.pop("INTERLOCK_TOKEN", None)
    if token:
        env["INTERLOCK_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        "mcp",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b""), 60)
    assert proc.returncode == 2
    assert out == b""  # stdout is the protocol's
    expected = "no recommender token" if token is None else "INTERLOCK_TOKEN is unknown or revoked"
    assert re.search(expected, err.decode()), err.decode()
