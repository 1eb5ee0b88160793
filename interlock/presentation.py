"""What an approver reads: the proposal, its evidence, risk, preview and the way to decide.

Pure text rendering, used by the workflow (`set_current_details`, Markdown in the Web UI's
"User Metadata" tab) and by the CLI (plain text). Everything from outside the worker goes
through interlock.untrusted, so a recommender's words are shown, quoted, and never formatted
or mistaken for Interlock's own.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from interlock.gate import StillNeeded, current, still_needed
from interlock.governance import Governance
from interlock.models import (
    BatchResult,
    DecisionRecord,
    EvidenceReport,
    PlaybookResult,
    Proposal,
    ProposalState,
    ProposalStatus,
    RiskTier,
)
from interlock.untrusted import MARKDOWN, TERMINAL, Rendering, plain


def static_summary(proposal: Proposal, service: str) -> str:
    """The one line the Web UI's workflow list shows (set once, when the workflow starts)."""
    p = proposal
    # The service may still be the recommender's own words (not yet found in the catalog).
    return f"{p.action} {plain(service).strip()[:128]} ({p.target.environment}) by {p.recommender}"


def static_details(proposal: Proposal, service: str) -> str:
    """What the Web UI shows before the checks have run: the proposal as submitted."""
    r = MARKDOWN
    params = ", ".join(f"{k}={v}" for k, v in sorted(proposal.parameters.items())) or "none"
    return "\n".join(
        [
            f"## {r.text(proposal.action)} on {r.text(service)} ({r.text(proposal.target.environment)})",
            "",
            f"**Proposed by** {r.text(proposal.recommender)} (model {r.code(proposal.model_version)}), "
            f"parameters: {r.text(params)}",
            "",
            "The checks are running: evidence, risk, preview and the way to decide appear in "
            "this tab (User Metadata, current details) once they are done.",
        ]
    )


def approval_details(state: ProposalState, *, markdown: bool = True, gov: Governance | None = None) -> str:
    """The details as Markdown for the Web UI, or (`markdown=False`) as plain terminal text.

    With `gov` (the proposal's governance snapshot) it names who may still approve and how each
    of them decides for the tier; without it, only what the quorum still lacks."""
    r: Rendering = MARKDOWN if markdown else TERMINAL
    p = state.proposal
    # The catalog's name once the checks found it; until then the recommender's own words.
    service = state.service.canonical if state.service else r.text(p.target.service)
    hosts = sorted({t.host for t in state.preview.tasks}) if state.preview else []
    lines = [f"## {p.action} on {service} ({p.target.environment}): {state.status.value}", ""]
    what = [f"- **What:** {p.action} on {service} in {p.target.environment}"]
    if hosts:
        what.append(f"- **Hosts:** {', '.join(r.text(h) for h in hosts)}")
    if p.parameters:
        params = ", ".join(f"{k}={v}" for k, v in sorted(p.parameters.items()))
        what.append(f"- **Parameters:** {params}")
    if state.risk:
        what.append(f"- **Risk:** {state.risk.tier.value} ({state.risk.score}/100)")
    if state.waiting_for and state.status is ProposalStatus.AWAITING_APPROVAL:
        what.append(f"- **Waiting for:** {state.waiting_for}")
    what.append(
        f"- **Proposed by** {p.recommender} (model {r.code(p.model_version)}), confidence {p.confidence:.2f}"
        + (f", incident {r.code(p.incident)}" if p.incident else "")
    )
    if state.policy_version:
        what.append(f"- **Policy:** {state.policy_version}")
    lines += [*what, "", "**Why** (in the recommender's words):", "", *r.quote(p.rationale)]
    if state.risk:
        lines += ["", f"### Risk {state.risk.tier.value}, {state.risk.score}/100: why", ""]
        # The factors that raised the score first: they are the answer to "why this tier".
        factors = sorted(state.risk.factors, key=lambda f: -f.contribution)
        lines += [f"- {f.name} +{f.contribution}: {r.text(f.detail)}" for f in factors]
    if state.evidence:
        lines += ["", "### Evidence, as its sources answered", "", *evidence_lines(state.evidence, r=r)]
    if state.evidence_recheck:
        lines += ["", "### Evidence re-checked before execution", ""]
        lines += evidence_lines(state.evidence_recheck, again=True, r=r)
    if state.evidence_after:
        lines += ["", "### Evidence after execution (must have cleared)", ""]
        lines += evidence_lines(state.evidence_after, after=True, r=r)
    if state.preview:
        lines += ["", "### Preview (Ansible check mode)", "", *preview_lines(state.preview, r=r)]
    if state.duplicate_count:
        lines += ["", f"### Duplicates: {state.duplicate_count} (no further approval needed)", ""]
        for d in state.duplicates:
            checked = "checking" if d.ok is None else ("evidence confirmed" if d.ok else "NOT confirmed")
            lines += r.item(
                f"{r.text(d.proposal_id)} from {r.text(d.recommender)} (model {r.code(d.model_version)}): "
                f"{checked}",
                [r.text(reason) for reason in d.reasons],
            )
        if state.duplicate_count > len(state.duplicates):
            lines.append(f"- and {state.duplicate_count - len(state.duplicates)} more")
    if state.decisions:
        lines += ["", "### Decisions", ""]
        lines += [
            f"- {d.decision.value} by {r.text(d.approver)} ({decision_mark(d)}): {r.text(d.reason)}"
            for d in state.decisions
        ]
    lines += governance_lines(state, r)
    if state.status is ProposalStatus.AWAITING_APPROVAL:
        lines += decide_lines(state, gov, markdown=markdown)
    if state.execution and state.execution.batches:
        lines += ["", "### Rollout, batch by batch", *batch_lines(state.execution.batches, markdown=markdown)]
    if state.reasons:
        lines += ["", "### Outcome", "", *[f"- {r.text(reason)}" for reason in state.reasons]]
    return "\n".join(lines)


