"""Team server benchmark: N processes logging to one PostgreSQL-backed ``mlflow server``.

Run it with ``.venv/bin/python bench/team_server.py [--quick]``. It starts a real
``mlflow server --workers 4 --serve-artifacts`` on 127.0.0.1 with a fresh PostgreSQL
database (the helpers of ``tests/servers.py``), then for N = 4, 8 and 16 worker
processes runs two rounds:

- ``tracksdk``: each worker opens one tracked run (``TRACKSDK_BACKEND=server``), logs
  ``run.log_metric("loss", v, step=i)`` for every point (the latency of each call is
  measured), a burst of 50 params and 50 tags, and one small ``log_text`` artifact; the
  run's end (which waits until everything is in the store) is part of its time;
- ``raw``: each worker does the same with ``MlflowClient`` directly: ``create_run``,
  ``log_batch`` of 1,000 points (MLflow's REST limit per request), the params and tags in
  one ``log_batch``, ``log_text``, ``set_terminated``.

The workers are forked by one launcher process after it imported MLflow and tracksdk
(importing MLflow in 16 fresh interpreters takes a minute on 2 cores), and they all wait
for one "go" file. Aggregate points/s is every worker's points over the time from "go" to
the end of the last worker's run. Afterwards every run's metric history is read back with
``MlflowClient``: exactly steps 0..points-1, once each, is expected; anything else counts as
lost or duplicated. The server's error answers (status >= 400, 429 and 503 among them) are
counted from its access log; tracksdk's ``tracksdk.write_failures`` tag is read too.

The table goes to stdout; JSON to ``bench/results/team_server-<timestamp>.json``.
``tests/test_team_server.py`` runs a small round of the same code in the suite.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = 1000  # MLflow's REST limit of metrics per log_batch
PARAMS = 50
TAGS = 50
READY_TIMEOUT = 300.0
RUN_TIMEOUT = 900.0

# Provenance, console capture and system metrics are not what is measured here.
QUIET_ENV = {
    **{
        f"TRACKSDK_CAPTURE__{name}": "false"
        for name in ("GIT", "DIFF", "UNTRACKED", "SOURCE", "COMMAND", "ENVIRONMENT", "REQUIREMENTS")
    },
    "TRACKSDK_SYSTEM_METRICS__ENABLED": "false",
    "TRACKSDK_CONSOLE": "off",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

LAUNCHER = textwrap.dedent(  # the worker; the fork loop is FORK_WORKERS of tests/servers.py
    """
    import json, os, sys, time, traceback
    from pathlib import Path

    # The slow imports happen once, here, before the workers are forked.
    import mlflow.tracking  # noqa: F401
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    import tracksdk.settings  # noqa: F401
    from tracksdk import tracked

    mode, workers, points, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    url, experiment = os.environ["JOB_URL"], os.environ["JOB_EXPERIMENT"]
    batch = int(os.environ["JOB_BATCH"])
    go = work / "go"
    deadline = time.monotonic() + float(os.environ["JOB_READY_TIMEOUT"])
    params = {"p%02d" % k: k for k in range(int(os.environ["JOB_PARAMS"]))}
    tags = {"t%02d" % k: "v%d" % k for k in range(int(os.environ["JOB_TAGS"]))}


    def pct(samples, q):
        samples = sorted(samples)
        return samples[min(len(samples) - 1, int(q * len(samples)))] if samples else None


    phases = {}  # seconds in the run's start, its body and its end (tracksdk side)


    def sdk(index):
        lat = []
        t0 = time.perf_counter()
        with tracked(experiment=experiment, run_name="sdk-%d" % index) as run:
            t1 = time.perf_counter()
            for i in range(points):
                t = time.perf_counter_ns()
                run.log_metric("loss", 1.0 / (i + 1), step=i)
                lat.append(time.perf_counter_ns() - t)
            run.log_params(params)
            run.set_tags(tags)
            run.log_text("worker %d\\n" % index, "notes/worker.txt")
            t2 = time.perf_counter()
        phases.update(start_s=t1 - t0, body_s=t2 - t1, end_s=time.perf_counter() - t2)
        return run.run_id, run.status, lat


    def raw(index):
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name(experiment) or client.get_experiment(
            client.create_experiment(experiment)  # the warm-up's experiment
        )
        t0 = time.perf_counter()
        run_id = client.create_run(exp.experiment_id, run_name="raw-%d" % index).info.run_id
        t1 = time.perf_counter()
        lat = []
        now = int(time.time() * 1000)
        for start in range(0, points, batch):
            steps = range(start, min(points, start + batch))
            metrics = [Metric("loss", 1.0 / (i + 1), now, i) for i in steps]
            t = time.perf_counter_ns()
            client.log_batch(run_id, metrics=metrics)
            lat.append(time.perf_counter_ns() - t)
        client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.log_text(run_id, "worker %d\\n" % index, "notes/worker.txt")
        t2 = time.perf_counter()
        client.set_terminated(run_id, "FINISHED")
        phases.update(start_s=t1 - t0, body_s=t2 - t1, end_s=time.perf_counter() - t2)
        return run_id, "FINISHED", lat


    def warm_up():
        # One small run of this side in a throwaway child, before the workers are forked:
        # the modules it imported (tracksdk's run machinery, MLflow's fluent and artifact
        # modules) are then imported here, so that no side pays its first-run imports in
        # the measured time. Raw's client modules were imported above already.
        global points, experiment
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            points, experiment = 10, experiment + "-warmup"
            code = 0
            try:
                (sdk if mode == "sdk" else raw)(-1)
                os.write(write, "\\n".join(sorted(sys.modules)).encode())
            except BaseException:
                traceback.print_exc()
                code = 1
            os.close(write)
            os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            names = pipe.read().decode().split()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("the warm-up run failed")
        for name in names:
            if name not in sys.modules:
                try:
                    __import__(name)
                except Exception:
                    pass  # a module only importable in its package's own order
        phases.clear()


    def worker(index):
        while not go.exists():
            if time.monotonic() > deadline:
                raise SystemExit("worker %d: no go signal" % index)
            time.sleep(0.002)
        started = time.time()
        run_id, status, lat = (sdk if mode == "sdk" else raw)(index)
        ended = time.time()
        print(json.dumps({
            "index": index, "run_id": run_id, "status": status, "started": started,
            "ended": ended, "calls": len(lat), "p50_us": pct(lat, 0.5) / 1000,
            "p99_us": pct(lat, 0.99) / 1000, "cpu_s": sum(os.times()[:2]), **phases,
        }))


    warm_up()
    """
)


def _tests_servers() -> Any:
    """``tests/servers.py`` (the suite's server helpers), imported by path."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import servers

    return servers


def team_server(workdir: Path, workers: int = 4) -> Any:
    """An ``MlflowServer`` (tests/servers.py) on a fresh PostgreSQL database, ``--workers N``."""
    servers = _tests_servers()

    class TeamServer(servers.MlflowServer):  # type: ignore[misc, name-defined]
        def command(self) -> list[str]:
            cmd: list[str] = super().command()
            cmd[cmd.index("--workers") + 1] = str(workers)
            return cmd

    database = servers.create_database("tracksdk_bench")
    return TeamServer(
        name="team",
        workdir=workdir,
        backend_store_uri=servers.pg_uri(database),
        database=database,
    )


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_", "PYTHONWARNINGS"))
        and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    }


