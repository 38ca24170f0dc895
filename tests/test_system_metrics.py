"""System metrics (issue 10): MLflow's names at a short interval, read back from real stores;
off by setting, in nested runs, untracked runs and the memory store; GPUs through a fake
NVML; failures, forks, SIGTERM and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest
from core_fixtures import all_runs, local_client, run_cli

import tracksdk
from tracksdk import ConfigError, tracked
from tracksdk._run import Run
from tracksdk.exceptions import TrackSDKWarning
from tracksdk.testing import capture_runs

INTERVAL = "0.1"
THREAD = "tracksdk-system-metrics"
# MLflow 3.17's own monitor (mlflow/system_metrics/metrics/), as its UI shows them.
MLFLOW_NAMES = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}
PROCESS_NAMES = {"system/process_rss_megabytes", "system/process_cpu_utilization_percentage"}
SUMMARY_NAMES = {
    "system/process_rss_peak_megabytes",
    "system/process_cpu_utilization_mean_percentage",
    "system/cpu_utilization_mean_percentage",
}
NCPU = psutil.cpu_count() or 1


def busy(seconds: float) -> None:
    """Use the CPU for a while, so that CPU figures have something to show."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


def busy_until_sampled(samples: int = 4, at_least: float = 0.3) -> None:
    """Use the CPU until the run's sampler has logged ``samples`` samples (30 s at most):
    on a loaded machine a fixed time may see fewer."""
    busy(at_least)
    threads = sampler_threads()
    if not threads:
        return
    sampler = threads[0]._target.__self__  # type: ignore[attr-defined]
    end = time.monotonic() + 30
    while sampler.samples < samples and time.monotonic() < end:
        busy(0.02)


def sampled_run(samples: int = 4, **options: Any) -> Run:
    with tracked(experiment="sysmetrics", **options) as run:
        busy_until_sampled(samples)
    return run


def system_keys(client: Any, run_id: str) -> set[str]:
    return {k for k in client.get_run(run_id).data.metrics if k.startswith("system/")}


def mlflow_monitor_names() -> set[str]:
    """The names MLflow's own CPU, disk and network monitors log, read from MLflow itself."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    names: set[str] = set()
    for monitor in (CPUMonitor(), DiskMonitor(), NetworkMonitor()):
        monitor.collect_metrics()
        names.update(f"system/{name}" for name in monitor.aggregate_metrics())
    return names


def check_sampled(client: Any, run_id: str) -> None:
    """MLflow's names and ours, sensible values, steps 0..n-1, one point per summary."""
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    keys = system_keys(client, run_id)
    assert mlflow_monitor_names() == MLFLOW_NAMES
    assert keys == MLFLOW_NAMES | PROCESS_NAMES | SUMMARY_NAMES
    series = {key: client.get_metric_history(run_id, key) for key in MLFLOW_NAMES | PROCESS_NAMES}
    lengths = {len(points) for points in series.values()}
    assert len(lengths) == 1, lengths  # every sample holds every reading
    (n,) = lengths
    assert n >= 3
    for key, points in series.items():
        points = sorted(points, key=lambda m: m.step)
        assert [m.step for m in points] == list(range(n)), key
        stamps = [m.timestamp for m in points]
        assert stamps == sorted(stamps), key

    def values(key: str) -> list[float]:
        return [m.value for m in series[key]]

    assert all(0 <= v <= 100 for v in values("system/cpu_utilization_percentage"))
    assert all(0 <= v <= 100 * NCPU for v in values("system/process_cpu_utilization_percentage"))
    assert all(v > 0 for v in values("system/system_memory_usage_megabytes"))
    assert all(0 < v <= 100 for v in values("system/system_memory_usage_percentage"))
    assert all(v > 0 for v in values("system/disk_usage_megabytes"))
    assert all(v >= 0 for v in values("system/disk_available_megabytes"))
    assert all(v >= 0 for v in values("system/network_receive_megabytes"))
    assert all(v > 0 for v in values("system/process_rss_megabytes"))
    summary = {key: client.get_metric_history(run_id, key) for key in SUMMARY_NAMES}
    assert all(len(points) == 1 for points in summary.values()), summary
    peak = summary["system/process_rss_peak_megabytes"][0]
    assert peak.value >= max(values("system/process_rss_megabytes"))
    assert peak.step == n - 1
    mean = summary["system/process_cpu_utilization_mean_percentage"][0].value
    assert 1 < mean <= 100 * NCPU  # the body kept one core busy
    assert 0 <= summary["system/cpu_utilization_mean_percentage"][0].value <= 100


