"""Key files: dev keys for the embedded roster, real key pairs on request, and the worker's audit
checkpoint key."""

from __future__ import annotations

import os
import re
from pathlib import Path

from interlock.signing import generate_key

_ROSTER_LINE = re.compile(r"^(?P<indent>\s+)(?P<user>[A-Za-z0-9._-]+): \{(?P<body>[^}]*)\}\s*$")


def key_path(keys_dir: Path, user: str) -> Path:
    return keys_dir / f"{user}.key"


def write_key(keys_dir: Path, user: str) -> str:
    """Create USER's key pair; the private key is written 0600, the public key returned."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem, public = generate_key()
    path = key_path(keys_dir, user)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    (keys_dir / f"{user}.pub").write_text(public + "\n")
    return public


def ensure_dev_keys(policy_file: Path, keys_dir: Path) -> list[str]:
    """Give every roster entry written as `name: {groups: [...]}` a dev key (embedded stack only).

    Entries that already carry a public_key are left alone. Returns the users given keys.
    """
    lines = policy_file.read_text().splitlines()
    in_roster, created = False, []
    for i, line in enumerate(lines):
        if re.match(r"^roster:\s*$", line):
            in_roster = True
            continue
        if in_roster and line and not line[0].isspace():
            in_roster = False
        m = _ROSTER_LINE.match(line) if in_roster else None
        if not m or "public_key" in m.group("body"):
            continue
        user = m.group("user")
        public = write_key(keys_dir, user)
        lines[i] = f'{m.group("indent")}{user}: {{{m.group("body")}, public_key: "{public}"}}'
        created.append(user)
    if created:
        policy_file.write_text("\n".join(lines) + "\n")
    return created


def audit_public_key_path(signing_key: Path) -> Path:
    return signing_key.with_suffix(".pub")


def ensure_audit_signing_key(path: Path) -> bool:
    """Make the worker's audit checkpoint key at PATH (0600) and its .pub, unless it exists.

    Returns True when it was made. Written aside and linked into place: two workers starting at
    once end up with one key, and no reader ever sees a half-written file.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem, public = generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    audit_public_key_path(path).write_text(public + "\n")
    return True
