"""``tracksdk runs``: an experiment's runs, newest first, or sorted and filtered."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tracksdk.cli._common import connected, err, out, resolve
from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.backends import Connection

#: Run attributes a bare ``--order-by`` name means (anything else is a metric).
ATTRIBUTES = ("start_time", "end_time", "run_name", "status", "run_id", "created")
#: What MLflow's clauses start with: ``params.lr``, ``attributes.start_time``, ...
QUALIFIERS = ("metrics", "metric", "params", "param", "tags", "tag", "attributes", "attribute")
SEARCH_DOC = "https://mlflow.org/docs/latest/ml/search/search-runs/"
PAGE = 1000  # runs per search request while numeric param clauses filter here
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_AND = re.compile(r"\s+and\s+(?=(?:[^'\"`]|'[^']*'|\"[^\"]*\"|`[^`]*`)*$)", re.IGNORECASE)
_NUMERIC_PARAM = re.compile(
    r"(?:params?)\.(?:`(?P<key>[^`]+)`|\"(?P<quoted>[^\"]+)\"|(?P<plain>[\w./-]+))\s*"
    r"(?P<op><=|>=|<|>)\s*(?P<q>['\"]?)(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P=q)",
    re.IGNORECASE,
)
# metrics.val_auc, metrics.`val-auc`, params."lr" in a filter or an order clause.
_NAMED = re.compile(r"\b(metrics|params)\.(?:`([^`]+)`|\"([^\"]+)\"|([\w./-]+))")


def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Default: the configured one.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            "-o",
            help="Sort by a metric (highest first: 'val_auc'; 'val_loss ASC' for lowest "
            "first) or MLflow's clause ('params.lr DESC'). Repeat for ties.",
        ),
    ] = None,
    filter_string: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help='MLflow\'s search syntax: "params.lr > 0.01 and metrics.val_auc >= 0.8".',
        ),
    ] = None,
) -> None:
    """List an experiment's runs: newest first, or sorted and filtered like MLflow's search."""
    explained, conn = resolve()
    name = experiment or explained.settings.experiment or explained.root.name
    try:
        order = [order_clause(text) for text in order_by or ()]
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    with connected(explained, conn):
        try:
            found = search(conn, name, limit, order, filter_string or "")
        except ConfigError as exc:  # the user's filter or order: not the store's failure
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
    if not found:
        where = f" matching {filter_string!r}" if filter_string else ""
        out.print(f"No runs{where} in experiment {name!r} on {conn.display_uri}.", highlight=False)
        return
    named = _named([*order, filter_string or ""])
    table = Table("run id", "name", "status", "started", "duration", "metrics", title=name)
    if named["params"]:
        table.add_column("params")
    for run in found:
        info = run.info
        started = datetime.fromtimestamp(info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        duration = f"{(info.end_time - info.start_time) / 1000:.1f}s" if info.end_time else "-"
        row = [info.run_id[:12], info.run_name, info.status, started, duration]
        row.append(_metrics(run.data.metrics, named["metrics"]))
        if named["params"]:
            row.append(", ".join(f"{k}={run.data.params.get(k, '-')}" for k in named["params"]))
        table.add_row(*row)
    out.print(table)


def order_clause(text: str) -> str:
    """``--order-by``'s text as MLflow's clause: a bare name is a metric, highest first.

    Raises:
        ConfigError: An empty clause, or a direction other than ASC or DESC.
    """
    words = text.strip().rsplit(None, 1)
    if not words:
        raise ConfigError("--order-by needs a metric name, e.g. --order-by val_auc")
    key, direction = words[0], "DESC"
    if len(words) == 2:
        if words[1].upper() not in ("ASC", "DESC") and not text.strip().endswith("`"):
            raise ConfigError(
                f"--order-by {text!r}: the direction must be ASC or DESC; a name with a "
                "space goes in backticks: --order-by '`my metric` DESC'"
            )
        if words[1].upper() in ("ASC", "DESC"):
            direction = words[1].upper()
        else:
            key = text.strip()  # `a name with a space`
    if "." in key and key.split(".", 1)[0] in QUALIFIERS:
        return f"{key} {direction}"
    if key in ATTRIBUTES:
        return f"attributes.{key} {direction}"
    return f"metrics.`{key.strip('`')}` {direction}"


def search(
    conn: Connection, experiment: str, limit: int, order: list[str], filter_string: str
) -> list[Any]:
    """The experiment's runs: ``order`` (newest first when empty), ``filter_string``.

    MLflow compares params as text only (``=``, ``!=``, ``LIKE``). A clause comparing a
    param with a number (``params.lr > 0.01``) is applied here instead, as numbers, to
    the runs MLflow returns for the rest of the filter, page by page.

    Raises:
        ConfigError: MLflow refused the filter or an order clause, with its reason.
        TrackingError: The store failed.
    """
    from mlflow.exceptions import MlflowException

    from tracksdk import _mlflow

    server_filter, numeric = split_filter(filter_string)
    refused: str | None = None
    with _mlflow.errors(f"Listing runs of {experiment!r}"):
        client = _mlflow.client(conn)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        kept: list[Any] = []
        token: str | None = None
        try:
            while len(kept) < limit:
                page = client.search_runs(
                    [found.experiment_id],
                    filter_string=server_filter,
                    max_results=limit if not numeric else PAGE,
                    order_by=[*order, "attributes.start_time DESC"],
                    page_token=token,
                )
                kept += [run for run in page if all(c(run.data.params) for c in numeric)]
                token = page.token
                if not token or not numeric:
                    break
            return kept[:limit]
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            refused = str(exc.message).strip().splitlines()[0]
    raise ConfigError(
        f"MLflow refused the search: {refused}. Write the filter as "
        '"params.lr > 0.01 and metrics.val_auc >= 0.8" (metrics compare as numbers, '
        "params as text with = != LIKE, or as numbers with < <= > >=; names with dashes "
        f"in backticks), see {SEARCH_DOC}"
    )


def split_filter(text: str) -> tuple[str, list[Callable[[dict[str, str]], bool]]]:
    """The filter MLflow can run, and the numeric param clauses it cannot, as checks.

    MLflow's filters join clauses with AND only; a clause is split off when it compares
    a param with a number using ``<``, ``<=``, ``>`` or ``>=``. A param that is not a
    number, or absent, does not match it.
    """
    kept: list[str] = []
    checks: list[Callable[[dict[str, str]], bool]] = []
    for clause in _AND.split(text.strip()) if text.strip() else ():
        match = _NUMERIC_PARAM.fullmatch(clause.strip())
        if match is None:
            kept.append(clause.strip())
            continue
        key = next(g for g in match.group("key", "quoted", "plain") if g)
        checks.append(_param_check(key, match.group("op"), float(match.group("number"))))
    return " and ".join(kept), checks


def _param_check(key: str, op: str, number: float) -> Callable[[dict[str, str]], bool]:
    compare = _OPERATORS[op]

    def check(params: dict[str, str]) -> bool:
        try:
            return compare(float(params[key]), number)
        except (KeyError, ValueError):
            return False

    return check


def _named(texts: list[str]) -> dict[str, list[str]]:
    """The metrics and params named in order clauses and the filter, in order, once."""
    named: dict[str, list[str]] = {"metrics": [], "params": []}
    for text in texts:
        for match in _NAMED.finditer(text):
            key = next(group for group in match.groups()[1:] if group)
            if key not in named[match.group(1)]:
                named[match.group(1)].append(key)
    return named


def _metrics(metrics: dict[str, float], first: list[str]) -> str:
    """Up to four metrics: those the order or filter names first, then in name order."""
    keys = [k for k in first if k in metrics]
    keys += [k for k in sorted(metrics) if k not in keys]
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in keys[: max(4, len(first))])
