"""How busy OTHER processes kept this machine while a block ran: a measured step time is only as good as
the quiet it was measured in (`cldst preflight`, benchmarks/speed.py)."""

from __future__ import annotations

import os
import resource
import time


class OtherLoad:
    """CPU cores that other processes used, on average, while the `with` block ran.

    Linux only: the machine's busy time from /proc/stat minus this process's CPU time and its reaped
    children's (notebook kernels included). `cores` is None where /proc/stat cannot be read."""

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        self._start = (time.perf_counter(), system_busy_s(), own_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, busy0, own0 = self._start
        busy1 = system_busy_s()
        if busy0 is not None and busy1 is not None:
            wall = time.perf_counter() - wall0
            self.cores = max(0.0, (busy1 - busy0) - (own_cpu_s() - own0)) / max(wall, 1e-9)

    def line(self, what: str) -> str:
        if self.cores is None:
            return f"load during {what}: unknown (no /proc/stat)"
        return f"load during {what}: other processes used {self.cores:.2f} of {os.cpu_count()} CPU cores"


def system_busy_s() -> float | None:
    """CPU seconds all processes have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
