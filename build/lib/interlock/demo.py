"""`interlock demo`: a demo recommender that turns the lab's alerts into proposals.

It watches the lab monitor's Alertmanager API (`/api/v2/alerts`), proposes the matching
remediation through the HTTP intake (or, with `--mcp`, through its MCP endpoint) with its own
token, once per alert (the proposal id is derived from the alert, so a restarted demo gets the
same answers), and follows each proposal until it is final. It holds no Temporal credentials: it
can only propose.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console

from interlock.client import IdempotencyConflict, IntakeError, RecommenderClient, SubmitResult
from interlock.models import Proposal, ProposalStatus
from interlock.settings import Settings
from interlock.tokens import TokenStore, intake_db_path

if TYPE_CHECKING:
    from interlock.mcp.agent import McpRecommenderClient

log = logging.getLogger(__name__)

RECOMMENDER = "demo-bot"
MODEL_VERSION = "demo-bot/rules-1"
# What the demo proposes for each alert the lab monitor raises.
REMEDIATIONS: dict[str, tuple[str, str, float]] = {
    "HighErrorRate": (
        "restart_service",
        "{service} fails part of its requests ({summary}); a restart clears a degraded worker.",
        0.8,
    ),
    "ServiceDown": (
        "restart_service",
        "{service} does not answer ({summary}); restarting it is the first thing to try.",
        0.7,
    ),
}

out = Console(highlight=False, soft_wrap=True)


class DemoError(RuntimeError):
    pass


@dataclass
class Alert:
    name: str
    service: str
    fingerprint: str
    starts_at: str
    summary: str

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Alert | None:
        labels = raw.get("labels") or {}
        if not labels.get("alertname") or not labels.get("service"):
            return None
        return cls(
            name=str(labels["alertname"]),
            service=str(labels["service"]),
            fingerprint=str(raw.get("fingerprint", "")),
            starts_at=str(raw.get("startsAt", "")),
            summary=str((raw.get("annotations") or {}).get("summary", "")),
        )

    @property
    def firing(self) -> str:
        """This firing of this alert: its label fingerprint and when it started."""
        return f"{self.fingerprint}-{_compact(self.starts_at)}"

    @property
    def incident(self) -> str:
        """Alerts are grouped into incidents by service (Alertmanager's `group_by: [service]`):
        while a proposal for the service is open, a further alert about it (such as the
        ServiceDown a restart itself causes) is attached to it as a duplicate."""
        return f"alerts:{self.service}"


def _compact(timestamp: str) -> str:
    return re.sub(r"[^0-9T]", "", timestamp.split(".")[0])


def proposal_for(alert: Alert, environment: str = "lab") -> Proposal | None:
    """The remediation the demo proposes for an alert, or None for alerts it does not know."""
    known = REMEDIATIONS.get(alert.name)
    if known is None:
        return None
    action, rationale, confidence = known
    pid = f"demo-{alert.firing}"
    return RecommenderClient.build_proposal(
        proposal_id=re.sub(r"[^A-Za-z0-9._-]", "-", pid)[:128],
        recommender=RECOMMENDER,
        model_version=MODEL_VERSION,
        action=action,
        service=alert.service,
        environment=environment,
        rationale=rationale.format(service=alert.service, summary=alert.summary or alert.name),
        confidence=confidence,
        incident=alert.incident,
        evidence=[
            # A check the policy defines for the source, cited by name for the alert's service.
            RecommenderClient.evidence("lab-monitor", "unhealthy", f"{alert.name}: {alert.summary}"[:2000])
        ],
    )


def demo_token(settings: Settings) -> str:
    """The demo's own token: kept in the state folder (mode 0600), created on first use."""
    path = settings.home_dir / f"{RECOMMENDER}.token"
    store = TokenStore(intake_db_path(settings.home_dir))
    try:
        if path.exists():
            token = path.read_text().strip()
            if store.authenticate(token) == RECOMMENDER:
                return token
        token = store.create(RECOMMENDER)
    finally:
        store.engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    out.print(f"created a token for {RECOMMENDER} (kept in {path}; revoke: interlock tokens revoke)")
    return token


def monitor_url(settings: Settings) -> str:
    from interlock.lab import Lab

    lab = Lab(settings.lab_dir)
    if not lab.exists():
        raise DemoError(f"no lab at {settings.lab_dir}: start the stack with `interlock up` first")
    return f"http://127.0.0.1:{lab.config['monitor_port']}"


class Recommender(Protocol):
    """What the demo needs of its channel: the SDK client, or the MCP client."""

    def propose(self, proposal: Proposal) -> SubmitResult: ...

    def get(self, proposal_id: str) -> dict[str, Any]: ...


@dataclass
class DemoRecommender:
    sdk: Recommender
    alerts_url: str
    proposed: dict[str, str] = field(default_factory=dict)  # alert firing -> proposal to follow
    last_status: dict[str, str] = field(default_factory=dict)
    refused: int = 0

    def alerts(self) -> list[Alert]:
        try:
            response = httpx.get(self.alerts_url, params={"active": "true"}, timeout=5)
            response.raise_for_status()
            raw = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DemoError(f"cannot read alerts from {self.alerts_url}: {exc}") from None
        return [a for a in (Alert.parse(r) for r in raw if isinstance(r, dict)) if a is not None]

    def poll(self) -> int:
        """Propose for every new alert and report status changes; returns how many it proposed."""
        count = 0
        for alert in self.alerts():
            if alert.firing in self.proposed:
                continue
            proposal = proposal_for(alert)
            if proposal is None:
                out.print(f"alert {alert.name} on {alert.service}: no remediation known; skipped")
                continue
            try:
                result = self.sdk.propose(proposal)
            except IdempotencyConflict:
                # The id comes from the alert: an earlier run proposed it (with evidence observed
                # then). That proposal is the one to follow.
                self.proposed[alert.firing] = proposal.proposal_id
                out.print(
                    f"alert {alert.name} on {alert.service} -> {proposal.action} "
                    f"{proposal.proposal_id}: already proposed"
                )
                continue
            except IntakeError as exc:
                out.print(f"alert {alert.name} on {alert.service}: refused: {exc}", markup=False)
                self.refused += 1
                continue
            followed = result.follow_id
            self.proposed[alert.firing] = followed
            count += 1
            if result.duplicate_of:
                what = f"attached to open proposal {result.duplicate_of} as a duplicate"
            elif result.created:
                what = "submitted"
            else:
                what = "already proposed"
            out.print(
                f"alert {alert.name} on {alert.service} -> {proposal.action} "
                f"{result.proposal_id}: {what} ({result.status.value})"
            )
        self.follow()
        return count

    def follow(self) -> None:
        for followed in sorted(set(self.proposed.values())):
            if ProposalStatus(self.last_status.get(followed, "submitted")).is_final:
                continue
            try:
                status = self.sdk.get(followed)["status"]
            except IntakeError as exc:
                log.debug("cannot read %s: %s", followed, exc)
                continue
            if status != self.last_status.get(followed):
                self.last_status[followed] = status
                hint = (
                    f'  (interlock approve {followed} --as alice --reason "...")'
                    if status == ProposalStatus.AWAITING_APPROVAL
                    else ""
                )
                out.print(f"{followed}: {status}{hint}")


def demo_command(
    url: Annotated[
        str | None,
        typer.Option(help="Intake URL (default: http://INTERLOCK_API_HOST:INTERLOCK_API_PORT)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="INTERLOCK_DEMO_TOKEN",
            help=f"A token for {RECOMMENDER}; by default one is created and kept in the state folder.",
        ),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once, propose, and exit.")] = False,
    mcp: Annotated[
        bool, typer.Option("--mcp", help="Act through the intake's MCP endpoint (/mcp), as an agent would.")
    ] = False,
) -> None:
    """A demo recommender: proposes remediations for the lab's alerts through the intake API."""
    from interlock.api import ApiSettings

    try:
        settings = Settings()
        api = ApiSettings()
    except ValidationError as exc:
        typer.echo(f"error: invalid setting: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        alerts_url = f"{monitor_url(settings)}/api/v2/alerts"
        intake = (url or f"http://{api.host}:{api.port}").rstrip("/")
        secret = token or demo_token(settings)
        channel: RecommenderClient | McpRecommenderClient
        if mcp:
            from interlock.mcp.agent import McpRecommenderClient

            channel = McpRecommenderClient(intake, secret)
        else:
            channel = RecommenderClient(intake, secret, max_attempts=3)
        via = " through MCP" if mcp else ""
        out.print(f"{RECOMMENDER} watching {alerts_url}, proposing to {intake}{via}")
        with channel as sdk:
            demo = DemoRecommender(sdk, alerts_url)
            while True:
                demo.poll()
                if once:
                    if demo.refused:
                        raise typer.Exit(1)
                    return
                time.sleep(interval)
    except (DemoError, IntakeError) as exc:
        # IntakeError: the MCP endpoint cannot be reached (the SDK client retries each call instead).
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
