"""Console sessions: signing in with an API token, the session cookie, CSRF tokens.

A person signs in at ``/login`` with an API token (viewer or operator); the token is
checked once and a session starts. The browser then holds only a random session id, in a
cookie that scripts cannot read (``HttpOnly``), that no other site can make it send
(``SameSite=Strict``) and that travels only over TLS when pgperf serves TLS (``Secure``,
and the ``__Host-`` name prefix, which also forbids a ``Domain``). Each sign-in starts a
new session with a new id (an id planted before sign-in is worthless); a session ends at
sign-out, after ``LIFETIME``, or as soon as its token is no longer configured (a reload
that removes or changes the token ends every session opened with it).

Every form POST of a signed-in page carries the session's CSRF token in a ``csrf_token``
field; the sign-in form, which has no session yet, carries a token bound to a short-lived
cookie instead (double submit, keyed). A missing or wrong token is refused with 403.

Sessions live in this process's memory, at most ``MAX_SESSIONS`` of them: a restart signs
everybody out, which is the safe direction. The JSON API does not take the cookie: it
keeps its bearer tokens, so no cross-site request can act through it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .auth import Identity, Role, TokenAuth, token_digest
from .errors import Forbidden

__all__ = [
    "CSRF_FIELD", "LIFETIME", "LOGIN_PATH", "MAX_SESSIONS", "Session", "SessionAuth", "SessionStore",
    "SignInRequired", "login_url", "safe_next",
]

LOGIN_PATH = "/login"
#: A session's lifetime from sign-in, in seconds.
LIFETIME = 12 * 3600.0
#: Sessions kept at most; past it the oldest ends.
MAX_SESSIONS = 10_000
#: How long a sign-in form stays valid, in seconds.
LOGIN_FORM_LIFETIME = 3600
CSRF_FIELD = "csrf_token"
_SESSION_KEY = "pgperf.session"


class SignInRequired(Exception):
    """The request needs a signed-in session and has none (or its session ended)."""


@dataclass(frozen=True)
class Session:
    """One signed-in browser."""

    id: str
    identity: Identity
    csrf_token: str
    token_digest: bytes  # of the API token it was opened with
    created: float
    expires: float

    @staticmethod
    def of(request: Request) -> Session | None:
        """The session *request* was authenticated by (``SessionAuth.require``), if any."""
        value = request.environ.get(_SESSION_KEY)
        return value if isinstance(value, Session) else None


def _key(session_id: str) -> bytes:
    # Sessions are found by a hash of their id: the ids themselves are not kept.
    return hashlib.sha256(session_id.encode()).digest()


class SessionStore:
    """Sessions by id, in memory, each with an expiry; bounded."""

    def __init__(self, lifetime: float = LIFETIME, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self.clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def create(self, identity: Identity, digest: bytes) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), identity, secrets.token_urlsafe(32), digest, now,
                          now + self.lifetime)
        with self._lock:
            self._sessions[_key(session.id)] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session *session_id*; None when unknown, ended or expired."""
        key = _key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= self.clock():
                del self._sessions[key]
                session = None
        return session

    def end(self, session_id: str) -> bool:
        """End session *session_id*; whether it existed."""
        with self._lock:
            return self._sessions.pop(_key(session_id), None) is not None

    def __len__(self) -> int:
        return len(self._sessions)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this server (never another site), else ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value) or value.startswith(LOGIN_PATH):
        return "/"
    return value


