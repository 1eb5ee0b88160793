"""Activities around the approval gate: the re-check before execution, and notifications."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import httpx
from temporalio import activity

from interlock.activities.ansible import playbooks_digest
from interlock.contracts import Activity
from interlock.models import Notification, PrecheckInput, PrecheckResult
from interlock.pauses import PauseStore, database_url
from interlock.policy import load_policy
from interlock.settings import Settings
from interlock.untrusted import chat_text

log = logging.getLogger(__name__)


class GateActivities:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._pauses: PauseStore | None = None

    @property
    def pauses(self) -> PauseStore:
        if self._pauses is None:
            self._pauses = PauseStore(database_url(self.settings))
        return self._pauses

    def close(self) -> None:
        if self._pauses is not None:
            self._pauses.close()
            self._pauses = None

    @activity.defn(name=Activity.PRECHECK_EXECUTION)
    async def precheck(self, inp: PrecheckInput) -> PrecheckResult:
        """Just before a playbook runs: the plan on disk, freezes and pauses, as they are now."""
        # Files and the pause store block: off the worker's event loop, which runs workflows too.
        return await asyncio.to_thread(self._precheck, inp)

    def _precheck(self, inp: PrecheckInput) -> PrecheckResult:
        policy = load_policy(self.settings.effective_policy_file)
        pauses = [p for p in self.pauses.active() if p.scope.covers(inp.action, inp.recommender, inp.service)]
        return PrecheckResult(
            playbooks_digest=playbooks_digest(self.settings.playbooks_dir),
            freezes=policy.active_freezes(datetime.now(UTC), inp.action, inp.environment),
            pauses=pauses,
        )

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, note: Notification) -> None:
        """Deliver a notification; failures are retried by Temporal and never block a decision."""
        policy = load_policy(self.settings.effective_policy_file)
        notifier = policy.notifier
        link = (
            f"{notifier.ui_base_url}/namespaces/{self.settings.temporal_namespace}"
            f"/workflows/{note.proposal_id}"
        )
        # The text is built in the workflow from the proposal's fields (its service name, as
        # the recommender wrote it, until the checks find it): a recommender must not be able
        # to put a disguised link or an @channel in front of the people who approve.
        body = {
            "text": f"{chat_text(note.text)} <{link}|{note.proposal_id}>",
            "kind": note.kind,
            "proposal_id": note.proposal_id,
            "status": note.status,
            "group": note.group,
            "link": link,
            "at": datetime.now(UTC).isoformat(),
        }
        if notifier.kind == "webhook" and notifier.url:
            async with httpx.AsyncClient(timeout=5.0) as http:
                response = await http.post(notifier.url, json=body)
                response.raise_for_status()
            return
        path = self.settings.home_dir / notifier.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(body) + "\n")
