"""Pure pieces of the intake: rate parsing, the token bucket, the dedup key and its settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from typer.testing import CliRunner

from interlock.api import ApiSettings, Rate, api_command
from interlock.api.ratelimit import RateLimiter
from interlock.dedup import claim_id
from interlock.examples import example_proposal
from interlock.models import Proposal
from interlock.policy import PolicyError, default_policy_text, load_policy, parse_policy


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


def test_dedup_key_is_action_canonical_service_environment_and_incident() -> None:
    policy = load_policy(None)
    doc = example_proposal(incident="INC-7")
    by_alias = {**doc, "target": {"service": "CHECKOUT API", "environment": "lab"}}
    first = Proposal.model_validate(doc, strict=False)
    second = Proposal.model_validate(by_alias, strict=False)

    key = policy.dedup.key_of(first, "checkout-api")

    assert key == "action=restart_service|service=checkout-api|environment=lab|incident=INC-7"
    canonical = policy.canonical_service(second.target.service)
    assert canonical == "checkout-api"
    assert policy.dedup.key_of(second, canonical) == key
    assert policy.dedup.key_of(first.model_copy(update={"incident": None}), "checkout-api") is None
    assert claim_id("tq-a", key) == claim_id("tq-a", key) != claim_id("tq-b", key)


def test_dedup_policy_settings_are_validated() -> None:
    text = default_policy_text()
    custom = parse_policy(
        text.replace(
            "  window: 24h\n  key: [action, service, environment, incident]",
            "  window: 2h\n  key: [action, service]",
        )
    )
    proposal = Proposal.model_validate(example_proposal(incident=None), strict=False)
    assert custom.dedup.window == timedelta(hours=2)
    assert custom.dedup.key_of(proposal, "checkout-api") == "action=restart_service|service=checkout-api"

    for bad, problem in (
        ("  key: [action, colour]", "dedup.key.1"),
        ("  key: [action, action]", "named twice"),
        ("  key: []", "dedup.key"),
        ("  window: soon", "dedup.window"),
    ):
        broken = (
            text.replace("  key: [action, service, environment, incident]", bad)
            if "key" in bad
            else (text.replace("  window: 24h", bad))
        )
        with pytest.raises(PolicyError, match=problem.replace(".", r"\.")):
            parse_policy(broken)
    off = parse_policy(text.replace("dedup:\n", "dedup:\n  enabled: false\n"))
    assert off.dedup.key_of(Proposal.model_validate(example_proposal(), strict=False), "checkout-api") is None


def test_api_command_mounts_with_an_api_port_option() -> None:
    app = typer.Typer()
    app.command("api")(api_command)
    app.command("other")(lambda: None)  # a group, as under `interlock`
    result = CliRunner().invoke(app, ["api", "--help"])
    assert result.exit_code == 0
    assert "--api-port" in result.stdout