def run_round(
    url: str, mode: str, workers: int, points: int, work: Path, experiment: str
) -> dict[str, Any]:
    """Fork ``workers`` processes in ``mode`` ("sdk" or "raw"), release them, collect results."""
    work.mkdir(parents=True)
    (work / "launcher.py").write_text(LAUNCHER + _tests_servers().FORK_WORKERS)
    env = {
        **_clean_env(),
        **QUIET_ENV,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "TRACKSDK_BACKEND": "server",
        "TRACKSDK_SERVER__URI": url,
        "JOB_URL": url,
        "JOB_EXPERIMENT": experiment,
        "JOB_BATCH": str(BATCH),
        "JOB_PARAMS": str(PARAMS),
        "JOB_TAGS": str(TAGS),
        "JOB_READY_TIMEOUT": str(READY_TIMEOUT),
    }
    cmd = [sys.executable, str(work / "launcher.py"), mode, str(workers), str(points), str(work)]
    with (work / "launcher.out").open("wb") as out, (work / "launcher.err").open("wb") as err:
        launcher = subprocess.Popen(
            cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (work / "forked").exists():
            if launcher.poll() is not None:
                raise RuntimeError(f"launcher died:\n{(work / 'launcher.err').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers not forked in time")
            time.sleep(0.02)
        time.sleep(0.2)  # let every child reach its wait loop
        go = time.time()
        (work / "go").touch()
        launcher.wait(timeout=RUN_TIMEOUT)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=30)
    if launcher.returncode != 0:
        raise RuntimeError(f"launcher failed:\n{(work / 'launcher.err').read_text()}")
    codes = json.loads((work / "launcher.out").read_text().strip().splitlines()[-1])
    results, failures = [], []
    for index in range(workers):
        out = (work / f"{index}.out").read_text().strip().splitlines()
        stderr = (work / f"{index}.err").read_text()
        if int(codes[str(index)]) != 0 or not out:
            failures.append({"index": index, "code": codes[str(index)], "stderr": stderr[-2000:]})
            continue
        result = json.loads(out[-1])
        warned = [
            line
            for line in stderr.splitlines()
            if "warning" in line.lower() or "error" in line.lower()
        ]
        result["stderr_warnings"] = len(warned)
        result["stderr_lines"] = warned[:20]  # what a failed check shows
        results.append(result)
    end = max((r["ended"] for r in results), default=go)
    return {"go": go, "wall_s": end - go, "results": results, "failures": failures}


