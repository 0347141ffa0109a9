"""Atomic writes and file checksums."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "sha256", "sha256_cached"]

_CHUNK = 1 << 20


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False, what: str = "path") -> Iterator[Path]:
    """Write a file or directory atomically: yields a temporary sibling path, renamed onto ``path`` on success.

    An existing ``path`` is an error unless ``overwrite``; a failed write leaves any existing ``path`` untouched
    and removes the temporary.

    Parameters
    ----------
    path
        Destination.
    overwrite
        Replace an existing destination.
    what
        Argument name for the error message.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`{what}`: {str(path)!r} exists already; pass `overwrite=True` to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.name}.tmp-{tag}")
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: str | os.PathLike[str]) -> str:
    """:func:`sha256`, remembered per (path, size, modification time) for this process."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256(path)
    return _SHA_CACHE[key]
