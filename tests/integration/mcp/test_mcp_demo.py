"""`interlock demo --mcp`: the demo recommender proposes for a real lab alert through `/mcp`."""

from __future__ import annotations

import re

from temporalio.client import Client as TemporalClient

from interlock.demo import RECOMMENDER
from interlock.lab import Lab
from tests.integration.api.support import RunningApi, interlock
from tests.integration.mcp.test_mcp_tools import workflow_input


async def test_demo_over_mcp_proposes_once_with_channel_mcp(
    api: RunningApi, client: TemporalClient, alerting_lab: Lab
) -> None:
    code, printed, errors = await interlock(api, "demo", "--once", "--mcp", "--url", api.url)

    assert code == 0, errors + printed
    assert "through MCP" in printed
    match = re.search(r"HighErrorRate on checkout-api -> restart_service (\S+): submitted", printed)
    assert match, printed
    inp = await workflow_input(client, match.group(1))
    assert inp.channel == "mcp" and inp.proposal.recommender == RECOMMENDER

    # Again: the same alert is the same proposal, over MCP as over HTTP.
    code, again, errors = await interlock(api, "demo", "--once", "--mcp", "--url", api.url)
    assert code == 0, errors + again
    assert f"restart_service {match.group(1)}: already proposed" in again or "(submitted)" in again, again


async def test_demo_over_mcp_without_an_intake_fails_clearly(api: RunningApi, alerting_lab: Lab) -> None:
    code, printed, errors = await interlock(api, "demo", "--once", "--mcp", "--url", "http://127.0.0.1:9")

    assert code == 1
    assert "cannot open an MCP session on http://127.0.0.1:9" in errors, errors