def check_runs(url: str, results: list[dict[str, Any]], points: int) -> dict[str, Any]:
    """Read every run back: lost and duplicated points, status, write-failure tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    lost = duplicated = foreign = write_failures = 0
    statuses: dict[str, int] = {}
    for result in results:
        run = client.get_run(result["run_id"])
        statuses[run.info.status] = statuses.get(run.info.status, 0) + 1
        if "tracksdk.write_failures" in run.data.tags:
            write_failures += int(run.data.tags["tracksdk.write_failures"] or 1)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        want = set(range(points))
        lost += len(want - set(steps))
        duplicated += len(steps) - len(set(steps))
        foreign += len(set(steps) - want)
    return {
        "lost": lost,
        "duplicated": duplicated,
        "foreign": foreign,
        "statuses": statuses,
        "write_failures": write_failures,
    }


_ACCESS = re.compile(r'"[A-Z]+ (\S+) HTTP/[\d.]+" (\d{3})')


def server_errors(log: Path, offset: int) -> dict[str, int]:
    """Count the access-log answers with status >= 400 after byte ``offset`` of the log."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    counts: dict[str, int] = {"requests": 0}
    for match in _ACCESS.finditer(text):
        counts["requests"] += 1
        status = int(match.group(2))
        if status >= 400:
            key = str(status) if status in (429, 503) else ("5xx" if status >= 500 else "4xx")
            counts[key] = counts.get(key, 0) + 1
    return counts


def measure(
    server: Any, mode: str, workers: int, points: int, tmp: Path, proxy: Any = None
) -> dict[str, Any]:
    """One round (``mode`` at ``workers``) with its read-back check and server error counts.

    With ``proxy`` (a :class:`_shed_proxy.SheddingProxy`) the workers go through it, and
    the row's ``shed`` counts the requests it refused.
    """
    from mlflow.tracking import MlflowClient

    experiment = f"team-{mode}-{workers}-{uuid.uuid4().hex[:6]}"
    MlflowClient(tracking_uri=server.url).create_experiment(experiment)
    MlflowClient(tracking_uri=server.url).create_experiment(experiment + "-warmup")
    offset = server.log_path.stat().st_size
    if proxy is not None:
        proxy.reset()
    url = proxy.url if proxy is not None else server.url
    round_ = run_round(url, mode, workers, points, tmp / experiment, experiment)
    answers = proxy.reset() if proxy is not None else {}
    results = round_["results"]
    check = check_runs(server.url, results, points) if results else {}
    return {
        "mode": mode,
        "workers": workers,
        "points": points,
        "wall_s": round_["wall_s"],
        "points_per_s": len(results) * points / round_["wall_s"] if round_["wall_s"] else 0.0,
        "p50_us": statistics.median(r["p50_us"] for r in results) if results else None,
        "p99_us": max(r["p99_us"] for r in results) if results else None,
        "run_s_median": statistics.median(r["ended"] - r["started"] for r in results)
        if results
        else None,
        # tracksdk's side: the medians of the run's start, body (the logging) and end.
        **{
            phase: statistics.median(r[phase] for r in results)
            for phase in ("start_s", "body_s", "end_s", "cpu_s")
            if results and phase in results[0]
        },
        "failed_workers": round_["failures"],
        "stderr_warnings": sum(r["stderr_warnings"] for r in results),
        "server": server_errors(server.log_path, offset),
        "shed": answers.get(proxy.status, 0) if proxy is not None else 0,
        "proxy_answers": answers,
        **check,
    }


def _errors(row: dict[str, Any]) -> str:
    counts = row["server"]
    text = ",".join(f"{k}:{v}" for k, v in counts.items() if k != "requests") or "0"
    return text + (f" shed:{row['shed']}" if row.get("shed") else "")


