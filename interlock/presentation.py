"""What an approver reads: the proposal, its evidence, risk, preview and the way to decide.

Pure text rendering, used by the workflow (`set_current_details`, Markdown in the Web UI) and by
the CLI (plain text). Everything from outside the worker goes through interlock.untrusted, so
a recommender's words are shown, quoted, and never formatted or mistaken for Interlock's own.
"""

from __future__ import annotations

import json
from typing import Any

from interlock.models import (
    BatchResult,
    DecisionRecord,
    EvidenceReport,
    PlaybookResult,
    ProposalState,
    ProposalStatus,
)
from interlock.untrusted import MARKDOWN, TERMINAL, Rendering


def approval_details(state: ProposalState, *, markdown: bool = True) -> str:
    """The details as Markdown for the Web UI, or (`markdown=False`) as plain terminal text."""
    r: Rendering = MARKDOWN if markdown else TERMINAL
    p = state.proposal
    # The catalog's name once the checks found it; until then the recommender's own words.
    service = state.service.canonical if state.service else r.text(p.target.service)
    lines = [
        f"## {p.action} on {service} ({p.target.environment}): {state.status.value}",
        "",
        f"**Proposed by** {p.recommender} (model {r.code(p.model_version)}), confidence {p.confidence:.2f}"
        + (f", incident {r.code(p.incident)}" if p.incident else ""),
        "",
        "**Why** (in the recommender's words):",
        *r.quote(p.rationale),
    ]
    if p.parameters:
        params = ", ".join(f"{k}={v}" for k, v in sorted(p.parameters.items()))
        lines.append(f"**Parameters:** {params}")
    if state.policy_version:
        lines.append(f"**Policy:** {state.policy_version}")
    if state.evidence:
        lines += ["", "### Evidence, as its sources answered", *evidence_lines(state.evidence, r=r)]
    if state.evidence_recheck:
        lines += ["", "### Evidence re-checked before execution"]
        lines += evidence_lines(state.evidence_recheck, again=True, r=r)
    if state.evidence_after:
        lines += ["", "### Evidence after execution (must have cleared)"]
        lines += evidence_lines(state.evidence_after, after=True, r=r)
    if state.risk:
        lines += ["", f"### Risk {state.risk.score}/100 ({state.risk.tier.value})"]
        lines += [f"- {f.name} +{f.contribution}: {r.text(f.detail)}" for f in state.risk.factors]
    if state.preview:
        lines += ["", "### Preview (Ansible check mode)", *preview_lines(state.preview, r=r)]
    if state.duplicate_count:
        lines += ["", f"### Duplicates: {state.duplicate_count} (no further approval needed)"]
        for d in state.duplicates:
            checked = "checking" if d.ok is None else ("evidence confirmed" if d.ok else "NOT confirmed")
            lines.append(
                f"- {d.proposal_id} from {d.recommender} (model {r.code(d.model_version)}): {checked}"
            )
            lines += [f"  - {r.text(reason)}" for reason in d.reasons]
        if state.duplicate_count > len(state.duplicates):
            lines.append(f"- and {state.duplicate_count - len(state.duplicates)} more")
    if state.decisions:
        lines += ["", "### Decisions"]
        lines += [
            f"- {d.decision.value} by {r.text(d.approver)} ({decision_mark(d)}): {r.text(d.reason)}"
            for d in state.decisions
        ]
    lines += governance_lines(state, r)
    if state.status is ProposalStatus.AWAITING_APPROVAL:
        pid = p.proposal_id
        example = json.dumps({"approver": "alice", "reason": "evidence checked"})
        lines += [
            "",
            "### Decide",
            f'CLI: `interlock approve {pid} --as alice --reason "..."` or '
            f'`interlock reject {pid} --as alice --reason "..."`',
            f"Web UI: Send Update `approve` or `reject` with `{example}`",
        ]
    if state.execution and state.execution.batches:
        lines += ["", "### Rollout, batch by batch", *batch_lines(state.execution.batches, markdown=markdown)]
    if state.reasons:
        lines += ["", "### Outcome", *[f"- {r.text(reason)}" for reason in state.reasons]]
    return "\n".join(lines)


