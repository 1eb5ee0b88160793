"""`interlock scorecard`, `interlock baseline import` and `interlock report --html`, run as a team
lead would, on a generated history; the report's charts rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from interlock.audit import open_store
from interlock.audit.standing import evaluate_graduation
from interlock.autonomy import GraduationInput
from interlock.cli import app
from interlock.policy import default_policy_text, load_policy
from interlock.settings import Settings
from tests.integration.autonomy.history import generate

BASELINE = """number,category,service,opened_at,resolved_at,first_response_at
INC1,outage,checkout-api,2026-01-05T10:00:00Z,2026-01-05T14:00:00Z,2026-01-05T10:40:00Z
INC2,outage,inventory-api,2026-01-06T10:00:00Z,2026-01-06T12:00:00Z,2026-01-06T10:20:00Z
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    doc = yaml.safe_load(default_policy_text())
    doc["graduation"] = [
        {
            "action": "restart_service",
            "window": "3650d",
            "promote": {"approve": {"min_proposals": 3, "max_false_recommendation_rate": 0.9}},
            "demote": {"min_proposals": 1, "max_rollback_rate": 0.5},
        }
    ]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(doc))
    made, events = generate(n=40)
    settings = Settings(home=tmp_path)
    policy = load_policy(settings.effective_policy_file)
    with open_store(settings) as store:
        store.append_many(events[:20])
        store.append_many(events[20:])
        for g in made:  # judged after each final, as the workflow does
            evaluate_graduation(
                store,
                policy,
                GraduationInput(
                    proposal_id=g.proposal_id,
                    recommender=g.recommender,
                    model_version=g.model_version,
                    action=g.action,
                    service=g.service,
                    environment="lab",
                    status=g.status,
                    at=g.final_at,
                ),
            )
    (tmp_path / "itsm.csv").write_text(BASELINE)
    return tmp_path


def invoke(home: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "INTERLOCK_HOME": str(home),
        "COLUMNS": "250",
        "INTERLOCK_POLICY": None,
        "INTERLOCK_DATABASE_URL": None,
    }
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_scorecard_baseline_and_standing(home: Path) -> None:
    code, stdout, _ = invoke(home, "baseline", "import", str(home / "itsm.csv"))
    assert code == 0 and "2 incident(s) imported, 0 already there" in stdout
    code, stdout, _ = invoke(home, "scorecard", "--action", "restart_service", "--json")
    assert code == 0
    card = json.loads(stdout)
    assert card["baseline"]["incidents"] == 2 and card["baseline"]["mttr_mean_seconds"] == 3 * 3600
    assert {p["action"] for p in card["pairs"]} == {"restart_service"}
    for pair in card["pairs"]:
        [standing] = pair["standings"]
        assert standing["rule"] == "restart_service/*/*"
        assert standing["mode"] in ("shadow", "approve")
        if pair["mttr_mean_seconds"] is not None and pair["baseline"]:
            assert pair["mttr_vs_baseline"] == pytest.approx(
                pair["mttr_mean_seconds"] / pair["baseline"]["mttr_mean_seconds"]
            )
    assert any(s["mode"] == "approve" for p in card["pairs"] for s in p["standings"])
    code, stdout, _ = invoke(home, "scorecard", "--recommender", "opsgpt", "--since", "2026-05-01")
    assert code == 0 and "opsgpt" in stdout and "copilot" not in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scorecard", "--since", "lately"), "not a duration"),
        (("scorecard", "--since", "2026-13-45"), "is not a date"),
        (("baseline", "import", "missing.csv"), "cannot read"),
        (("report", "--html", "r.html", "--bucket", "often"), "not a duration"),
    ],
)
def test_bad_input_is_one_line(home: Path, args: tuple[str, ...], message: str) -> None:
    code, _, stderr = invoke(home, *args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


class Charts(HTMLParser):
    """The report's charts and what they draw, and anything that would fetch from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, int]] = {}
        self.current: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.current = a.get("data-chart") or "?"
            self.charts[self.current] = {}
        elif self.current is not None:
            self.charts[self.current][tag] = self.charts[self.current].get(tag, 0) + 1
        for name in ("src", "href"):
            if a.get(name):
                self.external.append(f"{tag} {name}={a[name]}")
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.current = None


def test_the_html_report_renders_its_charts(home: Path) -> None:
    invoke(home, "baseline", "import", str(home / "itsm.csv"))
    report = home / "report.html"
    code, stdout, stderr = invoke(home, "report", "--html", str(report), "--bucket", "6h")
    assert code == 0, stderr
    assert "mode change(s)" in stdout
    parsed = Charts()
    parsed.feed(report.read_text())
    assert parsed.external == []  # self-contained: nothing is fetched
    assert {"baseline-mttr", "baseline-response", "modes-0", "rates-0", "volume-0", "mttr-0"} <= set(
        parsed.charts
    )
    assert parsed.charts["rates-0"].get("circle", 0) > 0 and parsed.charts["volume-0"].get("polyline") == 1
    assert parsed.charts["baseline-mttr"].get("rect", 0) >= 2
    assert parsed.charts["modes-0"].get("polyline") == 1

    # The browser is part of the test setup (scripts/test installs it): CI fails without it.
    import playwright.sync_api as playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Chromium (Debian's chromium package) for the report test")
        pytest.skip("no Chromium here")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            sizes = page.eval_on_selector_all(
                "svg.chart",
                "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.dataset.chart,"
                " r.width, r.height, e.querySelectorAll('polyline,rect,circle').length] })",
            )
            assert requests == [report.as_uri()]  # nothing but the file itself
        finally:
            browser.close()
    drawn = {name: (w, h, marks) for name, w, h, marks in sizes}
    assert set(parsed.charts) == set(drawn)
    for name, (w, h, marks) in drawn.items():
        assert w > 100 and h > 50 and marks > 0, name
