"""The MCP tools: names, descriptions written for a model, and JSON schemas from the intake's models.

There are five and none decides: proposing and reading are all a recommender's token allows.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Annotated, Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field

from interlock.mcp.catalog import ActionCatalog
from interlock.mcp.views import MyProposals, ProposalDetail, ProposeResult, WaitResult
from interlock.models import PROPOSAL_ID, Proposal, ProposalStatus


class ToolName(StrEnum):
    LIST_ACTIONS = "list_actions"
    PROPOSE_REMEDIATION = "propose_remediation"
    GET_PROPOSAL = "get_proposal"
    WAIT_FOR_OUTCOME = "wait_for_outcome"
    LIST_MY_PROPOSALS = "list_my_proposals"


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(_Arguments):
    pass


ProposalId = Annotated[str, Field(pattern=PROPOSAL_ID.pattern, description="The proposal's id.")]


class GetProposalArguments(_Arguments):
    proposal_id: ProposalId


class WaitArguments(_Arguments):
    proposal_id: ProposalId
    timeout_seconds: Annotated[
        float, Field(ge=1, le=600, description="How long to wait at most (1-600 s).")
    ] = 60
    until: Annotated[
        Literal["final", "change"],
        Field(description="'final': until the proposal has ended; 'change': until its status changes."),
    ] = "final"


class ListArguments(_Arguments):
    status: Annotated[ProposalStatus | None, Field(description="Only proposals with this status.")] = None
    limit: Annotated[int, Field(ge=1, le=500, description="At most this many, newest first.")] = 50


INSTRUCTIONS = (
    "Interlock is an approval gate for remediation. You may propose a change; a person decides it. "
    "Start with list_actions to see what you may propose and which evidence justifies it. "
    "propose_remediation files a proposal; nothing runs until a human approves. Interlock checks "
    "every evidence item at its source, so cite only what you observed there. Follow a proposal with "
    "wait_for_outcome or get_proposal. No tool approves, rejects, pauses or resumes anything."
)

_DESCRIPTIONS: dict[ToolName, str] = {
    ToolName.LIST_ACTIONS: (
        "List what you may propose: each action with what it does to the target system, its "
        "parameters and their allowed values, the evidence sources that can justify it (with the ref "
        "format each expects and how Interlock checks it), and the services, environments and hosts "
        "in your scope. Your scope comes from your token. Call this before proposing: anything not "
        "listed is refused."
    ),
    ToolName.PROPOSE_REMEDIATION: (
        "Propose one remediation for a person to decide on. Nothing changes on any system when you "
        "call this. Interlock validates the proposal against the policy, fetches every evidence item "
        "from its source (an item its source does not confirm gets the proposal refused), scores the "
        "risk, previews the change in check mode, and then waits for a human approval. Only after a "
        "person approves does Ansible run the action, verify it, and roll it back if verification "
        "fails. Use an action, service, parameters and evidence sources from list_actions; the "
        "recommender is the one your token speaks for, so do not send `recommender`. proposal_id is "
        "your idempotency key: retrying with the same id and the same content returns the first "
        "answer, the same id with other content is refused. A proposal for a problem that already "
        "has an open proposal (same action, service, environment and incident) is attached to it as "
        "a duplicate: follow `follow_id`. A refusal is an error naming each field and the reason."
    ),
    ToolName.GET_PROPOSAL: (
        "Read one of your proposals: its status, the risk score with the factors behind it, the "
        "evidence as each source answered (fetched, supports the claim, confirmed), the decisions "
        "people made (who, approve or reject, signed or not), whose decision it waits for, and once "
        "final, the outcome (what ran, verified, rolled back, whether the evidence cleared). "
        "Read-only."
    ),
    ToolName.WAIT_FOR_OUTCOME: (
        "Wait until one of your proposals reaches a final status (until='final') or its status "
        "changes (until='change'), for at most timeout_seconds, sending progress notifications "
        "while it waits. A person decides in their own time: if the wait times out the proposal "
        "is still open, so call it again later. Nothing you do speeds up or forces a decision. "
        "Read-only."
    ),
    ToolName.LIST_MY_PROPOSALS: (
        "List your own proposals, newest first, with status, action, service and risk tier. "
        "Proposals of other recommenders are never shown. Read-only."
    ),
}

_READ_ONLY = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ANNOTATIONS: dict[ToolName, types.ToolAnnotations] = {
    ToolName.LIST_ACTIONS: _READ_ONLY,
    ToolName.PROPOSE_REMEDIATION: types.ToolAnnotations(
        # It files a proposal; the change itself needs a person's approval.
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    ToolName.GET_PROPOSAL: _READ_ONLY,
    ToolName.WAIT_FOR_OUTCOME: _READ_ONLY,
    ToolName.LIST_MY_PROPOSALS: _READ_ONLY,
}
_OUTPUTS: dict[ToolName, type[BaseModel]] = {
    ToolName.LIST_ACTIONS: ActionCatalog,
    ToolName.PROPOSE_REMEDIATION: ProposeResult,
    ToolName.GET_PROPOSAL: ProposalDetail,
    ToolName.WAIT_FOR_OUTCOME: WaitResult,
    ToolName.LIST_MY_PROPOSALS: MyProposals,
}
ARGUMENTS: dict[ToolName, type[_Arguments]] = {
    ToolName.LIST_ACTIONS: NoArguments,
    ToolName.GET_PROPOSAL: GetProposalArguments,
    ToolName.WAIT_FOR_OUTCOME: WaitArguments,
    ToolName.LIST_MY_PROPOSALS: ListArguments,
}


def proposal_input_schema() -> dict[str, Any]:
    """The intake's `Proposal` schema without `recommender`: the token says who proposes."""
    schema = copy.deepcopy(Proposal.model_json_schema())
    schema["properties"].pop("recommender")
    schema["required"] = [r for r in schema["required"] if r != "recommender"]
    schema["description"] = "A remediation proposal, as the HTTP intake takes it (without `recommender`)."
    return schema


def input_schema(name: ToolName) -> dict[str, Any]:
    if name is ToolName.PROPOSE_REMEDIATION:
        return proposal_input_schema()
    return ARGUMENTS[name].model_json_schema()


def tool_list() -> list[types.Tool]:
    return [
        types.Tool(
            name=name.value,
            title=name.value.replace("_", " "),
            description=_DESCRIPTIONS[name],
            input_schema=input_schema(name),
            output_schema=_OUTPUTS[name].model_json_schema(mode="serialization"),
            annotations=_ANNOTATIONS[name],
        )
        for name in ToolName
    ]
