"""A small on-disk cache for trained models and other expensive results.

Entries are keyed by a hash of every parameter that affects them and written atomically (to a
temporary file, then renamed), so an interrupted run never leaves a half-written entry behind.
The folder is ``$ENTK_CACHE_DIR`` if set, else ``~/.cache/entk-book``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["STATS", "cache_dir", "cached", "params_hash"]

#: Entries this process read from the cache (``hits``) and computed (``misses``): a chapter's
#: cost (:func:`entk_lib.resources.run_cost`) says whether it ran from a warm cache.
STATS = {"hits": 0, "misses": 0}

T = TypeVar("T")
logger = logging.getLogger("entk_lib")


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = os.environ.get("ENTK_CACHE_DIR") or Path.home() / ".cache" / "entk-book"
    return Path(root)


def params_hash(params: dict[str, Any]) -> str:
    """A stable 16-hex-digit hash of a JSON-serializable parameter dict (key order ignored)."""
    text = json.dumps(params, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(namespace: str, params: dict[str, Any], compute: Callable[[], T]) -> T:
    """Return the cached result for ``(namespace, params)``, computing and storing it if absent.

    ``params`` must hold every value that changes the result (include a code version string when
    the computation itself changes). The result is stored with ``torch.save``; an unreadable
    entry is recomputed and replaced.
    """
    key = params_hash(params)
    folder = cache_dir() / namespace
    path = folder / f"{key}.pt"
    if path.exists():
        try:
            result = torch.load(path, weights_only=False)
            STATS["hits"] += 1
            return result
        except Exception as exc:  # noqa: BLE001 - a corrupt entry is recomputed
            logger.warning("cache entry %s unreadable (%s); recomputing", path, exc)
    STATS["misses"] += 1
    result = compute()
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: torch.save(result, f))
    _atomic_write(folder / f"{key}.json",
                  lambda f: f.write(json.dumps(params, sort_keys=True, default=repr, indent=1).encode()))
    return result


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
