"""Checks activities: validate a proposal against the policy in force, confirm its evidence at
the sources the policy approves, and gather the facts risk is scored from.

Evidence is never taken on the recommender's word: each item is fetched from its source
(interlock.evidence), a source that is down is retried with backoff inside the connector and
then reported unconfirmed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client

from interlock.activities.records import ExecutionRecords, RecordsUnavailable, VisibilityCache
from interlock.audit import open_store
from interlock.audit.standing import standing_of
from interlock.audit.store import AuditStore, AuditStoreError
from interlock.autonomy import ceiling, with_standing
from interlock.contracts import Activity
from interlock.evidence import check_items, client_for, tls_settings
from interlock.governance import Assessment, Governance
from interlock.models import (
    EvidenceCheck,
    EvidenceItem,
    EvidenceRecheck,
    EvidenceReport,
    Proposal,
    ServiceFacts,
)
from interlock.policy import Mode, Policy, load_policy, validate_against_policy
from interlock.risk import RecentChange, RiskInput, TrackRecord
from interlock.settings import Settings
from interlock.sources import SourceSpec

# Clocks disagree a little; evidence from further in the future than this is refused.
CLOCK_SKEW = timedelta(minutes=5)
# Attempts per source request (the wait doubles from SOURCE_BACKOFF between them).
SOURCE_RETRIES = 3
SOURCE_BACKOFF = 0.5
# After execution, how often the sources are asked whether the evidence has cleared.
SETTLE_POLL_SECONDS = 1.0


class ProposalChecks:
    def __init__(self, settings: Settings, client: Client | None = None):
        self.settings = settings
        # Without a client (a unit test) the execution record and track record are unavailable.
        self.client = client
        # Visibility answers shared by checks made moments apart (see FACTS_MAX_AGE_SECONDS).
        self._visibility = VisibilityCache()
        # One HTTP client per TLS setting (building one costs ~20-40 ms of CPU: TLS context):
        # the default for most sources, one per CA bundle / client certificate otherwise.
        self._http: dict[Any, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
        # The audit store, opened on the first proposal whose action has graduation rules.
        self._store: AuditStore | None = None
        self._opening = threading.Lock()

    def http(self, spec: SourceSpec | None = None) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        tls = tls_settings(spec) if spec is not None else (None, None, None)
        held = self._http.get(tls)
        if held is None or held[0] is not loop or held[1].is_closed:
            client = httpx.AsyncClient(trust_env=False) if tls == (None, None, None) else client_for(tls)
            held = self._http[tls] = (loop, client)
        return held[1]

    async def aclose(self) -> None:
        with self._opening:
            store, self._store = self._store, None
        if store is not None:
            store.close()
        held, self._http = self._http, {}
        for loop, http in held.values():
            if loop is asyncio.get_running_loop():
                await http.aclose()

    def policy(self) -> Policy:
        # Read on every check so an edited policy applies to the next proposal without a restart.
        return load_policy(self.settings.effective_policy_file)

    def records(self) -> ExecutionRecords | None:
        if self.client is None:
            return None
        return ExecutionRecords(self.client, activity.info().task_queue, self._visibility)

    @activity.defn(name=Activity.CHECK_PROPOSAL)
    async def check_proposal(self, proposal: Proposal) -> Assessment:
        policy = self.policy()
        errors = validate_against_policy(proposal, policy)
        if errors:
            return Assessment(ok=False, reasons=errors, policy_version=policy.version_id)
        service = policy.canonical_service(proposal.target.service)
        assert service is not None  # validate_against_policy refused unknown services
        violations = policy.scope_violations(proposal, service)
        if violations:
            return Assessment(
                ok=False,
                reasons=violations,
                policy_version=policy.version_id,
                security_violation=True,
            )
        action = policy.actions[proposal.action]
        now = datetime.now(UTC)
        evidence = await self.confirm_evidence(
            proposal, proposal.evidence, policy, service, now, check_age=True
        )
        governance = Governance.from_policy(
            policy, proposal.action, proposal.target.environment, service, proposal.recommender, now
        )
        governance = await self.earned(governance, policy, proposal, service)
        dependents = policy.dependents(service)
        risk_input = RiskInput(
            action=proposal.action,
            base_risk=action.base_risk,
            environment=proposal.target.environment,
            environment_risk=policy.environments[proposal.target.environment].risk,
            service=service,
            dependents=dependents,
            confidence=proposal.confidence,
            evidence_total=len(evidence.items),
            evidence_confirmed=evidence.confirmed,
            recommender=proposal.recommender,
            recent_change_window=policy.risk.recent_change_window,
            track_record_window=policy.risk.track_record_window,
            freezes=governance.freezes,
        )
        if evidence.ok:
            risk_input = await self.history_facts(risk_input, proposal.proposal_id, now)
        cited = {i.source for i in proposal.evidence}
        return Assessment(
            ok=evidence.ok,
            reasons=evidence.reasons,
            policy_version=policy.version_id,
            service=ServiceFacts(
                canonical=service, owner=policy.services[service].owner, dependents=dependents
            ),
            evidence=evidence,
            base_risk=action.base_risk,
            environment_risk=risk_input.environment_risk,
            approval_timeout_seconds=(
                action.approval_timeout.total_seconds() if action.approval_timeout else None
            ),
            governance=governance,
            risk_input=risk_input,
            evidence_max_age_seconds=min(action.evidence_sources[s].max_age.total_seconds() for s in cited),
            settle_seconds=settle_seconds(policy, proposal, evidence),
            preview_attempts=action.preview_retry.attempts,
            preview_backoff_seconds=action.preview_retry.backoff.total_seconds(),
            history_event_limit=self.settings.history_event_limit,
            dedup_key=policy.dedup.key_of(proposal, service),
        )

    def store(self) -> AuditStore:
        with self._opening:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    async def earned(
        self, governance: Governance, policy: Policy, proposal: Proposal, service: str
    ) -> Governance:
        """The mode the recommender's model version has earned for this action (its standing in
        the audit store), when the policy has graduation rules for it. A standing that cannot be
        read gives no autonomy: shadow, never more than was earned."""
        env = proposal.target.environment
        rule = policy.graduation_for(proposal.action, env, service)
        if rule is None:
            return governance
        top = ceiling(policy, proposal.action, env, service)
        try:
            standing = await asyncio.to_thread(
                lambda: standing_of(self.store(), rule, top, proposal.recommender, proposal.model_version)
            )
        except AuditStoreError as err:
            activity.logger.warning("standing unreadable, the proposal runs in shadow mode: %s", err)
            return with_standing(governance, Mode.SHADOW)
        return with_standing(governance, standing.mode)

    async def history_facts(self, facts: RiskInput, proposal_id: str, now: datetime) -> RiskInput:
        """Recent changes to the service and the recommender's track record, from Interlock's
        own record; a record that cannot be read is shown as unavailable, never guessed."""
        records = self.records()
        if records is None:
            return facts.model_copy(update={"track_record_error": "no execution record configured"})
        changes: list[RecentChange] = []
        track: TrackRecord | None = None
        error = ""
        try:
            changes, track = await asyncio.gather(
                records.recent_changes(facts.service, facts.recent_change_window, now, exclude=proposal_id),
                records.track_record(facts.recommender, facts.track_record_window, now),
            )
        except RecordsUnavailable as err:
            activity.logger.warning("execution record unavailable: %s", err)
            error = str(err)
        return facts.model_copy(
            update={"recent_changes": changes, "track_record": track, "track_record_error": error}
        )

    @activity.defn(name=Activity.RECHECK_EVIDENCE)
    async def recheck_evidence(self, inp: EvidenceRecheck) -> EvidenceReport:
        """Ask the sources again, now. With a settle time, keep asking until no item is
        supported any more (the condition cleared) or the settle time has passed."""
        policy = self.policy()
        deadline = time.monotonic() + inp.settle_seconds
        while True:
            now = datetime.now(UTC)
            # After a change (a settle time), a silenced alert is asked about at its rule.
            report = await self.confirm_evidence(
                inp.proposal,
                inp.items,
                policy,
                inp.service,
                now,
                check_age=False,
                after_change=inp.settle_seconds > 0,
            )
            if inp.settle_seconds <= 0 or cleared(report) or time.monotonic() >= deadline:
                return report
            activity.heartbeat(f"{sum(i.supports for i in report.items)} item(s) still hold")
            await asyncio.sleep(min(SETTLE_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    async def confirm_evidence(
        self,
        proposal: Proposal,
        items: Sequence[EvidenceItem],
        policy: Policy,
        service: str,
        now: datetime,
        *,
        check_age: bool,
        after_change: bool = False,
    ) -> EvidenceReport:
        """Confirm each item at its source. `check_age`: refuse items the recommender observed
        longer ago than the source's max age (at the first check; a re-check is Interlock's
        own observation, made now)."""
        action = policy.actions[proposal.action]
        results: dict[int, EvidenceCheck] = {}
        to_fetch: list[tuple[int, EvidenceItem]] = []
        for n, item in enumerate(items):
            age = round((now - item.observed_at).total_seconds(), 1)
            source = action.evidence_sources.get(item.source)
            why = ""
            if source is None or item.source not in policy.sources:
                why = f"source {item.source!r} is not approved for {proposal.action}"
            elif refusal := policy.check_refusal(proposal.action, item.source, item.ref):
                why = refusal
            elif check_age and item.observed_at - now > CLOCK_SKEW:
                why = "not fetched: observed_at is in the future"
            elif check_age and age > source.max_age.total_seconds():
                why = f"not fetched: stale, observed {age:.0f}s ago, maximum is {source.max_age}"
            if why:
                results[n] = EvidenceCheck(
                    source=item.source, ref=item.ref, ok=False, reason=why, age_seconds=age
                )
            else:
                to_fetch.append((n, item))
        if to_fetch:
            confirmations = await check_items(
                [item for _, item in to_fetch],
                sources=policy.sources,
                target_service=service,
                normalise=policy.canonical_service,
                http_for=self.http,
                after_change=after_change,
                max_age={name: s.max_age for name, s in action.evidence_sources.items()},
                now=now,
                lab_root=self.settings.lab_dir,
                recent_changes=self._change_records(),
                retries=SOURCE_RETRIES,
                backoff=SOURCE_BACKOFF,
            )
            for (n, item), c in zip(to_fetch, confirmations, strict=True):
                check = policy.check_name(item.source, item.ref)
                results[n] = EvidenceCheck(
                    check=check,
                    suppressed=c.suppressed,
                    suppressed_by=c.suppressed_by,
                    settle_seconds=policy.settle_needed(item.source, check).total_seconds(),
                    source=item.source,
                    ref=item.ref,
                    ok=c.fetched and c.supports,
                    reason=c.reason,
                    age_seconds=round((now - item.observed_at).total_seconds(), 1),
                    fetched=c.fetched,
                    supports=c.fetched and c.supports,
                    observed=c.observed or None,
                    source_time=c.source_time,
                    attempts=c.attempts,
                )
        checks = [results[n] for n in range(len(items))]
        return EvidenceReport(ok=bool(checks) and all(c.ok for c in checks), items=checks, checked_at=now)

    def _change_records(self) -> Any:
        records = self.records()
        return records.change_records if records is not None else None


def settle_seconds(policy: Policy, proposal: Proposal, evidence: EvidenceReport) -> float | None:
    """How long the after-change check waits: the action's settle time, or longer when a
    confirmed check needs longer to clear (scrape, evaluation, range, `for`), so a fix is
    never judged before its evidence could have cleared (nor charged to the recommender)."""
    configured = policy.actions[proposal.action].settle_time
    if configured is None:
        return None
    needed = [i.settle_seconds or 0.0 for i in evidence.items if i.ok]
    return max([configured.total_seconds(), *needed])


def cleared(report: EvidenceReport) -> bool:
    """Every source answered, and none still shows the condition the evidence claimed."""
    return all(i.fetched and not i.supports for i in report.items)
