"""The store seam: the error map, the REST store against real servers, and the local store's
fast metric path against MLflow's own ``log_batch`` on the same sqlite database."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracksdk.backends import Connection, Credentials
from tracksdk.stores import open_store
from tracksdk.stores.errors import (
    ERROR_CODES,
    AuthFailed,
    Kind,
    NotFound,
    PermissionDenied,
    Rejected,
    Transient,
    error_for,
    kind_of,
)
from tracksdk.stores.local import LocalStore
from tracksdk.stores.rest import RestStore

# -- the error map -------------------------------------------------------------------------


def test_every_mlflow_error_code_has_a_kind_and_every_kind_is_used() -> None:
    from mlflow.protos import databricks_pb2

    codes = set(databricks_pb2.ErrorCode.keys())
    assert set(ERROR_CODES) == codes, "map every code MLflow defines, and only those"
    assert set(ERROR_CODES.values()) == set(Kind)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "", Kind.AUTH),
        (403, "", Kind.PERMISSION),
        (403, "RESOURCE_DOES_NOT_EXIST", Kind.PERMISSION),  # the status wins for 401/403
        (404, "", Kind.NOT_FOUND),
        (404, "RESOURCE_DOES_NOT_EXIST", Kind.NOT_FOUND),
        (400, "INVALID_PARAMETER_VALUE", Kind.REJECTED),
        (400, "", Kind.REJECTED),
        (409, "RESOURCE_ALREADY_EXISTS", Kind.REJECTED),
        (408, "", Kind.TRANSIENT),
        (429, "REQUEST_LIMIT_EXCEEDED", Kind.TRANSIENT),
        (500, "INTERNAL_ERROR", Kind.TRANSIENT),
        (503, "", Kind.TRANSIENT),
        (None, "PERMISSION_DENIED", Kind.PERMISSION),
        (None, "UNAUTHENTICATED", Kind.AUTH),
        (None, "INVALID_STATE", Kind.REJECTED),
        (None, "A_CODE_FROM_A_NEWER_SERVER", Kind.TRANSIENT),
        (400, "A_CODE_FROM_A_NEWER_SERVER", Kind.REJECTED),  # never retried for ever
        (404, "A_PROXYS_OWN_CODE", Kind.NOT_FOUND),
        (None, "", Kind.TRANSIENT),
    ],
)
def test_status_and_code_decide_the_kind(status: int | None, code: str, kind: Kind) -> None:
    assert kind_of(status, code) is kind


def test_each_kind_has_its_exception_class() -> None:
    classes = {
        Kind.TRANSIENT: Transient,
        Kind.AUTH: AuthFailed,
        Kind.PERMISSION: PermissionDenied,
        Kind.NOT_FOUND: NotFound,
        Kind.REJECTED: Rejected,
    }
    for kind in Kind:
        error = error_for(kind, "m", code="C", status=418, subject="run")
        assert type(error) is classes[kind] and error.kind is kind
        assert (error.code, error.status, error.subject) == ("C", 418, "run")
    # The sender's policies: a permission failure stops it like an auth failure; a
    # missing thing is a refusal unless it is the run the store lost.
    assert isinstance(error_for(Kind.PERMISSION, "m"), AuthFailed)
    assert isinstance(error_for(Kind.NOT_FOUND, "m"), Rejected)


# -- the REST store against real servers ---------------------------------------------------


def _server_conn(server: Any) -> Connection:
    return Connection(backend="server", tracking_uri=server.url, registry_uri=server.url)


@pytest.mark.server
def test_rest_store_writes_what_mlflow_reads_back(mlflow_server: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    store = open_store(_server_conn(mlflow_server), timeout=30)
    assert isinstance(store, RestStore)
    experiment_id = store.experiment_id("rest-store")
    assert store.experiment_id("rest-store") == experiment_id  # found, not created twice
    created = store.create_run(
        experiment_id, "named", {"tracksdk.client_run_id": "abc123", "team": "x"}, 1_700_000_000_000
    )
    assert store.find_run(experiment_id, "abc123") == created
    assert store.find_run(experiment_id, "nobody") is None
    metrics = [
        ("loss", 0.5, 1_700_000_000_001, 0),
        ("loss", 0.25, 1_700_000_000_002, 1),
        ("loss", 0.25, 1_700_000_000_002, 1),  # a resent row: de-duplicated by the store
        ("odd", math.nan, 1_700_000_000_003, 0),
        ("odd", math.inf, 1_700_000_000_004, 1),
        ("low", -math.inf, 1_700_000_000_005, 0),
    ]
    store.log_batch(created.run_id, metrics, {"lr": "0.1"}, {"stage": "dev"})
    store.log_input(
        created.run_id,
        {"name": "train", "digest": "d1", "source_type": "code", "source": "{}", "schema": ""},
        "training",
    )
    store.end_run(created.run_id, "FINISHED", 1_700_000_001_000)
    run = MlflowClient(mlflow_server.url).get_run(created.run_id)
    assert run.info.run_name == created.run_name == "named"
    assert run.info.status == "FINISHED" and run.info.end_time == 1_700_000_001_000
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["stage"] == "dev" and run.data.tags["team"] == "x"
    history = MlflowClient(mlflow_server.url).get_metric_history(created.run_id, "loss")
    assert [(m.value, m.step) for m in history] == [(0.5, 0), (0.25, 1)]
    # MLflow stores infinities as the largest double, and this server reads them back so.
    assert run.data.metrics["odd"] >= sys.float_info.max
    assert run.data.metrics["low"] <= -sys.float_info.max
    assert [(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs] == [
        ("train", "training")
    ]


@pytest.mark.server
def test_rest_store_failures_have_kinds(mlflow_server: Any, dagshub_server: Any) -> None:
    store = RestStore(_server_conn(mlflow_server), timeout=30)
    with pytest.raises(NotFound) as missing:
        store.log_batch("0" * 32, [("m", 1.0, 1, 0)], {}, {})
    assert missing.value.subject == "run" and missing.value.code == "RESOURCE_DOES_NOT_EXIST"
    experiment_id = store.experiment_id("rest-store-failures")
    run = store.create_run(experiment_id, None, {}, 1)
    store.log_batch(run.run_id, [], {"p": "1"}, {})
    with pytest.raises(Rejected) as changed:  # a param's value cannot change
        store.log_batch(run.run_id, [], {"p": "2"}, {})
    assert changed.value.kind is Kind.REJECTED and changed.value.status == 400
    dagshub = Connection(
        backend="dagshub",
        tracking_uri=dagshub_server.tracking_uri,
        registry_uri=dagshub_server.tracking_uri,
        credentials=Credentials("basic", "wrong-token", dagshub_server.username, "a test"),
    )
    with pytest.raises(AuthFailed) as refused:
        RestStore(dagshub, timeout=30).experiment_id("anything")
    assert refused.value.kind is Kind.AUTH and "wrong-token" not in str(refused.value)
    closed = Connection(
        backend="server", tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9"
    )
    with pytest.raises(Transient) as down:
        RestStore(closed, timeout=5).experiment_id("anything")
    assert down.value.unreachable and down.value.network


# -- the local store's fast metric path ----------------------------------------------------


def _local(tmp_path: Path) -> tuple[LocalStore, Any]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    conn = Connection(
        backend="local",
        tracking_uri=uri,
        registry_uri=uri,
        artifact_root=str(tmp_path / "mlruns"),
    )
    store = open_store(conn)
    assert isinstance(store, LocalStore)
    return store, MlflowClient(uri)


def _stored(client: Any, run_id: str) -> tuple[dict[str, list[Any]], Any]:
    run = client.get_run(run_id)
    histories = {
        key: sorted(
            (math.isnan(m.value), 0.0 if math.isnan(m.value) else m.value, m.step, m.timestamp)
            for m in client.get_metric_history(run_id, key)
        )
        for key in run.data.metrics
    }
    latest = {k: ("nan" if math.isnan(v) else v) for k, v in run.data.metrics.items()}
    return histories, latest


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]),
)
points = st.lists(
    st.tuples(
        st.sampled_from(["loss", "acc", "a/b", "x.y"]),
        values,
        st.integers(1_700_000_000_000, 1_700_000_000_005),
        st.integers(-2, 3),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=points, second=points)
def test_fast_path_stores_what_mlflow_stores(tmp_path: Path, first: Any, second: Any) -> None:
    """Two batches (duplicates, NaN, infinities, steps out of order, equal steps) written
    through the fast path and through MLflow's log_batch leave the same history and the
    same latest values."""
    from mlflow.entities import Metric

    store, client = _local(tmp_path)
    experiment_id = store.experiment_id("fast")
    fast = store.create_run(experiment_id, None, {}, 1).run_id
    slow = store.create_run(experiment_id, None, {}, 1).run_id
    for batch in (first, second):
        store.log_batch(fast, batch, {}, {})
        client.log_batch(
            slow, metrics=[Metric(k, v, ts, s) for k, v, ts, s in batch], synchronous=True
        )
    assert _stored(client, fast) == _stored(client, slow)


def test_fast_path_is_used_and_keeps_mlflows_refusals(tmp_path: Path) -> None:
    from tracksdk.stores import _sqlite_fast

    store, client = _local(tmp_path)
    experiment_id = store.experiment_id("fast")
    run = store.create_run(experiment_id, None, {}, 1)
    store.log_batch(run.run_id, [("m", 1.0, 5, 0)], {}, {})
    assert _sqlite_fast.engine_for(store.conn) is not None  # this store took the fast path
    assert client.get_run(run.run_id).data.metrics == {"m": 1.0}
    with pytest.raises(NotFound) as missing:
        store.log_batch("f" * 32, [("m", 1.0, 5, 0)], {}, {})
    assert missing.value.subject == "run"
    with pytest.raises(Rejected) as bad_key:  # MLflow's own validator
        store.log_batch(run.run_id, [("bad key?!", 1.0, 5, 0)], {}, {})
    assert bad_key.value.code == "INVALID_PARAMETER_VALUE"
    client.delete_run(run.run_id)
    with pytest.raises(Rejected) as deleted:
        store.log_batch(run.run_id, [("m", 2.0, 6, 1)], {}, {})
    assert "active" in str(deleted.value)
    client.restore_run(run.run_id)
    assert [m.value for m in client.get_metric_history(run.run_id, "m")] == [1.0]


# -- the memory store against MLflow's rules -----------------------------------------------


def _memory(name: str) -> Any:
    from tracksdk.stores.memory import MemoryStore, forget

    uri = f"memory://test-{name}"
    forget(uri)
    store = open_store(Connection(backend="memory", tracking_uri=uri, registry_uri=uri))
    assert isinstance(store, MemoryStore)
    return store


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=points, second=points)
def test_memory_store_keeps_metrics_as_mlflow_does(tmp_path: Path, first: Any, second: Any) -> None:
    """The same batches in the memory store and in MLflow's sqlite store: same histories
    (in MLflow's order) and the same latest values."""
    from mlflow.entities import Metric

    memory = _memory("metrics")
    _, client = _local(tmp_path)
    experiment_id = client.create_experiment(f"m-{len(client.search_experiments())}")
    slow = client.create_run(experiment_id).info.run_id
    run = memory.create_run(memory.experiment_id("m"), None, {}, 1).run_id
    for batch in (first, second):
        memory.log_batch(run, batch, {}, {})
        client.log_batch(
            slow, metrics=[Metric(k, v, ts, s) for k, v, ts, s in batch], synchronous=True
        )
    stored = memory.runs[run]

    def norm(value: float) -> Any:
        # MLflow stores NaN as 0 with a flag, and infinities as the largest double.
        if math.isnan(value):
            return "nan"
        return math.copysign(math.inf, value) if abs(value) >= sys.float_info.max else value

    for key in {k for k, *_ in first + second}:
        theirs = [
            (m.step, m.timestamp, norm(m.value)) for m in client.get_metric_history(slow, key)
        ]
        ours = [(step, ts, norm(v)) for step, ts, v in stored.metric_history(key)]
        assert ours == theirs
    latest = client.get_run(slow).data.metrics
    assert {k: norm(v) for k, v in stored.metrics.items()} == {
        k: norm(v) for k, v in latest.items()
    }


def test_memory_store_refuses_what_mlflow_refuses(tmp_path: Path) -> None:
    memory = _memory("refusals")
    experiment_id = memory.experiment_id("e")
    assert memory.experiment_id("e") == experiment_id
    run = memory.create_run(experiment_id, "named", {"tracksdk.client_run_id": "c1"}, 5)
    assert run.run_name == "named" and memory.find_run(experiment_id, "c1") == run
    memory.log_batch(run.run_id, [], {"p": "1"}, {})
    memory.log_batch(run.run_id, [], {"p": "1"}, {})  # the same value again is fine
    with pytest.raises(Rejected) as changed:
        memory.log_batch(run.run_id, [], {"p": "2"}, {})
    assert changed.value.code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(NotFound) as missing:
        memory.log_batch("0" * 32, [("m", 1.0, 1, 0)], {}, {})
    assert missing.value.subject == "run"
    source = tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("A")
    memory.upload(run.run_id, str(source), "files")
    memory.upload(run.run_id, str(source / "sub" / "a.txt"), None)
    assert memory.runs[run.run_id].artifacts == {"files/sub/a.txt": b"A", "a.txt": b"A"}
    memory.end_run(run.run_id, "FINISHED", 9)
    assert (memory.runs[run.run_id].status, memory.runs[run.run_id].end_time) == ("FINISHED", 9)
    memory.delete_run(run.run_id)
    with pytest.raises(Rejected, match="active"):
        memory.log_batch(run.run_id, [("m", 1.0, 1, 0)], {}, {})
    assert not memory.capabilities().registry
    renamed = memory.create_run(experiment_id, None, {}, 6)
    memory.log_batch(renamed.run_id, [], {}, {"mlflow.runName": "better"})
    assert memory.runs[renamed.run_id].run_name == "better"  # as MLflow renames it


# -- the registry half of the seam, on both stores ------------------------------------------


def _registry_roundtrip(store: Any, client: Any, artifact_dir: Path) -> None:
    """What the champion gate and `tracksdk models` need, read back through MLflow."""
    experiment_id = store.experiment_id("registry-seam")
    run = store.create_run(experiment_id, None, {}, 1)
    store.log_batch(run.run_id, [("auc", 0.8, 1, 0)], {}, {})
    (artifact_dir / "MLmodel").write_text("flavors: {}\n")
    store.upload(run.run_id, str(artifact_dir), "model")
    name = f"seam-{run.run_id[:8]}"
    assert not store.has_registered_model(name)
    store.ensure_registered_model(name)
    store.ensure_registered_model(name)  # a second call (another process) is harmless
    assert store.has_registered_model(name)
    first = store.create_model_version(name, f"runs:/{run.run_id}/model", run.run_id)
    second = store.create_model_version(name, f"runs:/{run.run_id}/model", run.run_id)
    assert (first.version, second.version) == ("1", "2") and first.run_id == run.run_id
    assert store.version_by_alias(name, "champion") is None
    store.set_alias(name, "champion", "1")
    store.set_version_tag(name, "1", "tracksdk.gate.verdict", "promoted")
    champion = store.version_by_alias(name, "champion")
    assert champion is not None and champion.version == "1"
    assert champion.tags["tracksdk.gate.verdict"] == "promoted"
    listed = store.model_versions(name)
    assert [(v.version, v.aliases) for v in listed] == [("2", ()), ("1", ("champion",))]
    assert store.run_metrics(run.run_id) == {"auc": 0.8}
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert store.model_versions("no-such-model") == []


def test_local_store_registry(tmp_path: Path) -> None:
    store, client = _local(tmp_path)
    (tmp_path / "model").mkdir()
    _registry_roundtrip(store, client, tmp_path / "model")


@pytest.mark.server
def test_rest_store_registry(mlflow_server: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    store = RestStore(_server_conn(mlflow_server), timeout=30)
    (tmp_path / "model").mkdir()
    _registry_roundtrip(store, MlflowClient(mlflow_server.url), tmp_path / "model")


# -- what the review of the seam found ------------------------------------------------------


def test_the_connections_tls_settings_win_over_the_environments_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REQUESTS_CA_BUNDLE must not undo verify_tls=False or a configured CA bundle."""
    from tracksdk.stores._http import session_for

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/from-the-environment.pem")

    def verify(**tls: Any) -> Any:
        conn = Connection("server", "https://mlflow.example", "https://mlflow.example", **tls)
        with session_for(conn) as session:
            merged = session.merge_environment_settings(conn.tracking_uri, {}, None, None, None)
        return merged["verify"]

    assert verify(verify_tls=False) is False
    assert verify(ca_bundle="/etc/ssl/mine.pem") == "/etc/ssl/mine.pem"
    # Nothing configured: requests' own rule, the environment's bundle.
    assert verify() == "/etc/ssl/certs/from-the-environment.pem"


def test_mlflows_exhausted_retries_are_an_outage_not_a_refusal(tmp_path: Path) -> None:
    """An upload whose HTTP retries ran out on 503s is retried later, never set aside."""
    import requests
    from mlflow.exceptions import MlflowException

    from tracksdk.stores._client import classify

    store, _ = _local(tmp_path)
    try:
        try:
            raise requests.exceptions.RetryError("too many 503 error responses")
        except requests.exceptions.RetryError:
            raise MlflowException("API request failed: too many 503 error responses") from None
    except MlflowException as exc:
        error = classify(store.conn, exc, "Uploading model")
    assert isinstance(error, Transient) and error.network and error.status is None


@pytest.mark.server
def test_registry_calls_ride_out_a_brief_outage(dagshub_server: Any) -> None:
    """Registry calls come from the training thread, outside the journal: a transient
    failure is tried again, as MLflow's own client does."""
    conn = Connection(
        backend="dagshub",
        tracking_uri=dagshub_server.tracking_uri,
        registry_uri=dagshub_server.tracking_uri,
        credentials=Credentials("basic", dagshub_server.token, dagshub_server.username, "test"),
    )
    route = "/api/2.0/mlflow/registered-models/get"
    dagshub_server.fail_routes = {route: (503, 2)}
    with contextlib.closing(RestStore(conn, timeout=30)) as store:
        assert store.has_registered_model("never-registered") is False
    assert dagshub_server.count(route) == 3
    dagshub_server.fail_routes = {route: (503, 5)}
    with contextlib.closing(RestStore(conn, timeout=30)) as store, pytest.raises(Transient):
        store.has_registered_model("never-registered")
