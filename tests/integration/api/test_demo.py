"""`interlock demo`: the real command turns a real lab alert into one proposal through the intake."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator

import pytest
from temporalio.client import Client

from interlock import search
from interlock.demo import RECOMMENDER
from interlock.lab import Lab
from tests.integration.api.support import RunningApi, interlock


@pytest.fixture
def degraded_lab(lab: Lab) -> Iterator[Lab]:
    lab.reset()
    lab.degrade("checkout-api")
    try:
        yield lab
    finally:
        lab.reset()  # other tests expect a healthy lab


async def test_demo_proposes_once_for_a_degraded_service(
    worker_api: RunningApi, client: Client, degraded_lab: Lab
) -> None:
    api = worker_api

    code, printed, errors = await interlock(api, "demo", "--once", "--url", api.url)

    assert code == 0, errors + printed
    match = re.search(r"HighErrorRate on checkout-api -> restart_service (\S+): submitted", printed)
    assert match, printed
    proposal_id = match.group(1)
    desc = await client.get_workflow_handle(proposal_id).describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(search.SA_RECOMMENDER) == RECOMMENDER
    assert attrs.get(search.SA_ACTION) == "restart_service"
    assert attrs.get(search.SA_SERVICE) == "checkout-api"
    # Alerts are grouped per service: a further alert about it attaches as a duplicate.
    assert attrs.get(search.SA_INCIDENT) == "alerts:checkout-api"
    token_file = api.settings.home_dir / f"{RECOMMENDER}.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert api.tokens.authenticate(token_file.read_text().strip()) == RECOMMENDER

    # Run again: the same alert is the same proposal (its id comes from the alert), not a new one.
    code, again, errors = await interlock(api, "demo", "--once", "--url", api.url)

    assert code == 0, errors + again
    assert f"restart_service {proposal_id}: already proposed" in again
    assert "created a token" not in again  # it reuses its own token
    query = (
        f"WorkflowType = 'RemediationWorkflow' AND InterlockIncident = 'alerts:checkout-api' "
        f"AND TaskQueue = '{api.settings.task_queue}'"
    )
    assert [wf.id async for wf in client.list_workflows(query)] == [proposal_id]


async def test_demo_without_an_intake_fails_clearly(api: RunningApi, degraded_lab: Lab) -> None:
    code, printed, errors = await interlock(api, "demo", "--once", "--url", "http://127.0.0.1:9")

    assert code == 1
    assert "refused" in printed and "cannot reach the intake" in printed
