"""Bulk replay without the SDK's payload passes that cannot do anything here.

temporalio 1.35 walks every activation and every completion with six payload visitors (codec
decode and encode, external-storage retrieve and store, storage references both ways), also when
the data converter has neither a payload codec nor external storage: each pass then hands every
payload back unchanged. Interlock configures neither, and for bulk replay those passes were a
sixth of the CPU per history (bench/RESULTS.md). With a codec or external storage configured,
the SDK's own functions run, untouched.

The SDK also builds a command-aware data converter twice per activation (for the decode side and
the encode side), each construction a new payload converter (pydantic's, with an empty type
adapter cache) and failure converter: a few hundred microseconds each, about 30 per history. Its
inputs are the same for every activation of a workflow run (the run's instance, the worker's
converter, the run's workflow context), and the converter holds no state of its own, so for an
inert converter the one built for a run is kept and handed back (`_command_aware_converter`).

One difference, on purpose: without external storage configured, a history holding externally
stored payloads fails to replay with the payload converter's "unknown encoding" error instead of
the SDK's TMPRL1105 check; it fails either way, as it must.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from typing import Any

import temporalio.bridge.runtime
import temporalio.bridge.worker
import temporalio.converter
import temporalio.worker._workflow
from temporalio.converter._extstore import StorageOperationMetrics

from interlock.temporal import DATA_CONVERTER

_CommandAware = temporalio.worker._workflow._CommandAwareDataConverter

# The SDK's own functions, kept for every converter that has something to do.
_SDK_DECODE = temporalio.bridge.worker.decode_activation
_SDK_ENCODE = temporalio.bridge.worker.encode_completion
_SDK_CREATE = _CommandAware.create

# Activations and completions that skipped the passes, and command-aware converters handed back
# instead of built (how a test sees the fast path ran).
skipped = {"decode": 0, "encode": 0, "converter_reused": 0}

# The command-aware converters of the last few workflow runs: a Replayer replays one run at a
# time, a worker interleaves many (a miss only builds one, as the SDK always does). Each entry
# holds the objects its key names by id, so no id in a key can be reused while it is cached.
_converters: OrderedDict[tuple[int, int, int, Any], Any] = OrderedDict()
_CONVERTERS_KEPT = 16


def inert(data_converter: temporalio.converter.DataConverter) -> bool:
    """True when every payload pass of this converter returns its payloads unchanged."""
    return data_converter.payload_codec is None and data_converter.external_storage is None


async def decode_activation(
    activation: Any, data_converter: temporalio.converter.DataConverter, *args: Any, **kwargs: Any
) -> StorageOperationMetrics:
    if inert(data_converter):
        skipped["decode"] += 1
        return StorageOperationMetrics()
    return await _SDK_DECODE(activation, data_converter, *args, **kwargs)


async def encode_completion(
    completion: Any, data_converter: temporalio.converter.DataConverter, *args: Any, **kwargs: Any
) -> StorageOperationMetrics:
    if inert(data_converter):
        skipped["encode"] += 1
        return StorageOperationMetrics()
    return await _SDK_ENCODE(completion, data_converter, *args, **kwargs)


def _command_aware_converter(
    instance: Any,
    context_free_dc: temporalio.converter.DataConverter,
    workflow_context_dc: temporalio.converter.DataConverter,
    workflow_context: temporalio.converter.WorkflowSerializationContext,
) -> Any:
    if not (inert(context_free_dc) and inert(workflow_context_dc)):
        return _SDK_CREATE(instance, context_free_dc, workflow_context_dc, workflow_context)
    key = (id(instance), id(context_free_dc), id(workflow_context_dc), workflow_context)
    converter = _converters.get(key)
    if converter is None:
        converter = _SDK_CREATE(instance, context_free_dc, workflow_context_dc, workflow_context)
        _converters[key] = converter
        if len(_converters) > _CONVERTERS_KEPT:
            _converters.popitem(last=False)
    else:
        _converters.move_to_end(key)
        skipped["converter_reused"] += 1
    return converter


def skip_inert_payload_passes() -> None:
    """Route the SDK's workflow worker (the Replayer's too) through the functions above, for
    this process. Idempotent. The worker looks them up at each activation (the payload passes
    on `temporalio.bridge.worker`, the converter's `create` on its class), so that is where they
    are replaced."""
    temporalio.bridge.worker.decode_activation = decode_activation
    temporalio.bridge.worker.encode_completion = encode_completion
    _CommandAware.create = staticmethod(_command_aware_converter)  # type: ignore[method-assign]


# --- Bulk replay's activations on the event loop's thread -----------------------------------------
#
# A Replayer hands every activation to a workflow thread and waits for it (so that the SDK can
# time out a workflow that never yields: its deadlock detection). For bulk replay that hop cost
# more than a third of the time per history (bench/RESULTS.md). The SDK's debug mode runs each
# activation inline on the event loop's thread instead, and turns deadlock detection off; bulk
# replay uses that mode with a watchdog of its own in place of the detection, for the converter
# below only, so a worker or a Replayer built elsewhere (also one in debug mode) is untouched.

# The converter of bulk replay's Replayers: the same as Interlock's, a distinct object, so the
# inline hook can tell their workers from any other in the process.
BULK_REPLAY_CONVERTER = dataclasses.replace(DATA_CONVERTER)
DEADLOCK_SECONDS = 2.0  # as the SDK's own deadlock detection


class ReplayDeadlock(Exception):
    """An activation ran longer than DEADLOCK_SECONDS without yielding (raised into it)."""

    def __init__(self, *args: object) -> None:
        # Raised into a thread by type, so its message is made here.
        super().__init__(
            *args or (f"deadlock: an activation ran over {DEADLOCK_SECONDS:g} s without yielding",)
        )


class _Watchdog:
    """Raises ReplayDeadlock into the thread of an inline activation that runs too long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._thread_id = 0
        self._started = False

    def arm(self) -> None:
        with self._lock:
            self._since, self._thread_id = time.monotonic(), threading.get_ident()
            if not self._started:
                self._started = True
                threading.Thread(target=self._watch, name="replay-watchdog", daemon=True).start()

    def disarm(self) -> None:
        with self._lock:
            self._since = None

    def _watch(self) -> None:
        while True:
            time.sleep(DEADLOCK_SECONDS / 8)
            with self._lock:
                if self._since is not None and time.monotonic() - self._since > DEADLOCK_SECONDS:
                    self._since = None
                    temporalio.bridge.runtime.Runtime._raise_in_thread(self._thread_id, ReplayDeadlock)


watchdog = _Watchdog()
_SDK_INLINE = temporalio.worker._workflow._WorkflowWorker._activate_inline_for_debug


async def _activate_inline(self: Any, loop: Any, workflow: Any, act: Any) -> Any:
    if self._data_converter is not BULK_REPLAY_CONVERTER:
        return await _SDK_INLINE(self, loop, workflow, act)
    watchdog.arm()
    try:
        return await _SDK_INLINE(self, loop, workflow, act)
    finally:
        watchdog.disarm()


def inline_activations() -> None:
    """Watch the inline activations of bulk replay's Replayers (idempotent, this process)."""
    skip_inert_payload_passes()
    temporalio.worker._workflow._WorkflowWorker._activate_inline_for_debug = _activate_inline  # type: ignore[method-assign]
