"""The one path every write to the store takes.

Each run has a :class:`Writer`. Today it writes synchronously; the durable, batched,
non-blocking journal replaces its insides without changing its interface. Its failure
policy is the project's: a store failure never reaches the user's code. It is raised as
:class:`~tracksdk.exceptions.TrackingError` in strict mode; otherwise the first failure
of a run is reported as one warning and later ones are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk.backends import Connection

MetricPoint = tuple[str, float, int, int]  # key, value, timestamp in ms, step


class Writer:
    """Writes one run's records to its store."""

    def __init__(self, conn: Connection, run_id: str, *, strict: bool) -> None:
        self.conn = conn
        self.run_id = run_id
        self.strict = strict
        self.failures = 0

    def _do(self, action: Callable[[], None]) -> bool:
        try:
            action()
        except TrackingError as exc:
            if self.strict:
                raise
            self.failures += 1
            if self.failures == 1:
                _warn.warn(
                    f"tracksdk: {exc} (run {self.run_id} on {self.conn.tracking_uri}). Your "
                    "code goes on; later failures of this run are counted in the run's tag "
                    "tracksdk.write_failures. Set TRACKSDK_STRICT=true to raise instead."
                )
            return False
        return True

    def batch(
        self,
        metrics: Sequence[MetricPoint] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Write metrics, params and tags."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_batch(self.conn, self.run_id, metrics, params, tags))

    def text(self, text: str, artifact_file: str) -> bool:
        """Write a text artifact."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_text(self.conn, self.run_id, text, artifact_file))

    def texts(self, files: Mapping[str, str]) -> bool:
        """Write several text artifacts in one upload (one artifact-location lookup)."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_texts(self.conn, self.run_id, files))

    def dict(self, data: Mapping[str, Any], artifact_file: str) -> bool:
        """Write a JSON/YAML artifact."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_dict(self.conn, self.run_id, data, artifact_file))

    def artifact(self, path: str, artifact_path: str | None) -> bool:
        """Upload a file or folder."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_artifact(self.conn, self.run_id, path, artifact_path))

    def figure(self, figure: Any, artifact_file: str) -> bool:
        """Write a figure."""
        from tracksdk import _mlflow

        return self._do(lambda: _mlflow.log_figure(self.conn, self.run_id, figure, artifact_file))

    def dataset(
        self, data: Any, context: str | None, name: str | None, targets: str | None
    ) -> bool:
        """Record a dataset input."""
        from tracksdk import _mlflow

        return self._do(
            lambda: _mlflow.log_input(
                self.conn, self.run_id, data, context=context, name=name, targets=targets
            )
        )

    def terminate(self, status: str) -> bool:
        """End the run with ``status``; record the failure count first."""
        from tracksdk import _mlflow

        if self.failures:
            failures = str(self.failures)
            self._do(
                lambda: _mlflow.log_batch(
                    self.conn, self.run_id, tags={"tracksdk.write_failures": failures}
                )
            )
        return self._do(lambda: _mlflow.set_terminated(self.conn, self.run_id, status))