def _median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (N, side): the round with the median throughput, with every round's."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["workers"], row["mode"]), []).append(row)
    out = []
    for (_, _), group in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] != "sdk")):
        ordered = sorted(group, key=lambda r: r["points_per_s"])
        median = dict(ordered[len(ordered) // 2])
        median["rounds_points_per_s"] = [r["points_per_s"] for r in group]
        # Lost, duplicated and failed count over every round, not the median one's.
        for key in ("lost", "duplicated", "foreign", "write_failures", "stderr_warnings", "shed"):
            median[key] = sum(r.get(key, 0) for r in group)
        median["server"] = {
            k: sum(r["server"].get(k, 0) for r in group)
            for k in {k for r in group for k in r["server"]}
        }
        statuses: dict[str, int] = {}
        for r in group:
            for k, v in r.get("statuses", {}).items():
                statuses[k] = statuses.get(k, 0) + v
        median["statuses"] = statuses
        median["failed_workers"] = [f for r in group for f in r["failed_workers"]]
        out.append(median)
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    """The median round of each (N, side); lost, dup, status and errors over all rounds."""
    head = (
        f"{'N':>3} {'side':<8} {'points/s':>9} {'ratio':>6} {'rounds (points/s)':<24} "
        f"{'p50 us':>10} {'p99 us':>11} {'run s':>6} {'lost':>5} {'dup':>4} {'status':<13} "
        f"{'server errors':<14} {'reqs':>6}"
    )
    print(head)
    print("-" * len(head))
    raw = {r["workers"]: r for r in rows if r["mode"] == "raw"}
    for row in rows:
        base = raw.get(row["workers"])
        ratio = (
            f"{row['points_per_s'] / base['points_per_s']:.2f}x"
            if row["mode"] == "sdk" and base and base["points_per_s"]
            else ""
        )
        side = "tracksdk" if row["mode"] == "sdk" else "raw"
        status = ",".join(f"{k}:{v}" for k, v in row.get("statuses", {}).items())
        rounds = "/".join(f"{v:,.0f}" for v in row["rounds_points_per_s"])
        print(
            f"{row['workers']:>3} {side:<8} {row['points_per_s']:>9,.0f} {ratio:>6} "
            f"{rounds:<24} {row['p50_us'] or 0:>10,.1f} {row['p99_us'] or 0:>11,.1f} "
            f"{row['run_s_median'] or 0:>6.1f} {row.get('lost', '?'):>5} "
            f"{row.get('duplicated', '?'):>4} {status:<13} {_errors(row):<14} "
            f"{row['server']['requests']:>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 points per worker, N=4,8")
    parser.add_argument("--points", type=int, help="points per worker (default 5000)")
    parser.add_argument("--workers", type=int, nargs="+", help="N values (default 4 8 16)")
    parser.add_argument("--server-workers", type=int, default=4, help="mlflow --workers")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per N and side; the median is shown"
    )
    parser.add_argument(
        "--shed",
        type=int,
        metavar="LIMIT",
        help="put a proxy in front that answers 429 (Retry-After: 1) to requests over LIMIT "
        "in flight, like nginx's limit_conn; both sides must retry",
    )
    parser.add_argument("--shed-status", type=int, default=429, help="429 or 503 (--shed)")
    args = parser.parse_args()
    points = args.points or (500 if args.quick else 5000)
    ns = args.workers or ([4, 8] if args.quick else [4, 8, 16])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="team-server-") as tmp_name:
        tmp = Path(tmp_name)
        server = team_server(tmp / "server", args.server_workers)
        rows: list[dict[str, Any]] = []
        proxy = None
        try:
            started = time.monotonic()
            server.start()
            print(f"server up in {time.monotonic() - started:.0f} s: {server.url}", file=sys.stderr)
            if args.shed:
                from _shed_proxy import SheddingProxy

                proxy = SheddingProxy(server.port, args.shed, status=args.shed_status)
                proxy.start()
            for n in ns:
                for round_ in range(args.rounds):
                    # Alternate the order so that a drift in load does not favour a side.
                    for mode in ("raw", "sdk") if round_ % 2 else ("sdk", "raw"):
                        print(f"N={n} {mode} round {round_ + 1} ...", file=sys.stderr, flush=True)
                        rows.append(measure(server, mode, n, points, tmp, proxy))
        finally:
            if proxy is not None:
                proxy.close()
            log_tail = _tests_servers().log_tail(server.log_path, 20)
            server.close()
    table = _median_rows(rows)
    print_table(table)
    load_after = os.getloadavg()
    print(f"load before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} cores")
    out = HERE / "results" / f"team_server-{_dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    payload = {
        "points": points,
        "server_workers": args.server_workers,
        "shed": {"limit": args.shed, "status": args.shed_status} if args.shed else None,
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "rounds": args.rounds,
        "table": table,
        "rows": rows,
        "server_log_tail": log_tail,
    }
    out.write_text(json.dumps(payload, indent=1, default=str))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
