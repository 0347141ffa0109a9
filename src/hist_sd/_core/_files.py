"""Atomic writes and file checksums."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hist_sd import _constants as C

__all__ = ["atomic_path", "cache_root", "clean_stale", "remove", "sha256", "sha256_cached"]

logger = logging.getLogger("hist_sd")

_CHUNK = 1 << 20
#: Hex digits of the tag that names the temporaries of :func:`atomic_path`.
_TAG_LEN = 8


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """hist_sd's cache: ``cache_dir``, else ``$HIST_SD_CACHE_DIR``, else ``~/.cache/hist_sd``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(C.CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "hist_sd"


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
    tag = uuid.uuid4().hex[:_TAG_LEN]
    tmp = path.with_name(f".{path.name}.tmp-{tag}")
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
            os.replace(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)


def remove(p: Path) -> None:
    """Delete a file, link or folder tree (nothing when it does not exist)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


#: A temporary of another write unchanged for this long (s) is taken as left behind, not as in progress.
STALE_AFTER_S = 60.0


def _newest_mtime(p: Path) -> float:
    """The latest modification time of ``p`` and everything under it."""
    newest = p.lstat().st_mtime
    for root, dirs, files in os.walk(p):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def clean_stale(path: str | os.PathLike[str], *, keep: Path | None = None) -> None:
    """Remove what interrupted writes of ``path`` left next to it (the names :func:`atomic_path` gives).

    ``.<name>.tmp-<8 hex>`` folders go, and ``.<name>.old-<8 hex>`` ones when ``path`` exists (otherwise one may
    be the only copy of the previous store: it is kept, with a warning). A folder changed within
    :data:`STALE_AFTER_S` seconds may belong to a write in progress and is kept.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-[0-9a-f]{{{_TAG_LEN}}}")
    for p in sorted(path.parent.iterdir()):
        if p == keep or not (m := pattern.fullmatch(p.name)):
            continue
        if m.group(1) == "old" and not path.exists():
            logger.warning("%s is left from an interrupted overwrite of %s, which does not exist: it may hold the "
                           "previous store. It is kept; move it back to %s or delete it.", p, path.name, path.name)
        elif (age := time.time() - _newest_mtime(p)) < STALE_AFTER_S:
            logger.info("kept %s: it changed %.0f s ago and may belong to a write in progress", p, age)
        else:
            remove(p)
            logger.info("removed %s, left behind by an interrupted write of %s", p, path)


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
