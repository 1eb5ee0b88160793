"""Connecting to Temporal with Interlock's one data converter, and the search attributes it needs."""

from __future__ import annotations

import dataclasses
import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from interlock import search
from interlock.settings import Settings
from interlock.tracing import tracing_interceptor

log = logging.getLogger(__name__)


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
            data_converter=pydantic_data_converter,
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
