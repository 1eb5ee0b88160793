"""An installed Interlock is one package: a wheel built from this tree adds only `interlock` to
site-packages (no generic `workflows`, `activities` or `worker`) and carries its playbooks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[3]


def test_the_wheel_has_one_top_level_package_and_the_playbooks(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("interlock-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"interlock"}
    for expected in (
        "interlock/workflows/remediation.py",
        "interlock/activities/ansible.py",
        "interlock/worker/main.py",
        "interlock/playbooks/project/restart_service.yml",
        "interlock/playbooks/project/library/lab_service.py",
        "interlock/playbooks/inventory/hosts.yml",
        "interlock/playbooks/env/envvars",
        "interlock/playbooks/systemd/project/restart_service.yml",
        "interlock/playbooks/systemd/project/restart_service_verify.yml",
        "interlock/playbooks/systemd/project/restart_service_rollback.yml",
        "interlock/playbooks/systemd/project/tasks/validate.yml",
        "interlock/playbooks/systemd/inventory/hosts.yml",
        "interlock/playbooks/systemd/env/envvars",
        "interlock/playbooks/systemd/README.md",
        "interlock/default_policy.yaml",
        "interlock/py.typed",
    ):
        assert expected in names, expected


def test_every_package_folder_is_installed() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "interlock").rglob("__init__.py")}
    mapped = {"interlock.workflows", "interlock.activities", "interlock.worker", "interlock.playbooks"}
    assert found | mapped == listed
