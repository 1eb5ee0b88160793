"""Every entry point records its channel on the workflow's input: the HTTP intake `http`, the
SDK `sdk`, `interlock propose` `cli` (and MCP `mcp`: see test_mcp_tools.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
from temporalio.client import Client as TemporalClient

from interlock.client import RecommenderClient
from tests.integration.api.support import RunningApi, interlock, proposal_doc
from tests.integration.mcp.test_mcp_tools import workflow_input


async def test_each_entry_point_records_its_channel(mcp_api: RunningApi, client: TemporalClient) -> None:
    by_http, by_sdk, by_cli = (proposal_doc("narrow-agent") for _ in range(3))
    token = mcp_api.token("narrow-agent")

    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as http:
        posted = await http.post("/v1/proposals", json=by_http, headers={"Authorization": f"Bearer {token}"})
    assert posted.status_code == 201, posted.text

    def send() -> None:
        with RecommenderClient(mcp_api.url, token) as sdk:
            sdk.propose(by_sdk)

    await asyncio.to_thread(send)
    code, out, err = await interlock(mcp_api, "propose", "-", "--no-wait", "--json", stdin=json.dumps(by_cli))
    assert code == 0, err + out

    assert (await workflow_input(client, by_http["proposal_id"])).channel == "http"
    assert (await workflow_input(client, by_sdk["proposal_id"])).channel == "sdk"
    assert (await workflow_input(client, by_cli["proposal_id"])).channel == "cli"
