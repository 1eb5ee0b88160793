from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from interlock.lab import Lab
from tests.integration.lab.support import running_lab
from tests.integration.playbooks.support import PLAYBOOKS, PlaybookRun, RunPlaybook


@pytest.fixture(scope="module")
def private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of playbooks/, as ansible-runner writes artifacts into its private_data_dir."""
    target = tmp_path_factory.mktemp("runner") / "playbooks"
    shutil.copytree(PLAYBOOKS, target, ignore=shutil.ignore_patterns("artifacts", "__pycache__"))
    return target


@pytest.fixture(scope="module")
def run_playbook(private_data_dir: Path) -> RunPlaybook:
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(
        playbook: str,
        extravars: dict[str, Any] | None = None,
        *,
        check: bool = False,
        extravars_file: Path | None = None,
    ) -> PlaybookRun:
        # Interlock previews with --check --diff and executes with --diff.
        cmdline = ["--check --diff"] if check else ["--diff"]
        if extravars_file is not None:
            cmdline.append(f"-e @{extravars_file}")
        runner = ansible_runner.run(
            private_data_dir=str(private_data_dir),
            playbook=playbook,
            extravars=extravars,
            cmdline=" ".join(cmdline),
            quiet=True,
            # ansible-runner 2.4 takes the job timeout as `timeout` and the idle
            # timeout only through settings; run() has no job_timeout/idle_timeout.
            timeout=120,
            settings={"idle_timeout": 60},
            envvars=env,
            # Without this, ansible-runner 2.4 writes the first run's extravars, settings
            # and cmdline into env/ and every later run in this directory inherits them:
            # a real run after a preview would silently run with --check.
            suppress_env_files=True,
        )
        return PlaybookRun(
            status=runner.status,
            rc=runner.rc,
            events=list(runner.events),
        )

    return run


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture
def lab(shared_lab: Lab) -> Lab:
    """The module's lab, back in its starting state."""
    shared_lab.reset()
    return shared_lab
