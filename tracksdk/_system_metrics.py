"""System metrics: a sampler thread per top-level run, under MLflow's own metric names.

A :class:`Sampler` reads CPU, memory, disk, network, this process and (with
``nvidia-ml-py`` and a device) the GPUs every ``TRACKSDK_SYSTEM_METRICS__INTERVAL``
seconds, and logs each sample as one step of the run's ``system/*`` metrics through the
:class:`~tracksdk._run.Run`: the points go through the journal like any other, so they
survive SIGKILL and reach the store with ``tracksdk sync``. The names, units and rounding
are those of MLflow 3.17's own monitor (``mlflow/system_metrics/``), so MLflow's UI shows
them in its "System metrics" tab; the steps count from 0, one per sample, as MLflow's do.
When the run ends the sampler logs summary metrics (peak RSS, mean CPU).

psutil is imported here only, and only in the sampler's thread: ``import tracksdk`` and a
run's start never pay for it. docs/system-metrics.md is the user's page.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._threads import Thread

if TYPE_CHECKING:
    import psutil

    from tracksdk._run import Run
    from tracksdk.backends import Connection
    from tracksdk.settings import Settings

__all__ = ["SUMMARY_NAMES", "Sampler", "start"]

PREFIX = "system/"
# Logged once, when the run ends (docs/system-metrics.md).
PEAK_RSS = "process_rss_peak_megabytes"
MEAN_PROCESS_CPU = "process_cpu_utilization_mean_percentage"
MEAN_CPU = "cpu_utilization_mean_percentage"
SUMMARY_NAMES = (PEAK_RSS, MEAN_PROCESS_CPU, MEAN_CPU)

_MB = 1e6  # MLflow's megabytes are 10**6 bytes
# How long the end of a run waits for a sample being read: a run ending, and one SIGTERMed.
STOP_WAIT = 5.0
STOP_WAIT_KILLED = 0.5


def start(run: Run, settings: Settings, conn: Connection | None) -> Sampler | None:
    """Start sampling for ``run``; None when it gets no system metrics. Never raises.

    Only top-level runs are sampled: a nested run's machine and process are its parent's.
    Off by ``TRACKSDK_SYSTEM_METRICS__ENABLED=false``, and on the memory store
    (``capture_runs``), whose runs hold what the code under test logs and nothing else.
    """
    section = settings.system_metrics
    if not section.enabled or run.parent is not None:
        return None
    if conn is not None and conn.tracking_uri.startswith("memory://"):
        return None
    try:
        from tracksdk._distributed import node_id

        node = node_id(settings)
        # A continued run's samples go on after its earlier parts' (docs/resume.md).
        last = run.last_step(f"{PREFIX}{node + '/' if node else ''}cpu_utilization_percentage", -1)
        sampler = Sampler(run, section.interval, node_id=node, first_step=last + 1)
        sampler.start()
    except Exception as exc:  # no thread to be had (resource limits): the run goes on
        _warn.warn(
            f"tracksdk: system metrics of run {run.name or run.client_run_id} could not "
            f"start ({type(exc).__name__}: {exc}); the run goes on without them."
        )
        return None
    return sampler


class Sampler:
    """Samples the machine and this process every ``interval`` seconds into ``run``.

    The thread is a daemon and never raises: a reading that fails is skipped and warned
    about once per run. It exists in the process that started it only (a forked child has
    no copy of a thread, and :meth:`stop` does nothing there).

    Args:
        run: The top-level run the points go to.
        interval: Seconds between two samples.
        node_id: Put between ``system/`` and each name (a rank), or None.
        first_step: The step of the first sample.

    Attributes:
        samples: Samples logged so far.
        cpu_seconds: CPU time the thread spent on those samples, setup excluded (what
            bench/system_metrics.py reports).
    """

    def __init__(
        self, run: Run, interval: float, *, node_id: str | None = None, first_step: int = 0
    ) -> None:
        self._run = run
        self._interval = interval
        self._prefix = PREFIX + (f"{node_id}/" if node_id else "")
        self._step = first_step
        self._pid = os.getpid()
        self._wake = threading.Event()
        # Held while logging; once `_closed` is set under it, the thread writes nothing
        # more (the run's journal is about to close).
        self._lock = threading.RLock()
        self._closed = False
        self._stopping = False
        self._warned = False
        self._psutil: Any = None
        self._process: psutil.Process | None = None
        self._gpus: _Gpus | None = None
        self._net_start: tuple[float, float] | None = None
        # For the summary: the run's start (wall clock, the process's CPU time and peak
        # RSS so far: the standard library's, so the thread's import of psutil, slow under
        # a CPU-bound body, cannot make it late), the highest RSS read, the CPU samples.
        self._started_wall = time.monotonic()
        self._started_cpu = time.process_time()
        self._hwm_start = _high_water_mark()
        self._peak_rss = 0.0
        self._cpu_samples: list[float] = []
        self.samples = 0
        self.cpu_seconds = 0.0
        self._thread = Thread(self._main, name="tracksdk-system-metrics")

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, killed: bool = False) -> None:
        """Stop sampling and log the summary metrics; safe to call more than once.

        Waits for a sample being read (at most 5 s, 0.5 s when ``killed`` by SIGTERM),
        never for a whole interval. A run shorter than one interval gets no system metrics
        at all, as in MLflow.
        """
        if self._stopping or os.getpid() != self._pid:
            return  # stopped already, or a forked child's copy: the parent's to stop
        self._stopping = True
        wait = STOP_WAIT_KILLED if killed else STOP_WAIT
        self._wake.set()
        self._thread.join(wait)
        # Bounded: a SIGTERM handler may run this on a thread that holds the journal's lock
        # the sampler is waiting for while it holds its own.
        if not self._lock.acquire(timeout=max(wait, 0.1)):
            self._closed = True  # the batch it is writing may land; none after it
            return
        try:
            self._closed = True
            if self.samples:
                summary = self._guarded("summary", self._summary) or {}
                self._log(summary, self._step - 1)
        finally:
            self._lock.release()

    # -- the thread ----------------------------------------------------------------------

    def _main(self) -> None:
        # Nothing may escape: a failure is a warning at most, and sampling goes on.
        try:
            if not self._setup():
                return
            self._loop()
        except Exception as exc:
            self._warn_once("sampling", exc)
        finally:
            if self._gpus is not None:
                self._gpus.close()

    def _setup(self) -> bool:
        try:
            import psutil

            self._psutil = psutil
            self._process = psutil.Process()
        except Exception as exc:
            self._warn_once("psutil", exc)
            return False
        # The first call of each starts the interval the first sample describes.
        self._guarded("cpu", self._psutil.cpu_percent)
        self._guarded("process", self._process.cpu_percent)
        counters = self._guarded("network", self._psutil.net_io_counters)
        if counters is not None:
            self._net_start = (counters.bytes_recv / _MB, counters.bytes_sent / _MB)
        self._gpus = _Gpus.open(self._warn_once)
        return True

    def _loop(self) -> None:
        # Samples fall on a fixed grid from the start: a slow sample does not shift the next.
        deadline = time.monotonic()
        while True:
            deadline += self._interval
            now = time.monotonic()
            if deadline < now:  # asleep too long (a suspended laptop): skip missed slots
                deadline = now + self._interval
            if self._wake.wait(deadline - now):
                return
            spent = time.thread_time()
            metrics = self._sample()
            with self._lock:
                if self._closed:
                    return
                self._log(metrics, self._step)
                self._step += 1
                self.samples += 1
                self.cpu_seconds += time.thread_time() - spent

    def _sample(self) -> dict[str, float]:
        ps = self._psutil
        metrics: dict[str, float] = {}
        cpu = self._guarded("cpu", ps.cpu_percent)
        if cpu is not None:
            metrics["cpu_utilization_percentage"] = round(cpu, 1)
            self._cpu_samples.append(cpu)
        memory = self._guarded("memory", ps.virtual_memory)
        if memory is not None:
            metrics["system_memory_usage_megabytes"] = round(memory.used / _MB, 1)
            metrics["system_memory_usage_percentage"] = round(memory.used / memory.total * 100, 1)
        disk = self._guarded("disk", ps.disk_usage, os.sep)
        if disk is not None:
            metrics["disk_usage_percentage"] = round(disk.percent, 1)
            metrics["disk_usage_megabytes"] = round(disk.used / _MB, 1)
            metrics["disk_available_megabytes"] = round(disk.free / _MB, 1)
        counters = self._guarded("network", ps.net_io_counters)
        if counters is not None and self._net_start is not None:
            # Since the run started; MLflow does not round these.
            metrics["network_receive_megabytes"] = counters.bytes_recv / _MB - self._net_start[0]
            metrics["network_transmit_megabytes"] = counters.bytes_sent / _MB - self._net_start[1]
        metrics.update(self._guarded("process", self._read_process) or {})
        if self._gpus is not None:
            metrics.update(self._gpus.read())
        return metrics

    def _read_process(self) -> dict[str, float]:
        assert self._process is not None
        with self._process.oneshot():
            rss = self._process.memory_info().rss / _MB
            cpu = self._process.cpu_percent()
        self._peak_rss = max(self._peak_rss, rss)
        return {
            "process_rss_megabytes": round(rss, 1),
            # Of one core, as `top` shows it: up to 100 times the number of cores.
            "process_cpu_utilization_percentage": round(cpu, 1),
        }

    def _summary(self) -> dict[str, float]:
        summary: dict[str, float] = {}
        process = self._process
        if process is None:
            return summary
        rss = process.memory_info().rss / _MB
        peak = max(self._peak_rss, rss)
        # The process's high-water mark catches peaks between samples, but it counts from
        # the process's start: it is the run's own peak only if it rose during the run.
        hwm = _high_water_mark()
        if hwm is not None and self._hwm_start is not None and hwm > self._hwm_start:
            peak = max(peak, hwm)
        summary[PEAK_RSS] = round(peak, 1)
        elapsed = time.monotonic() - self._started_wall
        if elapsed > 0:
            used = time.process_time() - self._started_cpu
            summary[MEAN_PROCESS_CPU] = round(used / elapsed * 100, 1)
        if self._cpu_samples:
            summary[MEAN_CPU] = round(sum(self._cpu_samples) / len(self._cpu_samples), 1)
        return summary

    # -- helpers -------------------------------------------------------------------------

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if not metrics:
            return
        try:
            self._run.log_metrics({self._prefix + k: v for k, v in metrics.items()}, step=step)
        except Exception as exc:  # strict mode's journal failure: not the user's code
            self._warn_once("logging", exc)

    def _guarded(self, what: str, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except Exception as exc:
            self._warn_once(what, exc)
            return None

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if self._warned:
            return
        self._warned = True
        label = self._run.name or self._run.client_run_id
        # From this thread: with warnings turned into errors, the error stays here.
        with contextlib.suppress(Exception):
            _warn.warn(
                f"tracksdk: system metrics of run {label}: reading {what} failed "
                f"({type(exc).__name__}: {exc}). It is skipped; the run goes on. Further "
                "failures of its system metrics are not reported."
            )


def _high_water_mark() -> float | None:
    """The process's peak RSS so far, in MB (``getrusage``), where the platform has it."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS.
    return float(peak) / _MB if sys.platform == "darwin" else float(peak) * 1024 / _MB


