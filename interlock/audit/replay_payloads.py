"""Bulk replay without the SDK's payload passes that cannot do anything here.

temporalio 1.35 walks every activation and every completion with six payload visitors (codec
decode and encode, external-storage retrieve and store, storage references both ways), also when
the data converter has neither a payload codec nor external storage: each pass then hands every
payload back unchanged. Interlock configures neither, and for bulk replay those passes were a
sixth of the CPU per history (bench/RESULTS.md). With a codec or external storage configured,
the SDK's own functions run, untouched.

One difference, on purpose: without external storage configured, a history holding externally
stored payloads fails to replay with the payload converter's "unknown encoding" error instead of
the SDK's TMPRL1105 check; it fails either way, as it must.
"""

from __future__ import annotations

from typing import Any

import temporalio.bridge.worker
import temporalio.converter
from temporalio.converter._extstore import StorageOperationMetrics

# The SDK's own functions, kept for every converter that has something to do.
_SDK_DECODE = temporalio.bridge.worker.decode_activation
_SDK_ENCODE = temporalio.bridge.worker.encode_completion

# Activations and completions that skipped the passes (how a test sees the fast path ran).
skipped = {"decode": 0, "encode": 0}


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


def skip_inert_payload_passes() -> None:
    """Route the SDK's workflow worker (the Replayer's too) through the functions above, for
    this process. Idempotent. The worker looks them up on `temporalio.bridge.worker` at each
    activation, so that is where they are replaced."""
    temporalio.bridge.worker.decode_activation = decode_activation
    temporalio.bridge.worker.encode_completion = encode_completion
