"""Governance fixtures: a state folder of its own per test, with a policy the test can edit.

Each test gets its own home (policy, pauses, notifications, audit) so a pause or a freeze in one
test never holds another test's proposals; the dev keys are the session's, copied.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.lab import Lab
from interlock.policy import load_policy
from interlock.settings import Settings

PolicyEdit = Callable[[dict[str, Any]], None]


@pytest.fixture
def governed(settings: Settings, tmp_path: Path) -> Callable[..., Settings]:
    """Settings with the dev-keyed default policy, changed by `edit`, in a fresh state folder."""

    def make(edit: PolicyEdit | None = None, playbooks_dir: Path | None = None) -> Settings:
        doc = yaml.safe_load((settings.home_dir / "policy.yaml").read_text())
        if edit is not None:
            edit(doc)
        home = tmp_path / "home"
        home.mkdir()
        shutil.copytree(settings.keys_dir, home / "keys")
        policy_file = home / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        made = Settings(
            home=home,
            lab_root=settings.lab_root,
            temporal_address=settings.temporal_address,
            policy_file=policy_file,
            playbooks_dir=playbooks_dir or settings.playbooks_dir,
            max_concurrent_playbooks=settings.max_concurrent_playbooks,
        )
        load_policy(made.effective_policy_file)  # a test's edit must give a valid policy
        return made

    return make


@pytest.fixture(autouse=True)
def incident(alerting_lab: Lab) -> Lab:
    """Every governance test starts from the lab's starting state with checkout-api degraded:
    the example proposals' evidence is then confirmed at its sources, as in production."""
    return alerting_lab
