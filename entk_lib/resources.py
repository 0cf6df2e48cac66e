"""What a chapter's execution costs: wall time and peak resident memory, read from the OS.

:func:`run_cost` is called at the end of a chapter. The wall time runs from the start of the
kernel process (Linux: ``/proc/self/stat``; elsewhere from the first import of ``entk_lib``). The
peak resident set is ``getrusage``'s ``ru_maxrss`` of the kernel itself and, separately, of the
largest finished subprocess (the Transformer chapter trains its seeds in spawned processes).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time

__all__ = ["cost_text", "machine", "run_cost"]

_IMPORTED = time.time()


def _process_start() -> float:
    """Epoch seconds at which this process started (the first import of entk_lib off Linux)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def _gib(maxrss: int) -> float:
    """``ru_maxrss`` in GiB (kilobytes on Linux, bytes on macOS)."""
    return maxrss / (2**30 if sys.platform == "darwin" else 2**20)


def machine() -> str:
    """The processor and core count, e.g. ``AMD EPYC 7B13, 2 cores``."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def run_cost() -> dict:
    """``wall_s`` since the process started, ``peak_rss_gib`` of this process, ``child_peak_rss_gib``
    of its largest finished subprocess (0 if none), torch's intra-op ``threads``, the model-cache
    entries this process read (``cache_hits``) and computed (``cache_misses``; a subprocess's own
    are not counted), and the ``machine``."""
    from .cache import STATS

    torch = sys.modules.get("torch")
    return {"wall_s": round(time.time() - _process_start(), 1),
            "cache_hits": STATS["hits"], "cache_misses": STATS["misses"],
            "threads": torch.get_num_threads() if torch is not None else None,
            "peak_rss_gib": round(_gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), 2),
            "child_peak_rss_gib": round(_gib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss), 2),
            "machine": machine()}


def cost_text(cost: dict | None = None) -> str:
    """One line for a chapter's end, e.g. ``This run: 237 s, peak resident memory 1.70 GiB ...``."""
    c = run_cost() if cost is None else cost
    child = (f"; largest subprocess {c['child_peak_rss_gib']:.2f} GiB" if c["child_peak_rss_gib"] >= 0.05
             else "")
    return (f"This run: {c['wall_s']:.0f} s wall time, peak resident memory {c['peak_rss_gib']:.2f} GiB"
            f"{child} ({c['machine']}; {c.get('threads') or '?'} torch threads; model cache: "
            f"{c.get('cache_hits', '?')} read, {c.get('cache_misses', '?')} computed)")
