"""A real Prometheus behind its web config: TLS from a private CA made here (with
`cryptography`) and basic auth users with a bcrypt hash."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.evidence.monitoring import _process, binary, wait_for
from tests.integration.evidence.support import free_port

USER = "interlock"
PASSWORD = "pw-secured-5c2e9a"  # noqa: S105 - a test secret


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for Prometheus' basic_auth_users, with what this machine has: Python's
    `bcrypt`, the C library's crypt(3) (libxcrypt does $2b$), or apache2-utils' htpasswd."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5))
        return hashed.decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # removed in Python 3.13

            salt = base64.b64encode(os.urandom(16), b"./").decode()[:22]
            found = crypt.crypt(password, f"$2b$05${salt}")
            if found and found.startswith("$2b$"):
                return found
        except ImportError:
            pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RuntimeError("no bcrypt: install python bcrypt or apache2-utils (htpasswd)")
    done = subprocess.run([htpasswd, "-nbBC", "5", "", password], capture_output=True, text=True, check=True)
    return done.stdout.strip().lstrip(":")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("interlock test CA"))
        .issuer_name(_name("interlock test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class SecuredPrometheus:
    url: str  # https://127.0.0.1:PORT
    ca_file: Path


@contextmanager
def secured_prometheus(root: Path, scrape_target: str) -> Iterator[SecuredPrometheus]:
    prometheus = binary("prometheus")
    root.mkdir(parents=True, exist_ok=True)
    ca, cert, key = private_ca(root)
    (root / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
            }
        )
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": "lab", "static_configs": [{"targets": [scrape_target]}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        prometheus,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.config.file={root / 'web.yml'}",
    ]
    url = f"https://127.0.0.1:{port}"
    auth = httpx.BasicAuth(USER, PASSWORD)
    trust = ssl.create_default_context(cafile=str(ca))
    with _process(args, root / "prometheus.log", f"{url}/-/ready", auth=auth, verify=trust):
        # Ready before the first scrape: wait for a sample so a check has something to read.
        wait_for(
            "the secured Prometheus' first scrape",
            lambda: httpx.get(
                f"{url}/api/v1/query", params={"query": "error_ratio"}, auth=auth, verify=trust, timeout=2
            ).json()["data"]["result"],
        )
        yield SecuredPrometheus(url=url, ca_file=ca)
