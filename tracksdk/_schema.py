"""What a run may hold in MLflow, and the names of the tags tracksdk writes on it.

One home for both, so that the writer, the validator, the sender, provenance, the CLI and
the registry agree. Constants only: importing this module costs nothing and imports
nothing (not mlflow).

MLflow's limits are those of its stores and REST API (``mlflow/utils/validation.py``); a
store refuses what is over them, or cuts it silently. tracksdk checks them before sending
(:mod:`tracksdk._validate`) and keeps whole what does not fit in an artifact. The tags
are described for users in docs/collected-information.md, docs/offline.md and
docs/registry.md.
"""

from __future__ import annotations

# -- MLflow's limits ---------------------------------------------------------------------

MAX_KEY = 250
"""Characters in a param, metric or tag key."""
MAX_PARAM_VALUE = 6000
"""Characters in a param value."""
MAX_TAG_VALUE = 8000
"""Characters in a tag value."""
MAX_STEP = 2**63 - 1
"""The highest metric step: MLflow stores steps as signed 64-bit integers."""

# What one log_batch request may carry.
BATCH_MAX_METRICS = 1000
BATCH_MAX_PARAMS = 100
BATCH_MAX_TAGS = 100
BATCH_MAX_ENTITIES = 1000  # metrics, params and tags together
BATCH_MAX_BYTES = 800_000  # MLflow refuses requests over 1 MB; room is kept for the framing

# -- MLflow's own tag names (mlflow/utils/mlflow_tags.py): the MLflow UI shows them ------

USER_TAG = "mlflow.user"
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_BRANCH_TAG = "mlflow.source.git.branch"
GIT_REPO_URL_TAG = "mlflow.source.git.repoURL"
GIT_DIRTY_TAG = "mlflow.source.git.dirty"

# -- tracksdk's tags on a run ------------------------------------------------------------

CLIENT_RUN_ID_TAG = "tracksdk.client_run_id"
"""The id the journal gives a run before any store does: finds it again after a lost answer."""
FUNCTION_TAG = "tracksdk.function"
ERROR_TYPE_TAG = "tracksdk.error.type"
ERROR_MESSAGE_TAG = "tracksdk.error.message"
EXIT_CODE_TAG = "tracksdk.exit_code"
BEST_RUN_ID_TAG = "tracksdk.best_run_id"
DROPPED_LOG_CALLS_TAG = "tracksdk.dropped_log_calls"
DROPPED_POINTS_TAG = "tracksdk.dropped_points"
WRITE_FAILURES_TAG = "tracksdk.write_failures"
RECREATED_TAG = "tracksdk.recreated"
ARTIFACTS_NOT_RESENT_TAG = "tracksdk.artifacts_not_resent"
CONSOLE_LOG_ERROR_TAG = "tracksdk.console_log_error"
# Resuming a run (tracked(key=...), docs/resume.md): the user's key; when the part that
# resumed it last started (ms since the epoch, then its client id), so that a part synced
# late never sets the status of a run a later part resumed; how many times it was resumed.
RUN_KEY_TAG = "tracksdk.run_key"
RUN_PART_TAG = "tracksdk.run_part"
RESUMED_TAG = "tracksdk.resumed"
REPRODUCES_TAG = "tracksdk.reproduces"  # the run a `tracksdk reproduce --run` rerun repeats
# `tracksdk.part.<client id>` names each process that continued a run, so that its client
# id (its nested runs' parent, a later sync) finds the run it continued.
PART_TAG_PREFIX = "tracksdk.part."


def part_tag(client_id: str) -> str:
    """The tag naming one part of a continued run."""
    return PART_TAG_PREFIX + client_id


"""Why the run's logs/console.log could not be uploaded (docs/console.md)."""
MODEL_FRAMEWORK_TAG = "tracksdk.model.framework"
MODEL_URI_TAG = "tracksdk.model.uri"
MODEL_REGISTERED_TAG = "tracksdk.model.registered"

# Provenance (tracksdk.provenance).
COMMAND_TAG = "tracksdk.command"
PROVENANCE_WARNINGS_TAG = "tracksdk.provenance.warnings"
"""The provenance warnings, so a run shows in the UI that its provenance is partial."""
GIT_STATUS_TAG = "tracksdk.git.status"
GIT_UNTRACKED_TAG = "tracksdk.git.untracked"
GIT_DIFF_TRUNCATED_TAG = "tracksdk.git.diff_truncated"
ENV_PYTHON_TAG = "tracksdk.env.python"
ENV_IMPLEMENTATION_TAG = "tracksdk.env.implementation"
ENV_OS_TAG = "tracksdk.env.os"
ENV_HOSTNAME_TAG = "tracksdk.env.hostname"
ENV_CPU_COUNT_TAG = "tracksdk.env.cpu_count"
ENV_MLFLOW_VERSION_TAG = "tracksdk.env.mlflow_version"
VERSION_TAG = "tracksdk.version"

# -- tracksdk's tags on a registered model version (and on the run, verdict and reason) --

GATE_METRIC_TAG = "tracksdk.gate.metric"
GATE_VALUE_TAG = "tracksdk.gate.value"
GATE_CHAMPION_VALUE_TAG = "tracksdk.gate.champion_value"
GATE_CHAMPION_VERSION_TAG = "tracksdk.gate.champion_version"
GATE_VERDICT_TAG = "tracksdk.gate.verdict"
GATE_REASON_TAG = "tracksdk.gate.reason"
