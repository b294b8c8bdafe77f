"""Authentication: API tokens and their roles, and basic authentication.

* API tokens (``api.token``, ``api.viewer_token``, ``api.tokens``) protect ``/api/v1`` and
  ``/-/reload``: ``Authorization: Bearer <token>``, or ``X-Pgperf-Token`` when basic
  authentication holds the Authorization header. A viewer reads; an operator also acts
  (acknowledge, resolve, the webhook, generating reports, reload). Without any configured
  token the API is closed.
* The console's pages take the same tokens once, at sign-in (``http.sessions``): a session
  then stands for the token it was opened with.
* Basic authentication, from ``--web.config.file`` (``basic_auth_users``), protects every
  path. bcrypt is deliberately slow, so a verified (user, password) pair is remembered for
  a minute, keyed by a keyed hash — the password itself is never kept.

The identity a request acts as is kept in its WSGI environment, for the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

import bcrypt
from werkzeug.wrappers import Request

from ..audit import Actor
from ..config import Config
from .errors import Forbidden, Unauthorized

__all__ = ["ROLES", "BasicAuth", "Identity", "Role", "TokenAuth", "actor_of", "token_digest"]

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")

_IDENTITY_KEY = "pgperf.identity"
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Identity:
    """Who an API request acts as: the token's name and its role."""

    name: str
    role: Role

    def allows(self, role: Role) -> bool:
        """An operator may do everything, a viewer only what needs the viewer role."""
        return self.role == "operator" or role == "viewer"

    @staticmethod
    def of(request: Request) -> Identity | None:
        value = request.environ.get(_IDENTITY_KEY)
        return value if isinstance(value, Identity) else None

    def bind(self, request: Request) -> None:
        """Make this the identity *request* acts as (``of``, ``actor_of``)."""
        request.environ[_IDENTITY_KEY] = self


def actor_of(request: Request) -> Actor:
    """The audit log's actor for *request*: its token's name and role, and the client's address."""
    identity = Identity.of(request)
    if identity is None:
        return Actor("unknown", None, request.remote_addr)
    return Actor(identity.name, identity.role, request.remote_addr)


def token_digest(token: bytes) -> bytes:
    """What a console session keeps of the token it was opened with: its SHA-256."""
    return hashlib.sha256(token).digest()


class TokenAuth:
    """Checks a request's API token against the tokens of a configuration."""

    def __init__(self, config: Config) -> None:
        api = config.api
        found = [(t.token.get_secret_value().encode(), Identity(t.name, t.role)) for t in api.tokens]
        if api.token is not None:
            found.append((api.token.get_secret_value().encode(), Identity("operator", "operator")))
        if api.viewer_token is not None:
            found.append((api.viewer_token.get_secret_value().encode(), Identity("viewer", "viewer")))
        self._known = found
        self._digests = [(token_digest(secret), identity) for secret, identity in found]

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (without one the API and the console are closed)."""
        return bool(self._known)

    def identify(self, presented: bytes) -> Identity | None:
        """The identity of the token *presented*, or None when no configured token matches."""
        identity = None
        for secret, candidate in self._known:  # compare with every token: no early exit to time
            if hmac.compare_digest(presented, secret) and identity is None:
                identity = candidate
        return identity

    def identify_digest(self, digest: bytes) -> Identity | None:
        """The identity of the configured token whose ``token_digest`` is *digest*, or None
        (the token was removed or changed by a reload: the session it opened ends)."""
        identity = None
        for known, candidate in self._digests:
            if hmac.compare_digest(digest, known) and identity is None:
                identity = candidate
        return identity

    def authorize(self, request: Request, role: Role) -> Identity:
        """The identity of *request* when its token allows *role*; raises Unauthorized (no
        or a wrong token) or Forbidden (a viewer token where an operator one is needed)."""
        if not self._known:
            raise Unauthorized("the API is disabled: set PGPERF_API_TOKEN (api.token) to enable it")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = request.headers.get("X-Pgperf-Token", "")
        identity = self.identify(given.strip().encode())
        if identity is None:
            raise Unauthorized("missing or wrong API token (Authorization: Bearer <token>)",
                               headers={"WWW-Authenticate": 'Bearer realm="pgperf"'})
        if not identity.allows(role):
            raise Forbidden(f"token {identity.name!r} has the {identity.role} role; this needs an {role} token")
        identity.bind(request)
        return identity


class BasicAuth:
    """``basic_auth_users`` of the web configuration file: user name -> bcrypt hash."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._cache: dict[bytes, float] = {}
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        """True when *header* (``Authorization``) carries a configured user's password."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(b"x", _dummy_hash())  # same cost whether or not the user exists
            return False
        key = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            expiry = self._cache.get(key)
            if expiry is not None and expiry > now:
                return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._cache) > 1000:
                    self._cache.clear()
                self._cache[key] = now + CACHE_SECONDS
        return ok


@cache
def _dummy_hash() -> bytes:
    """A hash to check unknown users against (made once, when first needed: it takes 0.1 s)."""
    return bcrypt.hashpw(b"pgperf", bcrypt.gensalt(rounds=10))
