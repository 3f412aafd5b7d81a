"""What a bench case costs the server in memory and file descriptors.

A sampler thread polls the server's RSS and open file descriptors while the simulator
runs. Each call holds one socket, so the descriptors above the baseline count the calls
open at that moment, and the RSS at the most descriptors, less the baseline, divided by
them is the memory one call costs. With think times of seconds a call is idle between
turns most of the time, so that is close to the RSS per idle call. After the run the
descriptors must come back to the baseline: a socket left open is a leak.
"""

from __future__ import annotations

import threading
import time

import msgspec
import psutil

#: How often the sampler polls the server.
SAMPLE_INTERVAL_S = 0.25
#: How long the descriptors may take to come back to the baseline after the run.
SETTLE_S = 10.0


class ServerResources(msgspec.Struct, kw_only=True):
    rss_baseline_kib: int
    fds_baseline: int
    #: the most descriptors seen during the run, and the RSS at that sample
    fds_peak: int = 0
    rss_at_peak_kib: int = 0
    rss_max_kib: int = 0
    #: descriptors once the run is over (after up to ``SETTLE_S`` for them to close)
    fds_after: int = 0
    #: sockets open at the peak (descriptors above the baseline)
    calls_at_peak: int = 0
    rss_per_call_kib: float | None = None

    @property
    def fds_leaked(self) -> int:
        return max(self.fds_after - self.fds_baseline, 0)

    def _settle(self) -> None:
        self.calls_at_peak = max(self.fds_peak - self.fds_baseline, 0)
        if self.calls_at_peak:
            grown = self.rss_at_peak_kib - self.rss_baseline_kib
            self.rss_per_call_kib = round(grown / self.calls_at_peak, 2)

    def describe(self) -> str:
        per_call = self.rss_per_call_kib
        shown = "unknown" if per_call is None else f"{per_call:.1f} KiB"
        return (
            f"RSS per call {shown} ({self.calls_at_peak} sockets open: "
            f"{self.rss_baseline_kib / 1024:.1f} -> {self.rss_at_peak_kib / 1024:.1f} MiB); "
            f"file descriptors {self.fds_baseline} before, {self.fds_peak} at peak, "
            f"{self.fds_after} after"
        )


def _sample(process: psutil.Process) -> tuple[int, int]:
    with process.oneshot():
        return process.memory_info().rss // 1024, process.num_fds()


class ResourceSampler:
    """Polls one process from ``start`` to ``stop``; ``stop`` returns what it saw."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        rss, fds = _sample(self._process)
        self._result = ServerResources(rss_baseline_kib=rss, fds_baseline=fds)
        self._thread = threading.Thread(target=self._poll, name="resources", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def _poll(self) -> None:
        r = self._result
        while not self._stopping.wait(self._interval_s):
            try:
                rss, fds = _sample(self._process)
            except psutil.Error:
                return
            r.rss_max_kib = max(r.rss_max_kib, rss)
            if fds > r.fds_peak:
                r.fds_peak, r.rss_at_peak_kib = fds, rss

    def stop(self, settle_s: float = SETTLE_S) -> ServerResources:
        """Stop polling, wait (up to ``settle_s``) for the descriptors to come back."""
        self._stopping.set()
        self._thread.join()
        r = self._result
        deadline = time.monotonic() + settle_s
        while True:
            try:
                r.fds_after = _sample(self._process)[1]
            except psutil.Error:
                break
            if r.fds_after <= r.fds_baseline or time.monotonic() > deadline:
                break
            time.sleep(self._interval_s)
        r._settle()
        return r
