"""Interlock's playbook activity against plain `ansible-playbook`, for a one-task and a twenty-task
playbook (issue 20, item 2): what ansible-runner and the activity add per run, and whether it
grows with the tasks (event handling, artifacts) or is paid once (start-up, pty, the door).

The activity runs as the worker runs it (PlaybookRunner.run_playbook, in Temporal's activity
test environment: no server, so no dispatch is counted), interleaved run by run with plain
`ansible-playbook` over the same tree, inventory and extra vars. Each task runs a module
(`ansible.builtin.command: /bin/true`) on the lab host, so it is a real module execution.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from temporalio.testing import ActivityEnvironment

from bench.measure import Figure, percentile
from interlock.activities.ansible import PlaybookRunner, ansible_env, playbooks_digest
from interlock.models import PlaybookRun, Stage
from interlock.policy import default_policy_text, load_policy
from interlock.settings import Settings

SIZES = {"one_task": 1, "twenty_tasks": 20}


def task_tree(root: Path, template: Settings) -> Settings:
    """A playbook tree and policy with an action per size: N module tasks, a no-op verify and
    rollback, on the lab's inventory (localhost, local connection)."""
    playbooks = root / "playbooks"
    shutil.copytree(template.playbooks_dir / "inventory", playbooks / "inventory")
    shutil.copytree(template.playbooks_dir / "env", playbooks / "env")
    project = playbooks / "project"
    project.mkdir(parents=True)
    doc = yaml.safe_load(default_policy_text())
    base = doc["actions"]["restart_service"]
    for name, n in SIZES.items():
        tasks = [
            {"name": f"step {i + 1}", "ansible.builtin.command": "/bin/true", "changed_when": False}
            for i in range(n)
        ]
        (project / f"{name}.yml").write_text(
            yaml.safe_dump([{"name": name, "hosts": "lab", "gather_facts": False, "tasks": tasks}])
        )
        doc["actions"][name] = {
            **{k: v for k, v in base.items() if k not in ("facts", "lab_vars", "settle_time", "playbooks")},
            "playbooks": {"run": f"{name}.yml", "verify": f"{name}.yml", "rollback": f"{name}.yml"},
        }
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return template.model_copy(
        update={"policy_file": policy, "playbooks_dir": playbooks, "artifacts_dir": root / "artifacts"}
    )


def plain(settings: Settings, playbook: Path | str, extra: dict[str, object], check: bool = False) -> float:
    """`ansible-playbook` alone, with the tree's inventory and env and these extra vars; wall
    seconds. `playbook`: a name in the tree's project, or a path."""
    envvars = yaml.safe_load((settings.playbooks_dir / "env" / "envvars").read_text()) or {}
    env = {**os.environ, **{k: str(v) for k, v in envvars.items()}, **ansible_env()}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "extra.json").write_text(json.dumps(extra))
        argv = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(settings.playbooks_dir / "inventory"),
            "-e",
            f"@{tmp}/extra.json",
            "--diff",
            *(["--check"] if check else []),
            str(settings.playbooks_dir / "project" / playbook),
        ]
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"plain ansible-playbook failed ({done.returncode}): {done.stdout[-2000:]}")
    return elapsed


async def measure(workdir: Path, template: Settings, runs: int) -> list[Figure]:
    settings = task_tree(workdir / "tasks", template)
    runner = PlaybookRunner(settings)
    env = ActivityEnvironment()
    policy = load_policy(settings.effective_policy_file)
    digest = playbooks_digest(settings.playbooks_dir)
    figures: list[Figure] = []
    for name, n in SIZES.items():
        activity_s: list[float] = []
        plain_s: list[float] = []
        for _ in range(runs + 1):  # the first pair warms the caches and is not counted
            run = PlaybookRun(
                proposal_id=f"tasks-{uuid.uuid4().hex[:8]}",
                action=name,
                stage=Stage.EXECUTE,
                service="checkout-api",
                parameters={},
            )
            extra = runner.extra_vars(run, policy.actions[name], digest)
            p = await asyncio.to_thread(plain, settings, f"{name}.yml", extra)
            t = time.perf_counter()
            result = await env.run(runner.run_playbook, run)
            a = time.perf_counter() - t
            if not result.ok or len(result.tasks) != n:
                raise RuntimeError(f"{name}: {result.status} {result.error} ({len(result.tasks)} tasks)")
            plain_s.append(p)
            activity_s.append(a)
        activity_s, plain_s = activity_s[1:], plain_s[1:]
        ratio = percentile(activity_s, 50) / percentile(plain_s, 50)
        extra_s = percentile(activity_s, 50) - percentile(plain_s, 50)
        figures.append(
            Figure(
                "Ansible overhead",
                f"playbook activity, {n} task(s) (no Temporal dispatch)",
                "s",
                activity_s,
                baseline=plain_s,
                baseline_label="plain `ansible-playbook --diff`, same playbook, inventory and extra vars",
                target="ratio <= 1.10",
                met=ratio <= 1.10,
                judged_on=f"ratio of medians {ratio:.2f}; {extra_s:+.2f} s per run",
                size=f"{runs} runs each, interleaved, {n} x `command: /bin/true` on the lab host",
                note="PlaybookRunner.run_playbook in temporalio.testing.ActivityEnvironment: the door "
                "(policy, digest, extra vars), ansible-runner with its event callback and artifacts",
            )
        )
    return figures