# -- names and values on real stores ------------------------------------------------------


def test_names_values_and_steps_on_the_local_store(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 0.1 s: MLflow's names and the process ones, sensible values, steps from 0."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    run = sampled_run()
    check_sampled(local_client(project), str(run.run_id))
    assert sampler_threads() == []


@pytest.mark.server
def test_names_values_and_steps_on_a_server(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the PostgreSQL-backed MLflow server."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", mlflow_server.url)
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    run = sampled_run()
    check_sampled(MlflowClient(mlflow_server.url), str(run.run_id))


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({"RANK": "1", "WORLD_SIZE": "2", "TRACKSDK_TRACK_ALL_RANKS": "true"}, "system/rank_1/"),
        ({"RANK": "0", "WORLD_SIZE": "2", "TRACKSDK_TRACK_ALL_RANKS": "true"}, "system/rank_0/"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, "system/"),  # rank 0 alone tracks: plain names
    ],
)
def test_names_under_a_distributed_launcher(
    project: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], prefix: str
) -> None:
    """Every rank tracked: MLflow's node_id place holds the rank."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = sampled_run(2)
    keys = system_keys(local_client(project), str(run.run_id))
    expected = {f"{prefix}{name.removeprefix('system/')}" for name in MLFLOW_NAMES}
    assert expected <= keys
    assert all(key.startswith(prefix) and key.count("/") == prefix.count("/") for key in keys)


# -- when there is no sampler -------------------------------------------------------------


def test_off_by_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACKSDK_SYSTEM_METRICS__ENABLED=false: no thread, no system metric."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__ENABLED", "false")
    with tracked(experiment="sysmetrics") as run:
        assert sampler_threads() == []
        busy(0.4)
    assert system_keys(local_client(project), str(run.run_id)) == set()


def test_nested_runs_have_none_of_their_own(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the top-level run samples: one thread, and the child run has no system metric."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    with tracked(experiment="sysmetrics") as parent:
        with tracked(run_name="child") as child:
            assert len(sampler_threads()) == 1
            busy_until_sampled(2)
        busy_until_sampled(4)
    client = local_client(project)
    assert system_keys(client, str(child.run_id)) == set()
    assert system_keys(client, str(parent.run_id)) >= MLFLOW_NAMES


@pytest.mark.parametrize(
    "env",
    [{"TRACKSDK_MODE": "disabled"}, {"RANK": "1", "WORLD_SIZE": "2"}],
    ids=["disabled", "untracked-rank"],
)
def test_untracked_runs_start_no_thread(
    project: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """TRACKSDK_MODE=disabled and a rank that does not track: no sampler thread."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with tracked(experiment="sysmetrics") as run:
        assert not run.tracked
        assert sampler_threads() == []
        time.sleep(0.3)
    assert all_runs(project) == []


