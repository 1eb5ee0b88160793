"""A source's credentials and TLS settings, read from the environment or files when the source
is asked, and the redaction that keeps every secret value out of what is recorded."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from interlock.sources import SecretRef, SourceSpec

TENANT_HEADER = "X-Scope-OrgID"
REDACTED = "[redacted]"


class CredentialError(ValueError):
    """A secret the policy names cannot be read; the message names where, never a value."""


@dataclass(frozen=True)
class Credentials:
    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    # Every secret value sent, so that none of them is ever recorded.
    secrets: tuple[str, ...] = ()


def read_secret(ref: SecretRef) -> str:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise CredentialError(f"environment variable {ref.env} is not set")
    else:
        assert ref.file is not None
        try:
            value = Path(ref.file).read_text().strip()
        except OSError as err:
            raise CredentialError(f"cannot read secret file {ref.file}: {err.strerror}") from err
    if not value:
        raise CredentialError(f"the secret in {ref.describe()} is empty")
    return value


def load_credentials(spec: SourceSpec) -> Credentials:
    """The headers and auth to send to `spec`, read now (so a rotated secret applies at once)."""
    headers: dict[str, str] = {}
    secrets: list[str] = []
    for name, ref in spec.headers.items():
        headers[name] = read_secret(ref)
        secrets.append(headers[name])
    if spec.tenant:
        headers[TENANT_HEADER] = spec.tenant
    auth: httpx.Auth | None = None
    if spec.bearer_token is not None:
        token = read_secret(spec.bearer_token)
        headers["Authorization"] = f"Bearer {token}"
        secrets += [token, headers["Authorization"]]
    if spec.basic_auth is not None:
        password = read_secret(spec.basic_auth.password)
        auth = httpx.BasicAuth(spec.basic_auth.username, password)
        secrets.append(password)
    return Credentials(headers=headers, auth=auth, secrets=tuple(s for s in secrets if s))


def tls_settings(spec: SourceSpec) -> tuple[str | None, str | None, str | None]:
    """What makes a source need its own HTTP client: CA bundle and client certificate."""
    cert = spec.client_cert
    return (spec.ca_file, cert.cert_file if cert else None, cert.key_file if cert else None)


def client_for(tls: tuple[str | None, str | None, str | None]) -> httpx.AsyncClient:
    """An HTTP client trusting the given CA bundle (else the system's) and presenting the
    client certificate, if any. Raises CredentialError for unreadable files."""
    ca_file, cert_file, key_file = tls
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        raise CredentialError(f"cannot load the TLS files of the source: {err}") from err
    # trust_env=False: a proxy from the environment must not see the source's credentials.
    return httpx.AsyncClient(trust_env=False, verify=context)


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (JSON-like) with every occurrence of a secret replaced by [redacted]."""
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not found:
        return value

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            for secret in found:
                v = v.replace(secret, REDACTED)
            return v
        if isinstance(v, dict):
            return {clean(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return clean(value)
