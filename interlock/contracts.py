"""The names that cross the Temporal boundary, in one place: workflow types, activities, Updates,
Signals and Queries. Registered names never change (every stored history must keep replaying);
code refers to these members instead of repeating string literals.
"""

from __future__ import annotations

from enum import StrEnum


class Workflow(StrEnum):
    REMEDIATION = "RemediationWorkflow"
    DEDUP_CLAIM = "InterlockDedupClaim"


class Activity(StrEnum):
    CHECK_PROPOSAL = "check_proposal"
    RECHECK_EVIDENCE = "recheck_evidence"
    GOVERNANCE_FOR = "governance_for"
    RUN_PLAYBOOK = "run_playbook"
    # A change and its check (execute + verify, rollback + verify_rollback) in one Ansible run.
    RUN_CHANGE = "run_change"
    PRECHECK_EXECUTION = "precheck_execution"
    NOTIFY = "notify"
    RECORD_AUDIT_EVENT = "record_audit_event"
    RECORD_AUDIT_EVENTS = "record_audit_events"
    CANCEL_REQUESTED_BY = "cancel_requested_by"
    # Earned autonomy: judge the recommender's standing after a final status.
    EVALUATE_GRADUATION = "evaluate_graduation"


class Update(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Signal(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    ADD_DUPLICATE = "add_duplicate"


class Query(StrEnum):
    STATUS = "status"