class SessionAuth:
    """Sessions of the console: cookies, sign-in and sign-out, CSRF checks."""

    def __init__(self, store: SessionStore | None = None) -> None:
        self.store = store or SessionStore()
        self._form_key = secrets.token_bytes(32)

    # -- cookies --------------------------------------------------------------------------

    @staticmethod
    def cookie_name(request: Request, base: str = "pgperf_session") -> str:
        """The cookie's name: ``__Host-`` prefixed under TLS (the browser then insists on
        Secure, Path=/ and no Domain)."""
        return f"__Host-{base}" if request.is_secure else base

    def _set_cookie(self, request: Request, response: Response, base: str, value: str, max_age: int) -> None:
        response.set_cookie(self.cookie_name(request, base), value, max_age=max_age, path="/",
                            secure=request.is_secure, httponly=True, samesite="Strict")

    # -- the session of a request -------------------------------------------------------

    def current(self, request: Request, tokens: TokenAuth) -> Session | None:
        """The request's live session, if any; a session whose token is no longer
        configured (or now has another role) is ended here."""
        session_id = request.cookies.get(self.cookie_name(request))
        if not session_id:
            return None
        session = self.store.get(session_id)
        if session is None:
            return None
        if tokens.identify_digest(session.token_digest) != session.identity:
            self.store.end(session_id)
            return None
        return session

    def require(self, request: Request, tokens: TokenAuth, role: Role) -> Session:
        """The request's session, its identity bound to the request (for the audit log);
        SignInRequired without one, Forbidden when its role is not enough."""
        session = self.current(request, tokens)
        if session is None:
            raise SignInRequired()
        session.identity.bind(request)
        request.environ[_SESSION_KEY] = session
        if not session.identity.allows(role):
            raise Forbidden(f"signed in as {session.identity.name!r} with the {session.identity.role} role; "
                            f"this needs the {role} role")
        return session

    @staticmethod
    def check_csrf(request: Request, session: Session) -> None:
        """Forbidden unless the form's ``csrf_token`` is the session's."""
        given = request.form.get(CSRF_FIELD, "")
        if not given or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
            raise Forbidden("missing or wrong csrf_token: reload the page and try again")

    # -- signing in and out -------------------------------------------------------------------

    def login_form_token(self, request: Request, response: Response) -> str:
        """The ``csrf_token`` of a sign-in form, bound to a cookie set on *response*."""
        nonce = request.cookies.get(self.cookie_name(request, "pgperf_login")) or ""
        if len(nonce) < 32:
            nonce = secrets.token_urlsafe(32)
        self._set_cookie(request, response, "pgperf_login", nonce, LOGIN_FORM_LIFETIME)
        return self._form_token(nonce)

    def _form_token(self, nonce: str) -> str:
        return hmac.new(self._form_key, nonce.encode(), hashlib.sha256).hexdigest()

    def check_login_csrf(self, request: Request) -> None:
        """Forbidden unless the sign-in form's ``csrf_token`` matches its cookie."""
        nonce = request.cookies.get(self.cookie_name(request, "pgperf_login")) or ""
        given = request.form.get(CSRF_FIELD, "")
        if not nonce or not given or not hmac.compare_digest(given.encode(), self._form_token(nonce).encode()):
            raise Forbidden("missing or wrong csrf_token: the sign-in form expired; reload it and try again")

    def sign_in(self, request: Request, response: Response, tokens: TokenAuth, token: str) -> Session | None:
        """Start a new session for *token* (ending the browser's previous one), its cookie
        set on *response*; None when the token is not a configured one."""
        presented = token.strip().encode()
        identity = tokens.identify(presented) if presented else None
        if identity is None:
            return None
        previous = request.cookies.get(self.cookie_name(request))
        if previous:
            self.store.end(previous)
        session = self.store.create(identity, token_digest(presented))
        self._set_cookie(request, response, "pgperf_session", session.id, int(self.store.lifetime))
        response.delete_cookie(self.cookie_name(request, "pgperf_login"), path="/", secure=request.is_secure,
                               httponly=True, samesite="Strict")
        return session

    def sign_out(self, request: Request, response: Response) -> None:
        """End the request's session and remove its cookie."""
        session_id = request.cookies.get(self.cookie_name(request))
        if session_id:
            self.store.end(session_id)
        response.delete_cookie(self.cookie_name(request), path="/", secure=request.is_secure, httponly=True,
                               samesite="Strict")


def login_url(request: Request) -> str:
    """``/login?next=<this page>``."""
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return f"{LOGIN_PATH}?next={quote(target, safe='/')}"
