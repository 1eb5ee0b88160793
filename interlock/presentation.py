"""What an approver reads: the proposal, its evidence, risk, preview and the way to decide.

Pure text rendering, used by the workflow (`set_current_details`, shown in the Web UI) and by
the CLI.
"""

from __future__ import annotations

import json
from typing import Any

from interlock.models import DecisionRecord, EvidenceReport, PlaybookResult, ProposalState, ProposalStatus


def approval_details(state: ProposalState) -> str:
    p = state.proposal
    service = state.service.canonical if state.service else p.target.service
    lines = [
        f"## {p.action} on {service} ({p.target.environment}): {state.status.value}",
        "",
        f"**Proposed by** {p.recommender} ({p.model_version}), confidence {p.confidence:.2f}"
        + (f", incident {p.incident}" if p.incident else ""),
        f"**Why:** {p.rationale}",
    ]
    if p.parameters:
        params = ", ".join(f"{k}={v}" for k, v in sorted(p.parameters.items()))
        lines.append(f"**Parameters:** {params}")
    if state.policy_version:
        lines.append(f"**Policy:** {state.policy_version}")
    if state.evidence:
        lines += ["", "### Evidence, as its sources answered", *evidence_lines(state.evidence)]
    if state.evidence_recheck:
        lines += ["", "### Evidence re-checked before execution"]
        lines += evidence_lines(state.evidence_recheck, again=True)
    if state.evidence_after:
        lines += ["", "### Evidence after execution (must have cleared)"]
        lines += evidence_lines(state.evidence_after, after=True)
    if state.risk:
        lines += ["", f"### Risk {state.risk.score}/100 ({state.risk.tier.value})"]
        lines += [f"- {f.name} +{f.contribution}: {f.detail}" for f in state.risk.factors]
    if state.preview:
        lines += ["", "### Preview (Ansible check mode)", *preview_lines(state.preview)]
    if state.duplicate_count:
        lines += ["", f"### Duplicates: {state.duplicate_count} (no further approval needed)"]
        for d in state.duplicates:
            checked = "checking" if d.ok is None else ("evidence confirmed" if d.ok else "NOT confirmed")
            lines.append(f"- {d.proposal_id} from {d.recommender} ({d.model_version}): {checked}")
            lines += [f"  - {r}" for r in d.reasons]
        if state.duplicate_count > len(state.duplicates):
            lines.append(f"- and {state.duplicate_count - len(state.duplicates)} more")
    if state.decisions:
        lines += ["", "### Decisions"]
        lines += [
            f"- {d.decision.value} by {d.approver} ({decision_mark(d)}): {d.reason}"
            for d in state.decisions
        ]
    lines += governance_lines(state)
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
    if state.reasons:
        lines += ["", "### Outcome", *[f"- {r}" for r in state.reasons]]
    return "\n".join(lines)


def decision_mark(d: DecisionRecord) -> str:
    """How a decision was made; an unsigned one says so wherever it is shown."""
    if not d.human:
        return "automatic, by policy"
    return "signed" if d.signed else "UNSIGNED"


def governance_lines(state: ProposalState) -> list[str]:
    lines = []
    if state.mode != "approve":
        lines.append(f"**Mode:** {state.mode}")
    if state.freezes:
        lines.append(f"**Freeze in force:** {', '.join(state.freezes)}")
    for pause in state.pauses:
        lines.append(f"**Paused** ({pause.scope.describe()}) by {pause.by}: {pause.reason}")
    if state.escalated:
        lines.append("**Escalated:** no quorum before the escalation deadline")
    if state.waiting_for:
        lines.append(f"**Waiting for:** {state.waiting_for}")
    return ["", *lines] if lines else []


def evidence_lines(report: EvidenceReport, again: bool = False, after: bool = False) -> list[str]:
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
        lines.append(f"- {mark}: {item.source} `{item.ref}`{age}{tries}")
        lines.append(f"  - {'source said' if item.fetched else 'why'}: {item.reason}")
        if item.observed:
            said = json.dumps(_said(item.observed), separators=(", ", ": "), default=str)
            lines.append(f"  - answer: `{said if len(said) <= 300 else said[:297] + '...'}`")
    return lines


def _said(observed: dict[str, Any]) -> dict[str, Any]:
    # The parts of a source's answer a person reads; the whole (trimmed) answer is in --json.
    keep = ("status_code", "body", "alerts", "samples", "changes", "answer")
    shown = {k: observed[k] for k in keep if k in observed}
    return shown or observed


def preview_lines(result: PlaybookResult) -> list[str]:
    changed = result.changed_tasks
    if not changed:
        return ["- no task would change anything"]
    lines = []
    for task in changed:
        lines.append(f"- would change: {task.task}")
        if task.diff:
            lines.append("```diff\n" + task.diff.strip() + "\n```")
    return lines
