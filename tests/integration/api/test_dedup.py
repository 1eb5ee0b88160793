"""One proposal per problem: concurrent duplicates through the intake and `interlock propose`.

Against the real intake, the real dev server and a real worker: duplicates must attach to the
open proposal (evidence checked, counted, shown), start nothing, and ask for no second approval.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from temporalio.client import Client

from tests.integration.api.support import RunningApi, interlock, proposal_doc
from tests.integration.api.test_intake import eventually, post, started
from tests.integration.workflows.test_lifecycle import check_replays
from tests.support import new_id


async def proposal_runs(client: Client, incident: str) -> set[str]:
    query = f"WorkflowType = 'RemediationWorkflow' AND InterlockIncident = '{incident}'"
    return {wf.id async for wf in client.list_workflows(query)}


async def read(api: RunningApi, proposal_id: str, recommender: str = "triage-bot") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=api.auth(recommender)) as http:
        response = await http.get(f"/v1/proposals/{proposal_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_five_concurrent_duplicates_start_one_workflow_and_record_four(
    worker_api: RunningApi, client: Client
) -> None:
    api = worker_api
    incident = new_id("INC")
    recommenders = ["triage-bot", "deploy-bot", "triage-bot", "capacity-bot", "deploy-bot"]
    tokens = {name: api.token(name) for name in set(recommenders)}
    docs = [proposal_doc(name, incident=incident) for name in recommenders]
    # Aliases of one service are one problem: the key holds the canonical name.
    docs[3]["target"]["service"] = "CHECKOUT API"

    answers = await asyncio.gather(*(post(api, doc, tokens[doc["recommender"]]) for doc in docs))

    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 202, 202, 202, 202], [a.text for a in answers]
    (first,) = [a.json() for a in answers if a.status_code == 201]
    owner = first["proposal_id"]
    attached = [a.json() for a in answers if a.status_code == 202]
    assert {a["duplicate_of"] for a in attached} == {owner}
    assert all(a["created"] is False and a["proposal_id"] != owner for a in attached)
    for answer in attached:
        assert not await started(client, answer["proposal_id"])
    assert await eventually(lambda: proposal_runs(client, incident)) == {owner}
    # A duplicate retried with another key reaches the dedup again and is still counted once;
    # another incident is another problem.
    retried = next(d for d in docs if d["proposal_id"] == attached[0]["proposal_id"])
    again = await post(api, retried, tokens[retried["recommender"]], **{"Idempotency-Key": "2nd"})
    assert again.status_code == 202 and again.json()["duplicate_of"] == owner
    elsewhere = await post(api, proposal_doc(incident=new_id("INC")), tokens["triage-bot"])
    assert elsewhere.status_code == 201 and elsewhere.json()["duplicate_of"] is None

    owner_recommender = next(d["recommender"] for d in docs if d["proposal_id"] == owner)
    state = await eventually(lambda: _with_checked_duplicates(api, owner, owner_recommender, 4), timeout=120)
    assert state["status"] == "awaiting_approval"
    assert state["duplicate_count"] == 4
    assert {d["proposal_id"] for d in state["duplicates"]} == {a["proposal_id"] for a in attached}
    for dup in state["duplicates"]:
        assert dup["ok"] is True
        assert dup["evidence"]["items"][0]["ok"] is True
    assert state["decisions"] == []
    # A recommender whose duplicate was attached may follow the proposal it joined.
    other = next(name for name in recommenders if name != owner_recommender)
    assert (await read(api, owner, other))["proposal_id"] == owner
    # Five submissions, still one workflow and nothing else started meanwhile.
    assert await proposal_runs(client, incident) == {owner}

    # The history with attached duplicates must replay; tests/histories keeps it for later changes.
    await check_replays(client, owner, "duplicates_attached")

    code, shown, errors = await interlock(api, "show", owner)
    assert code == 0, errors
    assert "Duplicates: 4 (no further approval needed)" in shown
    for answer in attached:
        assert answer["proposal_id"] in shown


async def _with_checked_duplicates(
    api: RunningApi, proposal_id: str, recommender: str, count: int
) -> dict[str, Any] | None:
    state = await read(api, proposal_id, recommender)
    done = [d for d in state["duplicates"] if d["ok"] is not None]
    ready = state["status"] == "awaiting_approval" and len(done) == count
    return state if ready else None


async def test_once_the_open_proposal_is_closed_the_next_one_starts_its_own(
    api: RunningApi, client: Client
) -> None:
    token = api.token()
    incident = new_id("INC")
    first, later = proposal_doc(incident=incident), proposal_doc(incident=incident)
    assert (await post(api, first, token)).status_code == 201
    # No worker here: the claim and the attach need none. Closing the first proposal frees the
    # key for the next one (the claim is taken over, not waited out for the window).
    await client.get_workflow_handle(first["proposal_id"]).terminate(reason="test: closed")

    response = await post(api, later, token)

    assert response.status_code == 201, response.text
    assert response.json()["duplicate_of"] is None
    both = {first["proposal_id"], later["proposal_id"]}
    assert await eventually(lambda: _runs_are(client, incident, both)) == both


async def _runs_are(client: Client, incident: str, expected: set[str]) -> set[str] | None:
    runs = await proposal_runs(client, incident)
    return runs if runs == expected else None


async def test_interlock_propose_attaches_a_duplicate_like_the_api(api: RunningApi, client: Client) -> None:
    incident = new_id("INC")
    first, dup = proposal_doc(incident=incident), proposal_doc("deploy-bot", incident=incident)
    assert (await post(api, first, api.token())).status_code == 201

    code, printed, errors = await interlock(api, "propose", "-", "--no-wait", "--json", stdin=json.dumps(dup))

    assert code == 0, errors
    answer = json.loads(printed)
    assert answer["duplicate_of"] == first["proposal_id"]
    assert answer["created"] is False
    assert not await started(client, dup["proposal_id"])
    history = await client.get_workflow_handle(first["proposal_id"]).fetch_history()
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == ["add_duplicate"]
