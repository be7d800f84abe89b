"""CPU and RSS of a group of processes (several simulators, several server workers),
added up between marks, as ``_common.ProcSampler`` does for one. CPU includes each
process's descendants (``tree_cpu_seconds``); RSS is the processes' own."""

from __future__ import annotations

import time

import psutil


def tree_cpu_seconds(p: psutil.Process) -> float:
    """CPU seconds of ``p`` and its descendants: the living ones, and those it reaped.

    A fleet server's leader runs its alert pass in a child process, an agent may run a
    helper; their work is the server's or the agent's cost per message all the same.
    """
    t = p.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in p.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += c.user + c.system
    return total


class ProcGroup:
    """CPU (% of one core, summed over the processes) and RSS (summed) between marks."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self._t = time.monotonic()
        self._cpu = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                total += tree_cpu_seconds(p)
            except psutil.NoSuchProcess:
                continue
        return total

    def rss_mib(self) -> float:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def mark(self) -> tuple[float, float]:
        """Return (cpu % of one core since the last mark, RSS MiB now)."""
        now, cpu = time.monotonic(), self.cpu_seconds()
        share = 100 * (cpu - self._cpu) / max(1e-9, now - self._t)
        self._t, self._cpu = now, cpu
        return share, self.rss_mib()
