"""One ``requests`` session factory: credentials, TLS and CA bundle set in one place.

Used by the REST store, the capability probe and ``tracksdk doctor``, so that all three
reach the server the same way.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

    from tracksdk.backends import Connection


def session_for(conn: Connection) -> requests.Session:
    """A session that sends ``conn``'s credentials and verifies TLS as configured.

    The connection's TLS settings (``verify_tls=False``, a CA bundle) win over
    ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE``, which requests would otherwise let
    override a session's own ``verify``; proxies from the environment still apply.
    """
    session = _session_class()()
    if conn.credentials is not None:
        session.headers["Authorization"] = conn.credentials.header()
    session.verify = conn.ca_bundle or conn.verify_tls
    return session


@functools.cache
def _session_class() -> type[requests.Session]:
    """``requests.Session`` whose own ``verify`` is not replaced by the environment's."""
    import requests

    class Session(requests.Session):
        def merge_environment_settings(  # type: ignore[no-untyped-def]
            self, url, proxies, stream, verify, cert
        ):
            if verify is None:  # no per-request value: the session's, not the env's
                verify = self.verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    return Session
