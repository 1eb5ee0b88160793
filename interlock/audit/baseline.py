"""The baseline: how incidents went before the pilot (an ITSM export), kept beside the audit trail.

`interlock baseline import FILE` reads a CSV with one incident a row; the scorecard compares the
pilot's MTTR and time to first response with the baseline's for the same services.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, MetaData, String, Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from interlock.audit.store import AuditStore, AuditStoreError, UtcDateTime, one_line

BASELINE = Table(
    "baseline_incidents",
    MetaData(),
    Column("incident_id", String(128), primary_key=True),
    Column("incident_type", String(256)),
    Column("service", String(256)),
    Column("opened", UtcDateTime(), nullable=False),
    Column("resolved", UtcDateTime()),
    Column("first_response", UtcDateTime()),
    Column("source", String(256), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)

# Header names as ITSM exports spell them (ServiceNow, Jira Service Management, PagerDuty...),
# folded to lower case with spaces and dashes as underscores.
COLUMNS: dict[str, tuple[str, ...]] = {
    "incident_id": ("incident_id", "id", "number", "incident", "key", "incident_number"),
    "incident_type": ("incident_type", "type", "category", "issue_type"),
    "service": ("service", "business_service", "cmdb_ci", "affected_service", "component"),
    "opened": ("opened", "opened_at", "created", "created_at", "sys_created_on"),
    "resolved": ("resolved", "resolved_at", "closed_at", "resolution_date"),
    "first_response": ("first_response", "first_response_at", "responded_at", "acknowledged_at"),
}
MAX_ROWS = 200_000


class BaselineError(ValueError):
    """A baseline file that cannot be imported; the message names the line and the problem."""


class BaselineIncident(BaseModel):
    incident_id: str
    incident_type: str | None
    service: str | None
    opened: datetime
    resolved: datetime | None
    first_response: datetime | None


def _header(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _time(value: str, line: int, column: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BaselineError(f"line {line}: {column} {text[:40]!r} is not an ISO 8601 time") from None
    # Exports without a zone are read as UTC (what ITSM tools export by default).
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_baseline(text: str) -> list[BaselineIncident]:
    """The incidents of a CSV export; any bad row refuses the whole file (nothing half-imported)."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise BaselineError("the file is empty: expected a CSV header row")
    found = {_header(h): h for h in reader.fieldnames if h}
    names: dict[str, str] = {}
    for column, aliases in COLUMNS.items():
        hit = next((found[a] for a in aliases if a in found), None)
        if hit is not None:
            names[column] = hit
    for needed in ("opened", "resolved"):
        if needed not in names:
            raise BaselineError(f"no {needed} column (accepted headers: {', '.join(COLUMNS[needed])})")
    if "service" not in names and "incident_type" not in names:
        raise BaselineError("no service or incident type column: the baseline cannot be matched")
    incidents: list[BaselineIncident] = []
    for line, row in enumerate(reader, start=2):
        if len(incidents) >= MAX_ROWS:
            raise BaselineError(f"more than {MAX_ROWS} rows: split the export")
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue

        def cell(column: str, row: dict[str, Any] = row) -> str:
            value = row.get(names[column]) if column in names else None
            return value.strip() if isinstance(value, str) else ""

        opened = _time(cell("opened"), line, "opened")
        if opened is None:
            raise BaselineError(f"line {line}: opened is empty")
        resolved = _time(cell("resolved"), line, "resolved")
        first = _time(cell("first_response"), line, "first_response")
        for label, value in (("resolved", resolved), ("first_response", first)):
            if value is not None and value < opened:
                raise BaselineError(f"line {line}: {label} is before opened")
        identity = (
            cell("incident_id")
            or hashlib.sha256("\x1f".join(cell(c) for c in COLUMNS).encode()).hexdigest()[:32]
        )
        lengths = {"incident_id": 128, "service": 256, "incident_type": 256}
        for label, limit in lengths.items():
            if len(identity if label == "incident_id" else cell(label)) > limit:
                raise BaselineError(f"line {line}: {label} is longer than {limit} characters")
        incidents.append(
            BaselineIncident(
                incident_id=identity,
                incident_type=cell("incident_type") or None,
                service=cell("service") or None,
                opened=opened,
                resolved=resolved,
                first_response=first,
            )
        )
    if not incidents:
        raise BaselineError("no incidents in the file (only a header)")
    return incidents


def import_baseline(store: AuditStore, incidents: list[BaselineIncident], source: str) -> int:
    """Store the incidents; ones already imported (same incident id) are skipped. Returns how
    many are new."""
    now = datetime.now(UTC)
    try:
        with store.engine.begin() as conn:
            have: set[str] = set()
            ids = [i.incident_id for i in incidents]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(BASELINE.c.incident_id).where(BASELINE.c.incident_id.in_(chunk))
                have.update(conn.execute(query).scalars())
            rows, seen = [], set(have)
            for i in incidents:
                if i.incident_id in seen:
                    continue
                seen.add(i.incident_id)
                rows.append({**i.model_dump(), "source": source[:256], "imported_at": now})
            for start in range(0, len(rows), 1000):
                conn.execute(BASELINE.insert(), rows[start : start + 1000])
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot write the baseline: {one_line(exc)}") from exc
    return len(rows)


def baseline_by_service(store: AuditStore) -> dict[str | None, dict[str, float | int]]:
    """Per service (None: all incidents): how many incidents, and the sums the means come from.

    Sums rather than means so the figures of several services combine exactly.
    """
    from interlock.audit.metrics import epoch

    b = BASELINE.c
    mttr = epoch(b.resolved) - epoch(b.opened)
    response = epoch(b.first_response) - epoch(b.opened)
    columns: list[Any] = [
        func.count().label("incidents"),
        func.count(b.resolved).label("resolved"),
        func.coalesce(func.sum(mttr), 0.0).label("mttr_sum"),
        func.count(b.first_response).label("responded"),
        func.coalesce(func.sum(response), 0.0).label("response_sum"),
    ]
    try:
        with store.engine.connect() as conn:
            per = conn.execute(select(b.service, *columns).group_by(b.service)).all()
            total = conn.execute(select(*columns)).one()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the baseline: {one_line(exc)}") from exc
    found: dict[str | None, dict[str, float | int]] = {}
    for row in per:
        if row.service is not None:
            found[row.service] = _sums(row)
    found[None] = _sums(total)
    return found


def _sums(row: Any) -> dict[str, float | int]:
    return {
        "incidents": int(row.incidents or 0),
        "resolved": int(row.resolved or 0),
        "mttr_sum": float(row.mttr_sum or 0.0),
        "responded": int(row.responded or 0),
        "response_sum": float(row.response_sum or 0.0),
    }


def combined(sums: list[dict[str, float | int]]) -> dict[str, float | int | None]:
    """Means over several services' baseline sums."""
    incidents = sum(int(s["incidents"]) for s in sums)
    resolved = sum(int(s["resolved"]) for s in sums)
    responded = sum(int(s["responded"]) for s in sums)
    mttr = sum(float(s["mttr_sum"]) for s in sums)
    response = sum(float(s["response_sum"]) for s in sums)
    return {
        "incidents": incidents,
        "mttr_mean_seconds": mttr / resolved if resolved else None,
        "first_response_mean_seconds": response / responded if responded else None,
    }