def test_the_memory_store_of_capture_runs_gets_none(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """capture_runs() holds what the code under test logs, not the machine's figures."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    with capture_runs() as captured, tracked():
        assert sampler_threads() == []
        tracksdk.log_metric("loss", 0.5)
        time.sleep(0.3)
    assert captured.only().metrics == {"loss": 0.5}


def test_a_run_shorter_than_the_interval_gets_none_and_ends_at_once(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 30 s, a 0.2 s run ends without waiting for the interval, and, as in MLflow,
    has no system metrics: no sample was due."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", "30")
    with tracked(experiment="sysmetrics") as run:
        assert len(sampler_threads()) == 1
        time.sleep(0.2)
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 3
    assert sampler_threads() == []
    assert system_keys(local_client(project), str(run.run_id)) == set()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_interval_is_a_config_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The interval must be a finite number of seconds above 0; the function never runs."""
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", value)
    ran = []

    @tracked
    def train() -> None:
        ran.append(True)

    with pytest.raises(ConfigError, match=f"TRACKSDK_SYSTEM_METRICS__INTERVAL = '{value}'"):
        train()
    assert ran == []


# -- GPUs ---------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: int, *, fail_init: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml`` with ``devices`` GPUs (none exist here)."""
    nvml = types.ModuleType("pynvml")
    nvml.calls = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]

    def init() -> None:
        if fail_init:
            raise FakeNVMLError("Driver Not Loaded")
        nvml.calls["init"] += 1  # type: ignore[attr-defined]

    def shutdown() -> None:
        nvml.calls["shutdown"] += 1  # type: ignore[attr-defined]

    def memory(handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(used=(handle + 1) * 2_000_000_000, total=8_000_000_000)

    nvml.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    nvml.nvmlInit = init  # type: ignore[attr-defined]
    nvml.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: devices  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=30 + h, memory=5)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetPowerUsage = lambda h: 150_000 + 1_000 * h  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 300_000  # type: ignore[attr-defined]
    return nvml


