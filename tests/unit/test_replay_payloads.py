"""Bulk replay skips the SDK's payload passes only when they can do nothing.

Without a payload codec or external storage (Interlock's converter) the six visitor passes over
each activation and completion hand every payload back unchanged: they are skipped. With a codec
configured, the SDK's own passes run and the codec sees the history's payloads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from interlock.audit import replay_payloads
from interlock.audit.history import load_history, replay_many, replayer
from interlock.temporal import DATA_CONVERTER
from interlock.workflows.remediation import RemediationWorkflow

HISTORY = Path(__file__).parent.parent / "histories" / "duplicates_attached.json"


class CountingCodec(PayloadCodec):
    """A codec that changes nothing and counts what it is given (so the history still decodes)."""

    def __init__(self) -> None:
        self.decoded = 0
        self.encoded = 0

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.encoded += len(payloads)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.decoded += len(payloads)
        return list(payloads)


@pytest.fixture
def sdk_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the SDK's own decode/encode functions run (they still do the work)."""
    calls = {"decode": 0, "encode": 0}
    decode, encode = replay_payloads._SDK_DECODE, replay_payloads._SDK_ENCODE

    async def counted_decode(*args: Any, **kwargs: Any) -> Any:
        calls["decode"] += 1
        return await decode(*args, **kwargs)

    async def counted_encode(*args: Any, **kwargs: Any) -> Any:
        calls["encode"] += 1
        return await encode(*args, **kwargs)

    monkeypatch.setattr(replay_payloads, "_SDK_DECODE", counted_decode)
    monkeypatch.setattr(replay_payloads, "_SDK_ENCODE", counted_encode)
    return calls


async def test_without_a_codec_the_passes_are_skipped_and_replay_still_checks(
    sdk_calls: dict[str, int],
) -> None:
    history = load_history(HISTORY.read_text(), HISTORY.stem)
    before = dict(replay_payloads.skipped)

    (outcome,) = await replay_many([history], jobs=1)

    assert outcome.ok, outcome.error
    assert replay_payloads.skipped["decode"] > before["decode"]
    assert replay_payloads.skipped["encode"] > before["encode"]
    assert sdk_calls == {"decode": 0, "encode": 0}


async def test_skipping_still_fails_a_history_the_code_no_longer_matches() -> None:
    text = HISTORY.read_text().replace('"check_proposal"', '"check_proposal_renamed"')
    history = load_history(text, "changed")

    result = await replayer(sandboxed=False).replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is not None


async def test_with_a_codec_the_sdk_passes_run_and_the_codec_sees_the_payloads(
    sdk_calls: dict[str, int],
) -> None:
    replay_payloads.skip_inert_payload_passes()
    codec = CountingCodec()
    engine = Replayer(
        workflows=[RemediationWorkflow],
        data_converter=dataclasses.replace(DATA_CONVERTER, payload_codec=codec),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    before = dict(replay_payloads.skipped)

    result = await engine.replay_workflow(load_history(HISTORY.read_text(), HISTORY.stem))

    assert result.replay_failure is None
    assert codec.decoded > 0 and codec.encoded > 0
    assert sdk_calls["decode"] > 0 and sdk_calls["encode"] > 0
    assert replay_payloads.skipped == before


HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


async def _outcomes(histories: list[Any]) -> list[tuple[str, str | None]]:
    outcomes = await replay_many(histories, jobs=1)
    return [(o.workflow_id, o.error) for o in outcomes]


async def test_reusing_the_converter_replays_every_stored_history_as_the_sdk_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = load_history(HISTORY.read_text().replace('"check_proposal"', '"check_proposal_renamed"'), "b")
    histories = [load_history(p.read_text(), p.stem) for p in HISTORIES] + [broken]
    replay_payloads.skip_inert_payload_passes()
    before = replay_payloads.skipped["converter_reused"]

    reused = await _outcomes(histories)

    assert replay_payloads.skipped["converter_reused"] > before
    with monkeypatch.context() as sdk:
        # The SDK's own construction at every activation; the rest of the fast path stays.
        sdk.setattr(replay_payloads._CommandAware, "create", staticmethod(replay_payloads._SDK_CREATE))
        sdk.setattr(replay_payloads, "skip_inert_payload_passes", lambda: None)
        built = await _outcomes(histories)
    assert reused == built
    assert all(error is None for _, error in reused[:-1]), reused
    assert reused[-1][1] is not None  # the renamed activity still fails, with the same error


async def test_with_a_codec_the_converter_is_built_by_the_sdk_at_each_activation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replay_payloads.skip_inert_payload_passes()
    built = {"n": 0}
    create = replay_payloads._SDK_CREATE

    def counted(*args: Any) -> Any:
        built["n"] += 1
        return create(*args)

    monkeypatch.setattr(replay_payloads, "_SDK_CREATE", counted)
    engine = Replayer(
        workflows=[RemediationWorkflow],
        data_converter=dataclasses.replace(DATA_CONVERTER, payload_codec=CountingCodec()),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    before = replay_payloads.skipped["converter_reused"]

    result = await engine.replay_workflow(load_history(HISTORY.read_text(), HISTORY.stem))

    assert result.replay_failure is None
    assert built["n"] > 2  # twice per activation, as the SDK does
    assert replay_payloads.skipped["converter_reused"] == before
