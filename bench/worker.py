"""A worker process for the benchmarks: `interlock worker`, optionally with the no-op playbooks.

    python -m bench.worker --noop-playbooks --record executions.jsonl

Settings come from the environment as for `interlock worker`. `--record` appends the wall-clock
time each execution activity starts, so a benchmark in another process can measure latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

from bench.noop import NoopPlaybooks
from interlock.models import ChangeResult, PlaybookResult, PlaybookRun, Stage
from interlock.settings import Settings
from interlock.temporal import connect
from interlock.worker.main import build_worker


async def main(noop: bool, record: Path | None) -> None:
    settings = Settings()
    client = await connect(settings)
    stand_in = None
    if noop:
        playbooks = NoopPlaybooks(settings)
        stand_in = [playbooks.run_playbook, playbooks.run_change]
        if record is not None:
            from temporalio import activity

            def note(run: PlaybookRun) -> None:
                if run.stage is Stage.EXECUTE:
                    with record.open("a") as f:
                        f.write(json.dumps({"proposal_id": run.proposal_id, "at": time.time()}) + "\n")

            @activity.defn(name="run_playbook")
            async def recorded(run: PlaybookRun) -> PlaybookResult:
                note(run)
                return await playbooks.run_playbook(run)

            @activity.defn(name="run_change")
            async def recorded_change(run: PlaybookRun) -> ChangeResult:
                note(run)
                return await playbooks.run_change(run)

            stand_in = [recorded, recorded_change]
    worker = build_worker(client, settings, stand_in=stand_in)
    logging.getLogger("bench.worker").info("worker polling task queue %s", settings.task_queue)
    await worker.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-playbooks", action="store_true", help="no-op stand-in for Ansible")
    parser.add_argument("--record", type=Path, help="append execution start times here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(args.noop_playbooks, args.record))
