"""`interlock propose` refuses bad proposals with exit 2, names the field, and starts nothing."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from interlock.cli import app
from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import new_id


def mutate(path: str, value: Any) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return apply


DELETE = object()

BAD = [
    ("unknown action", "restart_service", mutate("action", "reboot_everything"), "action"),
    ("unknown field", "restart_service", mutate("priority", "high"), "priority"),
    ("missing field", "restart_service", mutate("rationale", DELETE), "rationale"),
    ("wrong type", "restart_service", mutate("confidence", "0.9"), "confidence"),
    ("confidence above 1", "restart_service", mutate("confidence", 1.5), "confidence"),
    ("confidence below 0", "restart_service", mutate("confidence", -0.1), "confidence"),
    ("unknown service", "restart_service", mutate("target.service", "billing-api"), "target.service"),
    (
        "shell metacharacters",
        "restart_service",
        mutate("target.service", "checkout-api; rm -rf /"),
        "target.service",
    ),
    (
        "release outside allow-list",
        "rollback_deployment",
        mutate("parameters.release", "v9"),
        "parameters.release",
    ),
    (
        "jinja in a parameter",
        "rollback_deployment",
        mutate("parameters.release", "{{ lookup('pipe','id') }}"),
        "parameters.release",
    ),
    ("path separator", "change_access", mutate("parameters.user", "../../etc/passwd"), "parameters.user"),
    ("user outside allow-list", "change_access", mutate("parameters.user", "root"), "parameters.user"),
    ("group outside allow-list", "change_access", mutate("parameters.group", "wheel"), "parameters.group"),
    ("bad change", "change_access", mutate("parameters.change", "delete"), "parameters.change"),
    (
        "ansible_ variable",
        "rollback_deployment",
        mutate("parameters.ansible_connection", "ssh"),
        "parameters",
    ),
    ("unknown parameter", "restart_service", mutate("parameters.force", "yes"), "parameters.force"),
    ("empty evidence", "restart_service", mutate("evidence", []), "evidence"),
    (
        "unapproved evidence source",
        "restart_service",
        mutate("evidence.0.source", "twitter"),
        "evidence.0.source",
    ),
]


@pytest.mark.parametrize(("name", "action", "change", "field"), BAD, ids=[b[0] for b in BAD])
async def test_bad_proposal_exits_2_and_starts_nothing(
    client: Client,
    settings: Settings,
    task_queue: str,
    tmp_path: Path,
    name: str,
    action: str,
    change: Any,
    field: str,
) -> None:
    doc = copy.deepcopy(example_proposal(action, proposal_id=new_id("bad")))
    change(doc)
    path = tmp_path / "proposal.json"
    path.write_text(json.dumps(doc))

    # In a thread: the command runs its own event loop.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["propose", str(path)], env=cli_env(settings, task_queue)
    )

    assert result.exit_code == 2, result.output
    assert field in result.stderr, result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(RPCError) as exc:
        await client.get_workflow_handle(doc["proposal_id"]).describe()
    assert exc.value.status == RPCStatusCode.NOT_FOUND


async def test_example_proposal_is_accepted_from_stdin_by_the_real_command(
    settings: Settings, worker: str, checkout_degraded: Lab
) -> None:
    """The issue's example document, through the installed `interlock` script and stdin."""
    doc = example_proposal("restart_service", proposal_id=new_id())
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "interlock"),
        "propose",
        "-",
        "--json",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(settings, worker),
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(json.dumps(doc).encode()), 120)
    assert proc.returncode == 0, stderr.decode()
    out = json.loads(stdout)
    assert out["proposal_id"] == doc["proposal_id"]
    assert out["status"] == "awaiting_approval"
