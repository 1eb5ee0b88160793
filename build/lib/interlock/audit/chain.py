"""The hash chain: the canonical bytes of an audit event and how each event's hash links to the last.

hash = sha256(prev_hash + canonical JSON of every column but seq, prev_hash and hash), hex. The
canonical JSON is `json.dumps(columns, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
with `at` as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC), so anyone can recompute it without Interlock.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from pydantic_core import to_jsonable_python

from interlock.audit.events import AuditEventIn

GENESIS = "0" * 64
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# The hashed columns in canonical (sorted) order; `data` is spliced in as already-canonical JSON.
_SCALARS_BEFORE_DATA = ("action", "actor", "at")
_SCALARS_AFTER_DATA = (
    "event_id",
    "kind",
    "model_version",
    "proposal_id",
    "recommender",
    "risk_tier",
    "service",
    "status",
    "trace_id",
)
HASHED_COLUMNS = (*_SCALARS_BEFORE_DATA, "data", *_SCALARS_AFTER_DATA)


def canonical_json(value: Any) -> str:
    """Canonical JSON of any JSON-able value; NaN and infinities are refused (not JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_at(at: datetime) -> str:
    return at.astimezone(UTC).strftime(AT_FORMAT)


def _s(value: str | None) -> str:
    # json.dumps(ensure_ascii=False) encodes strings with this very function.
    return "null" if value is None else encode_basestring(value)


def canonical_record(
    action: str | None,
    actor: str | None,
    at: str,
    data: str,
    event_id: str,
    kind: str,
    model_version: str | None,
    proposal_id: str,
    recommender: str | None,
    risk_tier: str | None,
    service: str | None,
    status: str | None,
    trace_id: str | None,
) -> str:
    """The canonical JSON object of one event from its stored text forms (`at` and `data` canonical).

    Built by hand instead of through json.dumps because verify calls it for every row and the
    stored `data` text is already canonical: re-parsing it would halve the verify rate.
    """
    return (
        f'{{"action":{_s(action)},"actor":{_s(actor)},"at":"{at}","data":{data},'
        f'"event_id":{_s(event_id)},"kind":{_s(kind)},"model_version":{_s(model_version)},'
        f'"proposal_id":{_s(proposal_id)},"recommender":{_s(recommender)},'
        f'"risk_tier":{_s(risk_tier)},"service":{_s(service)},"status":{_s(status)},'
        f'"trace_id":{_s(trace_id)}}}'
    )


def event_record(event: AuditEventIn) -> dict[str, Any]:
    """The stored column values of an event, before seq and the hashes.

    Datetimes, enums and models inside `data` become their JSON form here, so the stored JSON
    (the engine serialises it with canonical_json) is exactly the text that was hashed.
    """
    return {
        "event_id": event.event_id,
        "proposal_id": event.proposal_id,
        "kind": event.kind.value,
        "at": event.at,
        "actor": event.actor,
        "status": event.status,
        "recommender": event.recommender,
        "model_version": event.model_version,
        "action": event.action,
        "service": event.service,
        "risk_tier": event.risk_tier,
        "trace_id": event.trace_id,
        "data": to_jsonable_python(event.data),
    }


def canonical_event(event: AuditEventIn) -> str:
    rec = event_record(event)
    return canonical_record(
        rec["action"],
        rec["actor"],
        canonical_at(event.at),
        canonical_json(rec["data"]),
        rec["event_id"],
        rec["kind"],
        rec["model_version"],
        rec["proposal_id"],
        rec["recommender"],
        rec["risk_tier"],
        rec["service"],
        rec["status"],
        rec["trace_id"],
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()
