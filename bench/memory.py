"""Resident memory of this process, as the kernel counts it for this program alone.

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that peak survives
``execve``, so a process started by another one reports the *parent's* peak whenever it
is larger than its own. Every bench side runs as a child of the bench script (which has
imported the daemon), so ru_maxrss gave both the floor and the daemon the parent's
figure. ``VmHWM`` in ``/proc/self/status`` is the high-water mark of this program's own
address space, which starts fresh at ``execve``.
"""

from __future__ import annotations


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_mib() -> float:
    """Resident memory now, in MiB."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """The highest resident memory this program has had since it started, in MiB."""
    return _status_mib("VmHWM")