def needed_for(state: ProposalState, gov: Governance) -> StillNeeded | None:
    """The remaining quorum of a proposal awaiting approval (None before it is scored)."""
    if state.risk is None:
        return None
    decisions = current(state.decisions, state.plan_hash)
    return still_needed(decisions, gov, state.risk.tier, bool(state.freezes), state.proposal.recommender)


def decide_lines(state: ProposalState, gov: Governance | None, *, markdown: bool = True) -> list[str]:
    """Who may still approve and the exact commands for the tier: the unsigned JSON only where
    the tier's rule accepts unsigned approvals, otherwise `interlock sign` per approver."""
    pid = state.proposal.proposal_id
    tier = state.risk.tier if state.risk else None
    need = needed_for(state, gov) if gov else None
    lines = ["", "### Who may still approve", ""]
    if need is None:
        lines.append(f"- still needed: {state.waiting_for or 'an approval'}")
    else:
        lines.append(f"Still needed: {need.missing or 'nothing'}.")
        lines.append("")
        for c in need.candidates:
            fills = f" (counts as the {', '.join(c.fills)} approval)" if c.fills else ""
            lines.append(f"- {c.name}, groups {', '.join(c.groups) or 'none'}{fills}")
        if not need.candidates:
            lines.append("- nobody left in the roster can approve: this proposal will expire")
    unsigned = need.unsigned_allowed if need else (tier in (RiskTier.LOW, RiskTier.MEDIUM))
    names = [c.name for c in need.candidates] if need and need.candidates else ["NAME"]
    tier_name = tier.value if tier else "this"
    lines += ["", f"### How to decide ({tier_name} risk)", ""]
    if unsigned:
        example = json.dumps({"approver": names[0], "reason": "evidence checked"})
        lines += [
            f"Unsigned approvals count for {tier_name} risk. In a terminal:",
            "",
            _block(
                [
                    f'interlock approve {pid} --as {names[0]} --reason "evidence checked"',
                    f'interlock reject {pid} --as {names[0]} --reason "why not"',
                ],
                markdown,
            ),
            "",
            "Or in the Web UI: Send an Update, Update name `approve` (or `reject`), with the JSON payload:",
            "",
            _block([example], markdown, "json"),
        ]
    else:
        lines += [
            f"Only signed approvals count for {tier_name} risk: an unsigned JSON is refused. "
            "Each approver signs with their own key; in a terminal (signs and sends):",
            "",
            _block(
                [f'interlock approve {pid} --as {n} --reason "evidence checked"' for n in names],
                markdown,
            ),
            "",
            "Or for the Web UI: make a token, then Send an Update, Update name `approve`, with the "
            'printed `{"token": "..."}` as the JSON payload:',
            "",
            _block(
                [f'interlock sign {pid} --as {n} --reason "evidence checked"' for n in names],
                markdown,
            ),
        ]
    return lines