class _Gpus:
    """NVIDIA GPUs through NVML (``nvidia-ml-py``), with MLflow's ``gpu_<i>_*`` names."""

    def __init__(self, nvml: Any, handles: list[Any], warn: Callable[[str, BaseException], None]):
        self._nvml = nvml
        self._handles = handles
        self._warn = warn

    @classmethod
    def open(cls, warn: Callable[[str, BaseException], None]) -> _Gpus | None:
        """The machine's GPUs; None without nvidia-ml-py, a driver or a device (no warning)."""
        try:
            nvml = importlib.import_module("pynvml")
            nvml.nvmlInit()
        except Exception:
            return None
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            warn("the GPUs", exc)
            handles = []
        gpus = cls(nvml, handles, warn)
        if not handles:
            gpus.close()
            return None
        return gpus

    def read(self) -> dict[str, float]:
        """One sample of every device: utilisation, memory and power."""
        nvml = self._nvml
        metrics: dict[str, float] = {}
        for i, handle in enumerate(self._handles):
            name = f"gpu_{i}_"
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                metrics[name + "memory_usage_percentage"] = round(
                    memory.used / memory.total * 100, 1
                )
                metrics[name + "memory_usage_megabytes"] = round(memory.used / _MB, 1)
            except Exception as exc:
                self._warn(f"GPU {i} memory", exc)
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                metrics[name + "utilization_percentage"] = round(float(rates.gpu), 1)
            except Exception as exc:
                self._warn(f"GPU {i} utilization", exc)
            try:
                milliwatts = nvml.nvmlDeviceGetPowerUsage(handle)
                limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
                metrics[name + "power_usage_watts"] = round(milliwatts / 1000, 1)
                metrics[name + "power_usage_percentage"] = round(milliwatts / limit * 100, 1)
            except Exception as exc:
                self._warn(f"GPU {i} power", exc)
        return metrics

    def close(self) -> None:
        """Release NVML."""
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