def test_gpus_through_nvml_as_mlflow_names_them(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fake devices: one series per device and reading, with the names and values
    MLflow's own GPU monitor gives on the same devices; NVML is shut down at the end."""
    from mlflow.system_metrics.metrics import gpu_monitor

    nvml = fake_nvml(2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(gpu_monitor, "pynvml", nvml, raising=False)
    theirs = gpu_monitor.GPUMonitor()
    theirs.collect_metrics()
    expected = {f"system/{k}": v for k, v in theirs.aggregate_metrics().items()}
    assert len(expected) == 10  # 5 readings x 2 devices
    nvml.calls.update(init=0, shutdown=0)  # type: ignore[attr-defined]

    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    run = sampled_run()
    client = local_client(project)
    metrics = client.get_run(str(run.run_id)).data.metrics
    gpus = {k: v for k, v in metrics.items() if k.startswith("system/gpu_")}
    assert gpus == expected
    assert gpus["system/gpu_1_memory_usage_megabytes"] == 4000.0
    assert gpus["system/gpu_1_power_usage_percentage"] == 50.3
    steps = [
        m.step for m in client.get_metric_history(str(run.run_id), "system/gpu_0_power_usage_watts")
    ]
    assert len(steps) >= 3 and steps == list(range(len(steps)))
    assert nvml.calls == {"init": 1, "shutdown": 1}  # type: ignore[attr-defined]


@pytest.mark.parametrize("nvml", [None, "no-driver", "no-device"])
def test_no_gpu_is_no_metric_and_no_warning(
    project: Path, monkeypatch: pytest.MonkeyPatch, nvml: str | None
) -> None:
    """Without nvidia-ml-py, without a driver, or with no device: no GPU series, no warning."""
    if nvml is None:
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml: ImportError
    else:
        module = fake_nvml(0, fail_init=nvml == "no-driver")
        monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    run = sampled_run(2)  # any warning fails the test (filterwarnings = error)
    keys = system_keys(local_client(project), str(run.run_id))
    assert keys >= MLFLOW_NAMES
    assert not any(key.startswith("system/gpu") for key in keys)


# -- failures -----------------------------------------------------------------------------


def test_a_failing_reading_is_one_warning_and_the_run_finishes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psutil raising on every memory reading: one warning, the other readings go on."""

    def broken() -> None:
        raise OSError("cannot read /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    with pytest.warns(TrackSDKWarning) as record:
        run = sampled_run()
    messages = [str(w.message) for w in record if issubclass(w.category, TrackSDKWarning)]
    assert len(messages) == 1, messages
    assert "system metrics" in messages[0] and "/proc/meminfo" in messages[0]
    assert run.status == "FINISHED"
    client = local_client(project)
    assert client.get_run(str(run.run_id)).info.status == "FINISHED"
    keys = system_keys(client, str(run.run_id))
    assert "system/system_memory_usage_megabytes" not in keys
    cpu = client.get_metric_history(str(run.run_id), "system/cpu_utilization_percentage")
    assert len(cpu) >= 3


def test_a_sampler_that_cannot_start_is_one_warning_and_the_run_is_tracked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread to be had: the run is still tracked and finishes, without system metrics."""
    from tracksdk import _system_metrics

    def refuse(self: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_system_metrics.Sampler, "start", refuse)
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", INTERVAL)
    with pytest.warns(TrackSDKWarning, match="could not start.*can't start new thread"):
        run = sampled_run()
    assert run.tracked and run.status == "FINISHED"
    client = local_client(project)
    assert client.get_run(str(run.run_id)).info.status == "FINISHED"
    assert system_keys(client, str(run.run_id)) == set()


PRELUDE = """
import os, sys, threading, time
from tracksdk import tracked

def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))

def busy_until_sampled(samples):  # a fixed time may see fewer samples on a loaded machine
    [thread] = [t for t in threading.enumerate() if t.name == "tracksdk-system-metrics"]
    sampler = thread._target.__self__
    end = time.monotonic() + 30
    while sampler.samples < samples and time.monotonic() < end:
        busy(0.02)
"""


def start_script(project: Path, body: str, env: dict[str, str]) -> subprocess.Popen[str]:
    (project / "job.py").write_text(PRELUDE + textwrap.dedent(body))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=project,
        env={**base, "TRACKSDK_SYSTEM_METRICS__INTERVAL": "0.05", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, stderr = proc.communicate(timeout=30)
        pytest.fail(f"the script did not start: {line!r} {stderr}")


FORK = """
def work():
    busy_until_sampled(4)
    pid = os.fork()
    if pid == 0:  # the child leaves the block too: the parent's sampler is not its own
        alive = [t.name for t in threading.enumerate()]
        assert "tracksdk-system-metrics" not in alive, alive
        time.sleep(0.3)
        return "child"
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    busy_until_sampled(8)
    return "parent"

with tracked(experiment="fork-sm") as run:
    who = work()
if who == "child":
    os._exit(0)
print("END", run.status, run.run_id)
"""


def test_a_forked_child_neither_samples_nor_ends_the_sampler(project: Path) -> None:
    """A child forked mid-run has no sampler thread and logs no system metric of its own:
    each step once, and one summary point."""
    proc = start_script(project, FORK, {})
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "END FINISHED" in stdout, stdout + stderr
    run_id = stdout.split()[-1]
    client = local_client(project)
    steps = [m.step for m in client.get_metric_history(run_id, "system/process_rss_megabytes")]
    assert len(steps) >= 5
    assert sorted(steps) == list(range(len(steps)))
    for key in SUMMARY_NAMES:
        assert len(client.get_metric_history(run_id, key)) == 1, key


PREEMPTED = """
with tracked(experiment="preempted") as run:
    busy_until_sampled(6)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


def test_sigterm_ends_the_sampler_with_its_summary(project: Path) -> None:
    """SIGTERM: the run ends KILLED within seconds, with its series and summary."""
    proc = start_script(project, PREEMPTED, {})
    wait_ready(proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5
    assert proc.returncode == -signal.SIGTERM, stderr
    (run,) = all_runs(project)
    assert run.info.status == "KILLED"
    assert set(run.data.metrics) >= SUMMARY_NAMES
    history = local_client(project).get_metric_history(
        run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert len(history) >= 5


def test_points_survive_sigkill_and_reach_the_store_by_sync(project: Path) -> None:
    """Offline, SIGKILLed: `tracksdk sync` sends the journaled system metrics (no summary:
    the process had no end)."""
    proc = start_script(project, PREEMPTED, {"TRACKSDK_MODE": "offline"})
    wait_ready(proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert all_runs(project) == []
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = all_runs(project)
    assert run.info.status == "KILLED"
    client = local_client(project)
    steps = [
        m.step for m in client.get_metric_history(run.info.run_id, "system/process_rss_megabytes")
    ]
    assert len(steps) >= 5 and sorted(steps) == list(range(len(steps)))
    assert set(run.data.metrics) >= MLFLOW_NAMES
    assert not SUMMARY_NAMES & set(run.data.metrics)
