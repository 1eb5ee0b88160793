"""Notifications to a webhook: a real HTTP receiver on 127.0.0.1 gets Slack-compatible JSON with
a link to the proposal in the Web UI; a failing webhook is retried and never changes a decision."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from interlock.activities.gate import GateActivities
from interlock.lab import Lab
from interlock.models import DecisionInput, Notification, ProposalStatus
from interlock.proposals import decide
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.governance.support import wait_for
from tests.support import final, make_proposal, propose

UI = "http://localhost:8233"


class Receiver:
    """A webhook endpoint on localhost that records what it is sent (and can be made to fail)."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.received.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/interlock"

    def kinds(self) -> list[str]:
        return [n["kind"] for n in self.received]


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(getattr(request, "param", 200))
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        thread.join()


def _webhook(url: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["notifier"] = {"kind": "webhook", "url": url, "ui_base_url": UI}

    return edit


async def test_webhook_receives_slack_compatible_notifications_with_a_ui_link(
    client: Client,
    governed: Callable[..., Settings],
    task_queue: str,
    lab: Lab,
    receiver: Receiver,
) -> None:
    s = governed(_webhook(receiver.url))
    proposal = make_proposal(s, "restart_service")
    pid = proposal.proposal_id
    async with build_worker(client, s, task_queue):
        await propose(client, s, task_queue, proposal)
        await wait_for(client, pid, lambda _: "awaiting_approval" in receiver.kinds(), timeout=30)
        await decide(client, pid, "reject", DecisionInput(approver="bob", reason="not during sales"))
        await final(client, pid)

    assert receiver.kinds() == ["awaiting_approval", "outcome"]
    assert set(receiver.content_types) == {"application/json"}
    link = f"{UI}/namespaces/default/workflows/{pid}"
    asked, outcome = receiver.received
    assert asked["link"] == outcome["link"] == link
    assert asked["text"] == (
        f"Approval needed: restart_service on checkout-api (lab, low risk) from triage-bot <{link}|{pid}>"
    )
    assert outcome["text"].startswith("rejected: restart_service on checkout-api")
    assert outcome["status"] == "rejected" and outcome["proposal_id"] == pid


@pytest.mark.parametrize("receiver", [500], indirect=True)
async def test_failing_webhook_is_retried_and_never_changes_a_decision(
    client: Client,
    governed: Callable[..., Settings],
    task_queue: str,
    lab: Lab,
    receiver: Receiver,
) -> None:
    s = governed(_webhook(receiver.url))
    proposal = make_proposal(s, "restart_service")
    pid = proposal.proposal_id
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        # The webhook answers 500: Temporal retries the notification in the background.
        await wait_for(client, pid, lambda _: receiver.kinds().count("awaiting_approval") >= 2)
        result = await decide(client, pid, "reject", DecisionInput(approver="bob", reason="no"))
        assert result.status is ProposalStatus.REJECTED
        done = await final(client, pid)

    assert done.status is ProposalStatus.REJECTED
    assert [(d.approver, d.decision.value) for d in done.decisions] == [("bob", "reject")]
    assert receiver.kinds().count("outcome") >= 2  # retried, then given up


async def test_notification_text_cannot_link_or_mention(
    governed: Callable[..., Settings], receiver: Receiver
) -> None:
    # The text as the workflow builds it for a proposal whose service name is the recommender's
    # own words (a direct start never checked against the catalog): the real notify activity.
    s = governed(_webhook(receiver.url))
    service = "<!here> <@U024BE7LH> @channel <https://evil.example/approve|Approve now> \x1b[31m&\nnext"
    note = Notification(
        kind="outcome",
        proposal_id="prop-n1",
        status="rejected_by_checks",
        text=f"rejected_by_checks: restart_service on {service} (lab) from triage-bot",
    )
    await ActivityEnvironment().run(GateActivities(s).notify, note)

    [sent] = receiver.received
    link = f"{UI}/namespaces/default/workflows/prop-n1"
    assert sent["text"] == (
        "rejected_by_checks: restart_service on &lt;!here&gt; &lt;\uff20U024BE7LH&gt; \uff20channel "
        "&lt;https://evil.example/approve|Approve now&gt; &amp; next (lab) from triage-bot "
        f"<{link}|prop-n1>"
    )
    # Interlock's own link is the only Slack link or mention left in the text.
    assert re.findall(r"<[^>]*>", sent["text"]) == [f"<{link}|prop-n1>"]
