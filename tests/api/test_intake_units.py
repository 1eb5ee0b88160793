"""Pure pieces of the intake: rate parsing, the token bucket, the duplicate query."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from interlock.api import ApiSettings, Rate, api_command
from interlock.api.duplicates import duplicate_query
from interlock.api.ratelimit import RateLimiter
from interlock.examples import example_proposal
from interlock.models import Proposal


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/minute", Rate(60, 60)),
        ("2/second", Rate(2, 1)),
        ("500/hour", Rate(500, 3600)),
        ("10/30s", Rate(10, 30)),
        (" 5 / m ", Rate(5, 60)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "60", "0/minute", "60/fortnight", "-1/s", "1/0s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Rate.parse(text)


def test_api_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERLOCK_API_PORT", "9999")
    monkeypatch.setenv("INTERLOCK_API_RATE", "5/second")
    monkeypatch.setenv("INTERLOCK_API_MAX_BODY", "1024")
    api = ApiSettings()
    assert (api.host, api.port, api.max_body, api.parsed_rate) == (
        "127.0.0.1",
        9999,
        1024,
        Rate(5, 1),
    )
    monkeypatch.setenv("INTERLOCK_API_RATE", "lots")
    with pytest.raises(ValueError):
        ApiSettings()


def test_token_bucket_allows_a_burst_then_refills_per_recommender() -> None:
    now = [0.0]
    limiter = RateLimiter(Rate(2, 1), clock=lambda: now[0])

    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0
    now[0] = 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(1.2) == "2"


def test_duplicate_query_names_action_service_and_incident() -> None:
    proposal = Proposal.model_validate(example_proposal(), strict=False)
    query = duplicate_query(proposal, "checkout-api")
    assert query is not None
    for part in (
        "WorkflowType = 'RemediationWorkflow'",
        "ExecutionStatus = 'Running'",
        "InterlockAction = 'restart_service'",
        "InterlockService = 'checkout-api'",
        "InterlockIncident = 'INC-1234'",
    ):
        assert part in query


def test_duplicate_query_refuses_values_that_could_break_out_of_quotes() -> None:
    doc = example_proposal()
    doc["incident"] = "INC-1' OR WorkflowId != '"
    proposal = Proposal.model_validate(doc, strict=False)
    assert duplicate_query(proposal, "checkout-api") is None


def test_api_command_mounts_with_an_api_port_option() -> None:
    app = typer.Typer()
    app.command("api")(api_command)
    app.command("other")(lambda: None)  # a group, as under `interlock`
    result = CliRunner().invoke(app, ["api", "--help"])
    assert result.exit_code == 0
    assert "--api-port" in result.stdout
