"""The dedup claim: a tiny workflow whose id is derived from a dedup key, held by one proposal.

Starting a workflow with a given id is atomic on the server, so when five recommenders submit
the same problem at once exactly one start succeeds and its proposal owns the key; the others
attach to that proposal. The claim needs no worker to exist (starting is enough), and it ends
by itself when the dedup window is over.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from interlock.contracts import Workflow
    from interlock.models import DedupClaim


@workflow.defn(name=Workflow.DEDUP_CLAIM)
class DedupClaimWorkflow:
    @workflow.run
    async def run(self, claim: DedupClaim) -> None:
        # Holding the id is the whole job: after the window the key is free again.
        await workflow.sleep(claim.window)
