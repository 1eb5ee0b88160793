from __future__ import annotations

import pytest

from interlock.evidence import (
    AlertClaim,
    ChangeClaim,
    HealthClaim,
    QueryClaim,
    RefError,
    parse_ref,
)
from interlock.evidence.refs import Matcher


def test_health_ref_names_a_service_or_a_path() -> None:
    claim = parse_ref("http-health", "checkout-api/health")
    assert claim == HealthClaim(service="checkout-api", path=None)
    assert claim.path_for("checkout-api") == "/health/checkout-api"
    assert parse_ref("http-health", "CHECKOUT API/health") == HealthClaim("CHECKOUT API", None)
    path = parse_ref("http-health", "/health/inventory-api")
    assert path == HealthClaim(service=None, path="/health/inventory-api")
    assert path.path_for("checkout-api") == "/health/inventory-api"


@pytest.mark.parametrize(
    "ref",
    ["checkout-api", "checkout-api/metrics", "http://evil/health", "/a/../admin", "/h?x=1", ""],
)
def test_bad_health_refs(ref: str) -> None:
    with pytest.raises(RefError, match="expected '<service>/health'"):
        parse_ref("http-health", ref)


@pytest.mark.parametrize(
    "ref",
    [
        'HighErrorRate{service="checkout-api"}',
        "HighErrorRate{service=checkout-api}",
        ' HighErrorRate { service = "checkout-api" , } ',
        "alertname=HighErrorRate,service=checkout-api",
        'service="checkout-api", alertname="HighErrorRate"',
    ],
)
def test_alert_ref_forms(ref: str) -> None:
    assert parse_ref("alertmanager", ref) == AlertClaim("HighErrorRate", "checkout-api", ())


def test_alert_ref_keeps_other_matchers_and_quoting() -> None:
    claim = parse_ref("alertmanager", r'HighErrorRate{severity=~"crit.*",team!="a\"b"}')
    assert claim == AlertClaim(
        "HighErrorRate",
        None,
        (Matcher("severity", "=~", "crit.*"), Matcher("team", "!=", 'a"b')),
    )
    assert claim.matchers[1].render() == r'team!="a\"b"'
    assert parse_ref("alertmanager", "ServiceDown") == AlertClaim("ServiceDown", None, ())
    spaced = parse_ref("alertmanager", 'HighErrorRate{service="CHECKOUT API"}')
    assert isinstance(spaced, AlertClaim) and spaced.service == "CHECKOUT API"


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ('HighErrorRate{service="checkout-api"', "expected"),
        ("service=checkout-api", "exactly one alertname"),
        ("alertname=~High.*", "exactly one alertname"),
        ('HighErrorRate{service=~"checkout.*"}', "one service"),
        ('HighErrorRate{service="a",service="b"}', "one service"),
        ('HighErrorRate{env=~"("}', "bad regexp"),
        ("HighErrorRate{service checkout-api}", "bad matcher"),
        ("", "expected"),
    ],
)
def test_bad_alert_refs(ref: str, problem: str) -> None:
    with pytest.raises(RefError, match=problem) as err:
        parse_ref("alertmanager", ref)
    assert "alertname=<name>" in str(err.value)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ('error_ratio{service="a"} > 0.05', ('error_ratio{service="a"}', ">", 0.05)),
        ("up{service='x'}>=1", ("up{service='x'}", ">=", 1.0)),
        ("error_ratio < 1e-3", ("error_ratio", "<", 0.001)),
        ("error_ratio <= .5", ("error_ratio", "<=", 0.5)),
        # Only the last comparison is the claim; the query may hold its own.
        ("(error_ratio > 0.1) > 0", ("(error_ratio > 0.1)", ">", 0.0)),
        ("x >= -2", ("x", ">=", -2.0)),
    ],
)
def test_query_refs(ref: str, expected: tuple[str, str, float]) -> None:
    assert parse_ref("prometheus", ref) == QueryClaim(*expected)


@pytest.mark.parametrize(
    "ref", ["error_ratio", "error_ratio > lots", "> 0.05", "x == 1", "x != 1", "x > > 1", ""]
)
def test_bad_query_refs(ref: str) -> None:
    with pytest.raises(RefError, match="<promql> <op> <threshold>"):
        parse_ref("prometheus", ref)


def test_query_claim_compares() -> None:
    claim = parse_ref("prometheus", "x >= 0.34")
    assert isinstance(claim, QueryClaim)
    assert claim.holds(0.34) and claim.holds(1) and not claim.holds(0.33)
    assert not claim.holds(float("nan"))


def test_change_refs() -> None:
    assert parse_ref("changes", "deploy:checkout-api:v2") == ChangeClaim("checkout-api", "v2")
    for ref in ["deploy:checkout-api", "restart:checkout-api:v2", "deploy::v2", "deploy:a:v 2"]:
        with pytest.raises(RefError, match="deploy:<service>:<release>"):
            parse_ref("changes", ref)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown source kind 'splunk'"):
        parse_ref("splunk", "anything")
