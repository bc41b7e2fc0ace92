"""Relative paths in the config are relative to the config file's folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_base_dir: ContextVar[Path | None] = ContextVar("config_base_dir", default=None)


def resolve_path(value: Path) -> Path:
    value = value.expanduser()
    absolute = value if value.is_absolute() else ((_base_dir.get() or Path.cwd()) / value)
    return Path(os.path.normpath(absolute))


@contextmanager
def relative_to(base_dir: Path) -> Iterator[None]:
    token = _base_dir.set(base_dir)
    try:
        yield
    finally:
        _base_dir.reset(token)