def _block(commands: list[str], markdown: bool, info: str = "") -> str:
    if markdown:
        return MARKDOWN.fence("\n".join(commands), info)
    return "\n".join(f"    {c}" for c in commands)


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
        lines.append(f"- **Mode:** {state.mode}")
    if state.freezes:
        lines.append(f"- **Freeze in force:** {r.text(', '.join(state.freezes))}")
    for pause in state.pauses:
        lines.append(
            f"- **Paused** ({r.text(pause.scope.describe())}) by {r.text(pause.by)}: {r.text(pause.reason)}"
        )
    if state.escalated:
        lines.append("- **Escalated:** no quorum before the escalation deadline")
    if state.waiting_for and state.status is not ProposalStatus.AWAITING_APPROVAL:
        lines.append(f"- **Waiting for:** {state.waiting_for}")
    return ["", *lines] if lines else []


def evidence_lines(
    report: EvidenceReport, again: bool = False, after: bool = False, r: Rendering = MARKDOWN
) -> list[str]:
    """One item per evidence: confirmed or not (still holding, or cleared), why, and what the
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
        subs = [f"{'source said' if item.fetched else 'why'}: {r.text(item.reason)}"]
        if item.observed:
            said = json.dumps(_said(item.observed), separators=(", ", ": "), default=str)
            subs.append(f"answer: {r.code(said if len(said) <= 300 else said[:297] + '...')}")
        lines += r.item(f"**{mark}**: {r.text(item.source)} {r.code(item.ref)}{age}{tries}", subs)
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
        lines.append(f"- would change on {r.text(task.host)}: {r.text(task.task)}")
        if task.diff:
            # A diff shows what is on the target, which anyone with access there may have written.
            lines += ["", r.fence("\n".join(diff_lines(task.diff)), "diff"), ""]
    return lines


# unified_diff of one-line texts without a final newline glues `-before` and `+after` together.
_GLUED = re.compile(r"^-(\{.*\})\+(\{.*\})$")
_DICT_LINE = re.compile(r"^[-+ ]\{.*\}$")


def diff_lines(diff: str) -> list[str]:
    """The diff with one line per change: Ansible reports a file's state as a Python dict on
    one line (and unified_diff glues the before and after lines when neither ends in a
    newline), so each dict is split into one `key: value` line per field, unchanged fields as
    context. Only literals are parsed (ast.literal_eval): nothing in the text is run."""
    out: list[str] = []
    pending: dict[str, Any] | None = None
    for line in diff.splitlines():
        glued = _GLUED.match(line)
        if glued:
            before, after = _literal(glued.group(1)), _literal(glued.group(2))
            if before is not None and after is not None:
                out += _dict_diff(before, after)
                continue
        if _DICT_LINE.match(line) and (parsed := _literal(line[1:])) is not None:
            if line[0] == "-":
                pending = parsed
                continue
            if line[0] == "+" and pending is not None:
                out += _dict_diff(pending, parsed)
                pending = None
                continue
        if pending is not None:
            out += [f"-{k}: {v}" for k, v in pending.items()]
            pending = None
        out.append(line)
    if pending is not None:
        out += [f"-{k}: {v}" for k, v in pending.items()]
    return out


def _literal(text: str) -> dict[str, Any] | None:
    if len(text) > 4000:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else None


def _dict_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if old == new:
            lines.append(f" {key}: {old}")
            continue
        if key in before:
            lines.append(f"-{key}: {old}")
        if key in after:
            lines.append(f"+{key}: {new}")
    return lines
