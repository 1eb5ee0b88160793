"""Connecting to Temporal with Interlock's one data converter, and the search attributes it needs.

`DATA_CONVERTER` is the one converter for the client, the worker, the test environments and the
Replayer: pydantic payloads, and failures that read like answers (a refused decision carries a
one-line reason and no stack trace; a mistyped field names the field and the expected shape).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import temporalio.api.failure.v1
from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError, FailureError

from interlock import search
from interlock.models import DecisionInput
from interlock.settings import Settings
from interlock.tracing import tracing_interceptor

log = logging.getLogger(__name__)


# The inputs a person types (the Web UI's Update dialog): a decoding failure names their shape.
_INPUT_MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (DecisionInput,)}


def expected_shape(model: type[BaseModel]) -> str:
    """A model's fields as a JSON object with their types, e.g. `{"approver": string, ...}`."""
    names = {str: "string", int: "integer", float: "number", bool: "true/false"}
    fields = []
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        kind = names.get(annotation, "string or null") if annotation is not None else "any"
        fields.append(f'"{name}": {kind}')
    return "{" + ", ".join(fields) + "}"


def input_error(exc: ValidationError) -> str:
    """One line for a payload the model refused: the field, what is wrong, the shape expected."""
    problems = []
    for e in exc.errors()[:3]:
        where = ".".join(str(part) for part in e["loc"])
        msg = str(e["msg"]).rstrip(".")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"field {where!r}: {msg.lower()}" if where else msg.lower())
    model = _INPUT_MODELS.get(exc.title)
    shape = f"; expected {expected_shape(model)}" if model else ""
    return f"invalid {exc.title}: {'; '.join(problems)}{shape}"[:400]


class RefusalFailureConverter(DefaultFailureConverter):
    """Refused input travels as a one-line ApplicationError without a stack trace.

    A validator's refusal (ValueError, including gate.DecisionRefused) is an answer to the
    person who asked, shown as is in the Web UI's Update dialog: the worker's frames mean
    nothing to them. A payload the model cannot decode arrives as the SDK's
    "Failed decoding arguments" wrapping a pydantic ValidationError: it becomes the
    field-by-field reason. Every other failure keeps its stack trace for operators.
    """

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: temporalio.api.failure.v1.Failure,
    ) -> None:
        refusal = _refusal(exception)
        if refusal is not None:
            exception = ApplicationError(refusal[0], type=refusal[1])
        super().to_failure(exception, payload_converter, failure)


def _refusal(exception: BaseException) -> tuple[str, str] | None:
    if isinstance(exception, FailureError):
        return None
    cause: Any = exception.__cause__
    if isinstance(exception, RuntimeError) and isinstance(cause, ValidationError):
        return input_error(cause), "InvalidInput"
    if isinstance(exception, ValidationError):
        return input_error(exception), "InvalidInput"
    if isinstance(exception, ValueError):
        line = " ".join(str(exception).split())
        return line[:400], type(exception).__name__
    return None


DATA_CONVERTER = dataclasses.replace(pydantic_data_converter, failure_converter_class=RefusalFailureConverter)


class TemporalUnavailable(RuntimeError):
    """Temporal cannot be reached at the configured address."""


async def connect(settings: Settings) -> Client:
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    if settings.temporal_tls_ca or settings.temporal_tls_server_name:
        base = tls if isinstance(tls, TLSConfig) else TLSConfig()
        tls = dataclasses.replace(
            base,
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
            domain=settings.temporal_tls_server_name,
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
            tls=tls if not api_key else (tls or True),
            api_key=api_key,
            # One trace per proposal: submission, the workflow and its activities share it.
            interceptors=[tracing_interceptor(settings)],
        )
    except RuntimeError as exc:
        detail = "connection refused" if "refused" in str(exc).lower() else str(exc)[:200]
        raise TemporalUnavailable(
            f"cannot reach Temporal at {settings.temporal_address}: {detail} "
            "(set TEMPORAL_ADDRESS, or start the embedded stack with `interlock up`)"
        ) from exc


async def ensure_search_attributes(client: Client) -> None:
    """Register Interlock's search attributes; already-registered ones are left alone."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        log.info("registering search attributes %s", sorted(missing))
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
