"""What a store's failure means, decided in one place from status codes and error codes.

Like httpx's exception hierarchy, every store raises one of five kinds, and callers
decide on the kind, never on message text:

========== =========================================== ===========================
kind        examples                                    the sender's policy
========== =========================================== ===========================
transient   unreachable, timeout, HTTP 5xx/408/429      retry with backoff
auth        HTTP 401, ``UNAUTHENTICATED``               stop; keep the journal
permission  HTTP 403, ``PERMISSION_DENIED``             stop; keep the journal
not_found   HTTP 404, ``RESOURCE_DOES_NOT_EXIST``       the store lost the run?
rejected    other 4xx, ``INVALID_PARAMETER_VALUE``, ... set the request aside
========== =========================================== ===========================

:data:`ERROR_CODES` maps every error code MLflow's protocol defines to a kind (a test
checks that none is missing), and :data:`HTTP_STATUS` maps status codes. No module here
imports MLflow.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk.backends import Connection


class Kind(enum.Enum):
    """The five things a store's failure can mean."""

    TRANSIENT = "transient"
    AUTH = "auth"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"


T, A, P, N, R = Kind.TRANSIENT, Kind.AUTH, Kind.PERMISSION, Kind.NOT_FOUND, Kind.REJECTED

#: Every ``error_code`` of MLflow's protocol (``databricks.proto``'s ``ErrorCode``), by kind.
ERROR_CODES: dict[str, Kind] = {
    # The service failed or is busy: the same request may succeed later.
    "INTERNAL_ERROR": T, "TEMPORARILY_UNAVAILABLE": T, "IO_ERROR": T,
    "SERVICE_UNDER_MAINTENANCE": T, "WORKSPACE_TEMPORARILY_UNAVAILABLE": T,
    "DEADLINE_EXCEEDED": T, "CANCELLED": T, "RESOURCE_EXHAUSTED": T, "ABORTED": T,
    "REQUEST_LIMIT_EXCEEDED": T, "UNPARSEABLE_HTTP_ERROR": T, "DATA_LOSS": T,
    "COULD_NOT_ACQUIRE_LOCK": T, "PERMISSION_NOT_PROPAGATED": T, "DEPLOYMENT_TIMEOUT": T,
    "PROJECTS_OPERATION_TIMEOUT": T, "GIT_REMOTE_ERROR": T,
    # Credentials and permissions.
    "UNAUTHENTICATED": A, "CUSTOMER_UNAUTHORIZED": A, "PERMISSION_DENIED": P,
    # Something the request names does not exist.
    "NOT_FOUND": N, "RESOURCE_DOES_NOT_EXIST": N, "ENDPOINT_NOT_FOUND": N,
    "MANAGED_RESOURCE_GROUP_DOES_NOT_EXIST": N, "METASTORE_DOES_NOT_EXIST": N,
    "DAC_DOES_NOT_EXIST": N, "CATALOG_DOES_NOT_EXIST": N, "SCHEMA_DOES_NOT_EXIST": N,
    "TABLE_DOES_NOT_EXIST": N, "SHARE_DOES_NOT_EXIST": N, "RECIPIENT_DOES_NOT_EXIST": N,
    "STORAGE_CREDENTIAL_DOES_NOT_EXIST": N, "EXTERNAL_LOCATION_DOES_NOT_EXIST": N,
    "PRINCIPAL_DOES_NOT_EXIST": N, "PROVIDER_DOES_NOT_EXIST": N,
    # The request itself is refused: sending it again cannot help.
    "BAD_REQUEST": R, "INVALID_PARAMETER_VALUE": R, "MALFORMED_REQUEST": R,
    "INVALID_STATE": R, "INVALID_STATE_TRANSITION": R, "FEATURE_DISABLED": R,
    "NOT_IMPLEMENTED": R, "RESOURCE_CONFLICT": R, "ALREADY_EXISTS": R,
    "RESOURCE_ALREADY_EXISTS": R, "QUOTA_EXCEEDED": R, "RESOURCE_LIMIT_EXCEEDED": R,
    "MAX_BLOCK_SIZE_EXCEEDED": R, "MAX_READ_SIZE_EXCEEDED": R, "MAX_LIST_SIZE_EXCEEDED": R,
    "MAX_NOTEBOOK_SIZE_EXCEEDED": R, "MAX_CHILD_NODE_SIZE_EXCEEDED": R,
    "SEARCH_QUERY_TOO_LONG": R, "SEARCH_QUERY_TOO_SHORT": R, "PARTIAL_DELETE": R,
    "DRY_RUN_FAILED": R, "DIRECTORY_NOT_EMPTY": R, "DIRECTORY_PROTECTED": R,
    "GIT_CONFLICT": R, "GIT_UNKNOWN_REF": R, "GIT_SENSITIVE_TOKEN_DETECTED": R,
    "GIT_URL_NOT_ON_ALLOW_LIST": R, "IPYNB_FILE_IN_REPO": R, "INSECURE_PARTNER_RESPONSE": R,
    "MALFORMED_PARTNER_RESPONSE": R, "METASTORE_ALREADY_EXISTS": R, "DAC_ALREADY_EXISTS": R,
    "CATALOG_ALREADY_EXISTS": R, "SCHEMA_ALREADY_EXISTS": R, "TABLE_ALREADY_EXISTS": R,
    "SHARE_ALREADY_EXISTS": R, "RECIPIENT_ALREADY_EXISTS": R,
    "STORAGE_CREDENTIAL_ALREADY_EXISTS": R, "EXTERNAL_LOCATION_ALREADY_EXISTS": R,
    "PROVIDER_ALREADY_EXISTS": R, "CATALOG_NOT_EMPTY": R, "SCHEMA_NOT_EMPTY": R,
    "METASTORE_NOT_EMPTY": R, "PROVIDER_SHARE_NOT_ACCESSIBLE": R,
}  # fmt: skip

