"""An agent's whole path through MCP: propose a restart for the degraded lab service, wait while
Interlock checks it, a person approves through the CLI, and the agent sees it completed.

Real worker, real Ansible against the lab, real evidence sources; over stdio (`interlock mcp`
as an agent's config starts it) and over streamable HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from temporalio.client import Client as TemporalClient

from tests.integration.api.support import RunningApi, interlock
from tests.integration.mcp.support import answer, http_session, stdio_session
from tests.integration.mcp.test_mcp_tools import Session, doc_for, workflow_input


class Progress:
    """What the server reported while a tool call waited."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.reports.append((progress, total, message))


async def wait(
    mcp: Client, proposal_id: str, until: str, timeout: float, progress: Progress
) -> dict[str, Any]:
    result = await mcp.call_tool(
        "wait_for_outcome",
        {"proposal_id": proposal_id, "until": until, "timeout_seconds": timeout},
        progress_callback=progress,
    )
    return answer(result)


@pytest.fixture(params=["stdio", "http"])
def session(request: pytest.FixtureRequest) -> Session:
    return stdio_session if request.param == "stdio" else http_session


async def test_propose_wait_approve_through_the_cli_and_see_it_completed(
    mcp_worker_api: RunningApi, client: TemporalClient, session: Session
) -> None:
    api = mcp_worker_api
    doc = doc_for("narrow-agent")
    pid = doc["proposal_id"]
    checking = Progress()

    async with session(api, "narrow-agent") as mcp:
        proposed = answer(await mcp.call_tool("propose_remediation", doc))
        # Until a person is needed: through submitted, checking and previewing.
        seen = [proposed["status"]]
        while seen[-1] != "awaiting_approval":
            waited = await wait(mcp, pid, "change", 120, checking)
            assert waited["changed"] and not waited["timed_out"], waited
            seen.append(waited["proposal"]["status"])
            assert not waited["proposal"]["final"], waited["proposal"]
        before = answer(await mcp.call_tool("get_proposal", {"proposal_id": pid}))
        # Nobody decides: a short wait times out with the proposal still open.
        idle = await wait(mcp, pid, "final", 2, Progress())

        code, printed, errors = await interlock(api, "approve", pid, "--as", "alice", "--reason", "agreed")
        assert code == 0, errors + printed

        finishing = Progress()
        done = await wait(mcp, pid, "final", 300, finishing)

    assert proposed["created"] and seen[0] == "submitted"
    assert checking.reports and all(total == 120 for _, total, _ in checking.reports)
    assert before["waiting_for"] and before["decisions"] == [] and before["outcome"] is None
    risk = before["risk"]
    assert risk["tier"] in {"low", "medium"} and {f["name"] for f in risk["factors"]}
    items = before["evidence"]["items"]
    assert {i["source"] for i in items} == {"lab-monitor", "lab-alertmanager"}
    assert all(i["fetched"] and i["supports"] and i["ok"] for i in items), items
    assert idle["timed_out"] and not idle["changed"] and idle["proposal"]["status"] == "awaiting_approval"

    final = done["proposal"]
    assert final["status"] == "completed" and final["final"] and not done["timed_out"], final
    assert finishing.reports, "no progress was reported while waiting for the outcome"
    assert any(
        "awaiting_approval" in (m or "") or "executing" in (m or "") or "verifying" in (m or "")
        for _, _, m in finishing.reports + checking.reports
    )
    (decision,) = final["decisions"]
    assert decision["approver"] == "alice" and decision["decision"] == "approve"
    assert decision["signed"] is True and decision["human"] is True
    outcome = final["outcome"]
    assert outcome["status"] == "completed" and outcome["execution"]["ok"] and outcome["verification"]["ok"]
    assert outcome["evidence_cleared"] is True and "verified" in outcome["summary"]
    assert (await workflow_input(client, pid)).channel == "mcp"
