"""Every `workflow.patched` branch of the remediation workflow, with its way out.

A patch lives through three steps (samples-python `patching/`):
1. `patched`: new code calls `workflow.patched(NAME)`; histories recorded before it take the old
   branch on replay (a `*_before_*` history in tests/histories proves it).
2. `deprecated`: once no workflow started before the patch is still open (the longest a proposal
   lives: its approval window, 24 h by default, plus execution), the old branch is deleted and the
   call becomes `workflow.deprecate_patch(NAME)`; the `*_before_*` histories are deleted with it.
   tests/unit/test_patches.py already replays today's histories in that form.
3. removed: after the namespace's retention period (histories with the marker are gone), the
   `deprecate_patch` call goes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    PATCHED = "patched"
    DEPRECATED = "deprecated"


@dataclass(frozen=True)
class Patch:
    name: str
    since: str  # the Interlock version that introduced it
    what: str
    step: Step = Step.PATCHED


PLAYBOOK_QUEUE = Patch(
    "playbooks-on-own-task-queue", "0.1.0", "playbooks run on `<queue>.playbooks`, bounded per worker"
)
AUDIT_BATCH = Patch(
    "audit-events-batched", "0.1.0", "back-to-back audit events go to the store in one activity"
)
REDERIVE = Patch(
    "continued-run-rederives-governance",
    "0.2.0",
    "a continued run re-derives governance from the policy and re-judges carried decisions",
)
DUPLICATE_KEY = Patch(
    "duplicate-needs-owner-key", "0.2.0", "a duplicate is attached only with the owner's dedup key"
)

PLAN_HOSTS = Patch(
    "plan-hash-binds-hosts", "0.2.0", "the plan hash binds each previewed task's host and the batches"
)
ROLLOUT = Patch(
    "rolling-execution", "0.2.0", "execution goes through the hosts batch by batch, rolling back on failure"
)

GRADUATION = Patch(
    "graduation-evaluated", "0.2.0", "each final status is followed by judging the recommender's standing"
)

PREVIEW_RETRY = Patch(
    "preview-retried-on-infrastructure",
    "0.2.0",
    "a preview that cannot reach a host is retried with backoff, then ends preview_failed",
)

ONE_RUN = Patch(
    "change-and-check-one-run",
    "0.2.0",
    "execute and verify (a rollback and its check) run in one Ansible run, unless verify_separately",
)

PATCHES = (
    PLAYBOOK_QUEUE,
    AUDIT_BATCH,
    REDERIVE,
    DUPLICATE_KEY,
    PLAN_HOSTS,
    ROLLOUT,
    GRADUATION,
    PREVIEW_RETRY,
    ONE_RUN,
)