#: Kinds of HTTP status codes; other 4xx are ``rejected``, other 5xx ``transient``.
HTTP_STATUS: dict[int, Kind] = {401: A, 403: P, 404: N, 408: T, 429: T}


def kind_of(status: int | None, code: str = "") -> Kind:
    """The kind of a failure from its HTTP status and MLflow error code (either may lack).

    The status decides first for the codes that mean the same thing whatever the body
    says (401, 403, 408, 429, 5xx); a 404 or another 4xx defers to the error code, since
    MLflow answers a missing run with 404 and ``RESOURCE_DOES_NOT_EXIST`` but also some
    refusals with 404. A code this table does not know (a newer server, a proxy) follows
    the status: a 4xx is a refusal, which the same request cannot cure; without a status
    (MLflow's local store) it counts as transient.
    """
    if status is not None and (status in (401, 403, 408, 429) or status >= 500):
        return HTTP_STATUS.get(status, T)
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if status is not None and 400 <= status < 500:
        return HTTP_STATUS.get(status, R)
    return T


class StoreError(TrackingError):
    """A store refused or failed a request; :attr:`kind` says what it means.

    Attributes:
        kind: What the failure means (see the module's table).
        code: MLflow's error code, when the store gave one.
        status: The HTTP status, for a remote store that answered.
        retry_after: Seconds the server asked to wait (``Retry-After``).
        unreachable: Nothing answered at all: connection refused, a name that does not
            resolve. Unlike a timeout or a 5xx, waiting a little longer cannot help.
        network: The failure happened on the network (no answer, or a timeout).
        subject: What a ``not_found`` or ``rejected`` failure concerns (``"run"``,
            ``"experiment"``, ``"model"``), when the request says.
    """

    kind: Kind = Kind.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        unreachable: bool = False,
        network: bool = False,
        subject: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.network = network or unreachable
        self.subject = subject


class Transient(StoreError):
    """The store could not be reached or asked to come back later: retry."""

    kind = Kind.TRANSIENT


class AuthFailed(StoreError):
    """The store refused the credentials (401): retrying cannot help."""

    kind = Kind.AUTH


class PermissionDenied(AuthFailed):
    """The credentials were accepted but lack a permission (403)."""

    kind = Kind.PERMISSION


class Rejected(StoreError):
    """The store refused the request itself: retrying the same request cannot help."""

    kind = Kind.REJECTED


class NotFound(Rejected):
    """The store has no such run, experiment or model."""

    kind = Kind.NOT_FOUND


_CLASSES: dict[Kind, type[StoreError]] = {
    Kind.TRANSIENT: Transient,
    Kind.AUTH: AuthFailed,
    Kind.PERMISSION: PermissionDenied,
    Kind.NOT_FOUND: NotFound,
    Kind.REJECTED: Rejected,
}


