"""Who sent a request: Jupyter's answer for the same credentials, remembered for a few seconds.

A viewer sends dozens of small requests a second with the same credentials. For each,
Jupyter's default identity provider checks the token, decodes and verifies the signed login
cookie (twice when a token comes with it) and, for a token alone, signs and sends a new
cookie: 15% of a small request. Here its answer for the exact same Authorization header and
login cookie is reused for ``TTL`` seconds; everything else (host, origin and XSRF checks,
authorization) runs on every request as before. Only Jupyter's own identity providers are
short-cut (nothing they accept can be revoked before the server restarts or the cookie
expires); any other (JupyterHub's, a custom one) is asked every time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User
from tornado import web

TTL = 10.0
"""Seconds an accepted set of credentials is remembered."""

SIZE = 256
"""Sets of credentials remembered at most (least recently used go first)."""

SHORT_CUT = (IdentityProvider, PasswordIdentityProvider)
"""Identity providers whose answers depend only on the credentials and the server's secrets."""


class Login(NamedTuple):
    user: User
    token: bool
    """Whether Jupyter accepted it by its token (which relaxes its origin check)."""
    until: float


class Logins:
    """Users accepted recently, by credentials."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logins: OrderedDict[tuple[str, str], Login] = OrderedDict()

    def recall(self, handler: web.RequestHandler) -> bool:
        """Give the handler the user its credentials were accepted as recently, if any (Jupyter
        then takes it as already identified)."""
        key = self._key(handler)
        if key is None:
            return False
        with self._lock:
            login = self._logins.get(key)
        if login is None or login.until < time.monotonic():
            return False
        handler._jupyter_current_user = login.user  # type: ignore[attr-defined]
        if login.token:
            handler._token_authenticated = True  # type: ignore[attr-defined]
        return True

    def remember(self, handler: web.RequestHandler) -> None:
        """Remember who the handler's credentials identified (after Jupyter said so)."""
        key = self._key(handler)
        user = getattr(handler, "_jupyter_current_user", None)
        if key is None or not isinstance(user, User):
            return
        token = bool(getattr(handler, "_token_authenticated", False))
        with self._lock:
            self._logins[key] = Login(user, token, time.monotonic() + TTL)
            self._logins.move_to_end(key)
            while len(self._logins) > SIZE:
                self._logins.popitem(last=False)

    @staticmethod
    def _key(handler: web.RequestHandler) -> tuple[str, str] | None:
        """The request's credentials, if its server uses one of Jupyter's identity providers
        (and it sent some)."""
        provider: Any = handler.settings.get("identity_provider")
        if type(provider) not in SHORT_CUT:
            return None
        authorization = handler.request.headers.get("Authorization", "")
        cookie = handler.get_cookie(provider.get_cookie_name(handler)) or ""
        return (authorization, cookie) if authorization or cookie else None