def batch_lines(batches: list[BatchResult], *, markdown: bool = True) -> list[str]:
    """One line per batch (its hosts and where it stands), then one per host of it."""
    r: Rendering = MARKDOWN if markdown else TERMINAL
    lines = []
    for b in batches:
        lines.append(f"- batch {b.index + 1}: {r.text(', '.join(b.hosts))}: {b.status.value}")
        for result in b.results:
            why = f": {r.text(result.reason)}" if result.reason else ""
            lines.append(f"  - {r.text(result.host)} ({result.stage.value}) {result.status}{why}")
    return lines


def decision_mark(d: DecisionRecord) -> str:
    """How a decision was made; an unsigned one says so wherever it is shown."""
    if not d.human:
        return "automatic, by policy"
    return "signed" if d.signed else "UNSIGNED"


def governance_lines(state: ProposalState, r: Rendering = MARKDOWN) -> list[str]:
    lines = []
    if state.mode != "approve":
        lines.append(f"**Mode:** {state.mode}")
    if state.freezes:
        lines.append(f"**Freeze in force:** {r.text(', '.join(state.freezes))}")
    for pause in state.pauses:
        lines.append(
            f"**Paused** ({r.text(pause.scope.describe())}) by {r.text(pause.by)}: {r.text(pause.reason)}"
        )
    if state.escalated:
        lines.append("**Escalated:** no quorum before the escalation deadline")
    if state.waiting_for:
        lines.append(f"**Waiting for:** {state.waiting_for}")
    return ["", *lines] if lines else []


def evidence_lines(
    report: EvidenceReport, again: bool = False, after: bool = False, r: Rendering = MARKDOWN
) -> list[str]:
    """One line per item: confirmed or not (still holding, or cleared), why, and what the
    source said. `again`/`after`: a re-check by Interlock, where the item's age is moot."""
    lines = []
    for item in report.items:
        if not item.fetched:
            mark = "unconfirmed (not fetched)" if not after else "could not re-read"
        elif after:
            mark = "still holds" if item.supports else "cleared"
        elif again:
            mark = "still holds" if item.ok else "cleared"
        else:
            mark = "confirmed" if item.ok else "unconfirmed"
        age = ""
        if item.age_seconds is not None and not (again or after):
            age = f", observed {item.age_seconds:.0f}s before the check"
        tries = f", {item.attempts} attempts" if item.attempts > 1 else ""
        lines.append(f"- {mark}: {r.text(item.source)} {r.code(item.ref)}{age}{tries}")
        lines.append(f"  - {'source said' if item.fetched else 'why'}: {r.text(item.reason)}")
        if item.observed:
            said = json.dumps(_said(item.observed), separators=(", ", ": "), default=str)
            lines.append(f"  - answer: {r.code(said if len(said) <= 300 else said[:297] + '...')}")
    return lines


def _said(observed: dict[str, Any]) -> dict[str, Any]:
    # The parts of a source's answer a person reads; the whole (trimmed) answer is in --json.
    keep = ("status_code", "body", "alerts", "samples", "changes", "answer")
    shown = {k: observed[k] for k in keep if k in observed}
    return shown or observed


def preview_lines(result: PlaybookResult, r: Rendering = MARKDOWN) -> list[str]:
    changed = result.changed_tasks
    if not changed:
        return ["- no task would change anything"]
    lines = []
    for task in changed:
        lines.append(f"- would change: {r.text(task.task)}")
        if task.diff:
            # A diff shows what is on the target, which anyone with access there may have written.
            lines.append(r.fence(task.diff.strip(), "diff"))
    return lines