def error_for(
    kind: Kind,
    message: str,
    *,
    code: str = "",
    status: int | None = None,
    retry_after: float | None = None,
    subject: str = "",
) -> StoreError:
    """The exception of ``kind``."""
    return _CLASSES[kind](
        message, code=code, status=status, retry_after=retry_after, subject=subject
    )


def describe(exc: BaseException) -> str:
    """A short, secret-free description of an exception from a store or the network."""
    from tracksdk import _redact

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 300:
        text = text[:300] + "…"
    name = type(exc).__name__
    return _redact.strip_userinfo(_redact.redact(f"{name}: {text}" if text else name))


def from_answer(
    conn: Connection,
    where: str,
    status: int | None,
    code: str = "",
    message: str = "",
    *,
    retry_header: str | None = None,
    target: str | None = None,
    subject: str = "",
) -> StoreError:
    """The failure a store's answer means: the one place a status and code become one.

    Args:
        conn: The connection, for the credential hint of an auth failure.
        where: The endpoint or action, for the message.
        status: The HTTP status, or None (MLflow's local store).
        code: MLflow's error code, when the answer gave one.
        message: What the store said (redacted by the caller).
        retry_header: The answer's Retry-After header.
        target: The experiment or model refused, named for a person.
        subject: What a refusal concerns (``"run"``, ``"experiment"``, ``"model"``).
    """
    kind = kind_of(status, code)
    if kind in (Kind.AUTH, Kind.PERMISSION):
        shown = status or (401 if kind is Kind.AUTH else 403)
        return error_for(kind, auth_message(conn, shown, target), code=code, status=status)
    if kind is Kind.TRANSIENT and status is not None:
        return Transient(
            f"{where}: HTTP {status}",
            code=code,
            status=status,
            retry_after=retry_after(retry_header),
        )
    return error_for(kind, f"{where}: {message}", code=code, status=status, subject=subject)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import time
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def unreachable(exc: BaseException) -> bool:
    """Whether a network error means that nothing answered: no connection was made.

    A connection refused or a name that does not resolve, not a timeout, and not a
    connection the server accepted and then dropped.
    """
    import socket

    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.Timeout | TimeoutError):
        return False
    if isinstance(exc, ConnectionRefusedError | socket.gaierror | NewConnectionError):
        return True
    for arg in getattr(exc, "args", ())[:1]:
        reason = getattr(arg, "reason", arg)  # requests wraps urllib3's MaxRetryError
        if isinstance(reason, NewConnectionError | ConnectionRefusedError | socket.gaierror):
            return True
    return False


def auth_message(conn: Connection, status: int, target: str | None = None) -> str:
    """Say why the store refused a request and how to fix it. Never shows the secret.

    A 401 means the credentials are missing or wrong. A 403 with credentials means they
    were accepted but lack a permission on ``target`` (an experiment or a model, when
    known): fixing the password cannot help.
    """
    creds = conn.credentials
    where = f"{conn.display_uri} answered HTTP {status}"
    if conn.backend == "dagshub":
        from tracksdk.backends.dagshub import refused_hint

        return f"{where}: {refused_hint(conn, status, target)}"
    if status == 403 and creds is not None:
        what = target or "the experiment or model this request is for"
        who = repr(creds.username) if creds.username else "the bearer token's user"
        return (
            f"{where}: the credentials were accepted ({who}, from {creds.source}), but "
            f"they lack permission on {what}. Ask the server's admin to give {who} EDIT "
            "or MANAGE permission on it, or log to an experiment you may write to "
            "(TRACKSDK_EXPERIMENT, or tracked(experiment=...))"
        )
    if creds is None and conn.backend == "mlflow-env":
        fix = (
            "the server needs credentials: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or use "
            "TRACKSDK_BACKEND=server with TRACKSDK_SERVER__USERNAME and "
            "TRACKSDK_SERVER__PASSWORD"
        )
    elif creds is None:
        fix = (
            "the server needs credentials: set TRACKSDK_SERVER__TOKEN, or "
            "TRACKSDK_SERVER__USERNAME and TRACKSDK_SERVER__PASSWORD"
        )
    elif creds.kind == "bearer":
        fix = f"the bearer token was refused: fix it (from {creds.source})"
    else:
        fix = (
            f"the user name or password was refused: fix the password of "
            f"{creds.username!r} (user name and password from {creds.source})"
        )
    return f"{where}: {fix}"
