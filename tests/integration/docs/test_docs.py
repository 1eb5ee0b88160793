"""The docs tree: the site builds with `mkdocs build --strict` (every link and anchor resolves),
the generated references match the code, and the README stays a short front page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts.docs_reference import main as docs_reference
from scripts.docs_reference import pages
from scripts.mkdocs_hooks import _existing

ROOT = Path(__file__).resolve().parents[3]


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for page in (
        "approvers",
        "policy",
        "auditors",
        "recommenders",
        "operators",
        "architecture",
        "security",
        "reference/policy",
        "reference/settings",
    ):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def test_the_generated_references_are_current() -> None:
    assert docs_reference(["--check"]) == 0, "run: .venv/bin/python scripts/docs_reference.py"
    generated = pages()
    policy = generated[ROOT / "docs" / "reference" / "policy.md"]
    # Every rule of the policy model is in the reference, down to the nested models.
    for field in ("`token_max_lifetime`", "`unsigned_allowed`", "`require_owner`", "## FreezeWindow"):
        assert field in policy
    settings = generated[ROOT / "docs" / "reference" / "settings.md"]
    assert "`TEMPORAL_ADDRESS`" in settings and "`INTERLOCK_API_PORT`" in settings
    modules = generated[ROOT / "docs" / "architecture.md"]
    assert "`workflows/remediation.py`" in modules and "`interlock/dedup.py`" in modules


def test_the_nav_drops_pages_not_written_yet(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("# here")
    nav = [{"Here": "here.md"}, {"Later": "later.md"}, {"Group": [{"Later": "later.md"}]}]
    assert _existing(nav, tmp_path) == [{"Here": "here.md"}]


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 150 <= len(readme.splitlines()) <= 250
    trust = readme.split("## Trust boundary", 1)[1].split("\n## ", 1)[0]
    assert len(trust.strip().splitlines()) <= 10 and "(docs/security.md)" in trust
    assert "User Metadata" in readme  # the tab the summary is in
