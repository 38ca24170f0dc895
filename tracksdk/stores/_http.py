"""One ``requests`` session factory: credentials, TLS and CA bundle set in one place.

Used by the REST store, the capability probe and ``tracksdk doctor``, so that all three
reach the server the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

    from tracksdk.backends import Connection


def session_for(conn: Connection) -> requests.Session:
    """A session that sends ``conn``'s credentials and verifies TLS as configured."""
    import requests

    session = requests.Session()
    if conn.credentials is not None:
        session.headers["Authorization"] = conn.credentials.header()
    session.verify = conn.ca_bundle or conn.verify_tls
    return session
