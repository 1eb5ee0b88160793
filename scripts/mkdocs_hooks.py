"""mkdocs hook: drop nav entries whose page does not exist yet, so `mkdocs build --strict` passes
while pages named in mkdocs.yml are still being written."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _existing(nav: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for entry in nav:
        if isinstance(entry, dict):
            ((title, target),) = entry.items()
            if isinstance(target, list):
                children = _existing(target, docs)
                if children:
                    kept.append({title: children})
            elif (docs / target).exists():
                kept.append(entry)
        elif (docs / str(entry)).exists():
            kept.append(entry)
    return kept


def on_config(config: Any, **_: Any) -> Any:
    if config.nav:
        config.nav = _existing(config.nav, Path(config.docs_dir))
    return config
