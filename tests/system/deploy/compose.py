"""Reading docker-compose.yml and the Dockerfile the way compose and docker would (what can be had
without a Docker engine): interpolation of ${VAR...} references, commands, ports."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
REFERENCE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def references(text: str) -> list[re.Match[str]]:
    """The ${VAR} references compose interpolates (YAML comments are not interpolated)."""
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    return list(REFERENCE.finditer(code))


def interpolate(value: str, env: dict[str, str]) -> str:
    """What compose makes of a value given `env` (.env): defaults apply, `:?` needs a value."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return REFERENCE.sub(one, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def is_interlock(service: dict[str, Any]) -> bool:
    return "build" in service


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, host port) of every published port."""
    out = []
    for spec in service.get("ports") or []:
        parts = str(spec).split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1])))
        elif len(parts) == 2:
            out.append(("0.0.0.0", int(parts[0])))
    return out


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        buffer += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = buffer.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            buffer = ""
    return lines


def exec_form(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        return [str(x) for x in yaml.safe_load(text)]
    return shlex.split(text)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env
