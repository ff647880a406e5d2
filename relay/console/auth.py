"""Who may use the console and the admin API, decided from a request's facts without I/O.

The console can replay and pause, so it is production admin. Three modes follow from
``server.admin_token`` and the address the relay listens on:

- ``token``: an admin token is set. The API takes ``Authorization: Bearer <token>``;
  the console's login form turns the token into a session cookie, signed with a key
  derived from the token (so sessions hold across ``--workers`` processes, need no
  store, and all end when the token changes).
- ``local``: no admin token, and the relay listens on loopback only. Loopback peers
  that name a loopback ``Host`` (no DNS rebinding) and carry no proxy header are let
  in; pages get a session cookie signed with a per-run key.
- ``off``: no admin token and the relay listens beyond loopback: nobody.

A state-changing request needs the ``X-CSRF-Token`` header: with a session, the token
derived from that session (a cookie alone is refused); a bearer token is proof enough,
as no web page can make a browser send one. A web page cannot add a header to a
cross-origin request either, which is what the header check rests on.

Failed token attempts are counted per client in :class:`Throttle`, which locks a
client out for a while after a few, in bounded memory.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import AdminRefused

COOKIE = "relay_session"
CSRF_HEADER = "x-csrf-token"
#: A console session lasts this long; then the login form again.
SESSION_TTL = 12 * 3600.0
#: Headers a proxy adds: a request carrying one did not come from a local operator.
PROXY_HEADERS = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Sessions signed while no admin token is set; made once per run, before
#: ``--workers`` forks, so every server process accepts the others' cookies.
_RUN_KEY = secrets.token_bytes(32)
_LABEL = b"pushwoosh-relay console session v1"

OFF = (
    "the console and admin API are off: the relay listens beyond loopback and"
    " server.admin_token is not set (set RELAY_ADMIN_TOKEN)"
)
LOCAL_ONLY = (
    "without server.admin_token the console and admin API answer only local clients"
    " (loopback address and Host, no proxy in between); set RELAY_ADMIN_TOKEN to reach them"
    " from elsewhere"
)
NEED_CSRF = (
    "missing or wrong X-CSRF-Token header: a state-changing request needs it"
    " (a session cookie alone is not enough)"
)


class Mode(enum.StrEnum):
    TOKEN = "token"
    LOCAL = "local"
    OFF = "off"


def mode(admin_token: str, listen_host: str) -> Mode:
    """How the console is reached, from the admin token and the listening address."""
    if admin_token:
        return Mode.TOKEN
    return Mode.LOCAL if is_loopback_host(listen_host) else Mode.OFF


def is_loopback_ip(ip: str | None) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def is_loopback_host(host: str) -> bool:
    """A listening address or Host name that only this machine reaches."""
    return host.lower() == "localhost" or is_loopback_ip(host)


def host_header_is_local(host: str | None) -> bool:
    """``localhost:8080``, ``127.0.0.1``, ``[::1]:8080``: a Host only a local client names."""
    if not host:
        return False
    name = host.strip()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return is_loopback_host(name)


def bearer(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def token_matches(given: str, expected: str) -> bool:
    """Constant time, whatever the given text holds."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    issued_at: float


class Sessions:
    """Signed, expiring session cookies and the CSRF token of each session.

    The cookie is ``<issued, hex>.<nonce>.<HMAC-SHA256 of both>``: nothing is stored on
    the server, so any process holding the key accepts it.
    """

    def __init__(self, key: bytes, ttl: float = SESSION_TTL) -> None:
        self._key = key
        self.ttl = ttl

    @classmethod
    def for_token(cls, admin_token: str) -> Sessions:
        """Sessions keyed from the admin token (``""``: this run's key)."""
        if not admin_token:
            return cls(_RUN_KEY)
        return cls(hmac.new(admin_token.encode(), _LABEL, hashlib.sha256).digest())

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self, now: float) -> str:
        body = f"{int(now):x}.{secrets.token_hex(16)}"
        return f"{body}.{self._sign(body)}"

    def verify(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie holds, or None if it is forged, malformed or expired."""
        if not cookie or len(cookie) > 128:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or len(parts[0]) > 12 or len(parts[1]) != 32:
            return None
        issued, nonce, signature = parts
        if not hmac.compare_digest(signature.encode(), self._sign(f"{issued}.{nonce}").encode()):
            return None
        try:
            at = float(int(issued, 16))
        except ValueError:
            return None
        if not at - 60 <= now < at + self.ttl:  # a minute of clock skew between processes
            return None
        return Session(nonce, at)

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session: derived, so no process needs to remember it."""
        return self._sign(f"csrf.{session.nonce}")


@dataclass(slots=True)
class _Record:
    failures: int
    blocked_until: float
    last: float


class Throttle:
    """Failed admin-token attempts per client, in bounded memory.

    The first ``free`` failures cost nothing (typos); each further one locks the client
    out for twice as long as the one before, from ``base`` up to ``ceiling`` seconds. A
    client quiet for ``forget_after`` starts over; beyond ``capacity`` clients the
    longest quiet ones are forgotten.
    """

    def __init__(
        self,
        *,
        capacity: int = 4096,
        free: int = 5,
        base: float = 1.0,
        ceiling: float = 300.0,
        forget_after: float = 900.0,
    ) -> None:
        self.capacity = capacity
        self.free = free
        self.base = base
        self.ceiling = ceiling
        self.forget_after = forget_after
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    @property
    def tracked(self) -> int:
        """How many clients are remembered (at most ``capacity``)."""
        return len(self._clients)

    def blocked_for(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        record = self._clients.get(client)
        return max(0.0, record.blocked_until - now) if record else 0.0

    def failed(self, client: str, now: float) -> None:
        record = self._clients.pop(client, None)
        failures = 1
        if record is not None and now - record.last < self.forget_after:
            failures = record.failures + 1
        until = 0.0
        if failures > self.free:
            until = now + min(self.ceiling, self.base * 2.0 ** min(failures - self.free - 1, 30))
        self._clients[client] = _Record(failures, until, now)
        while len(self._clients) > self.capacity:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a request says about itself, as far as access is concerned."""

    method: str
    peer: str | None  # the connection's address, never a header's
    host: str | None  # the Host header
    proxied: bool  # it carries a header that a proxy adds
    authorization: str | None
    cookie: str | None
    csrf: str | None
    client: str  # whom failed attempts are counted against

    @property
    def changes_state(self) -> bool:
        return self.method.upper() not in SAFE_METHODS


@dataclass(frozen=True, slots=True)
class Access:
    """Who is in: by ``token``, by ``session`` or as a ``local`` client.

    ``csrf`` is the token pages put in ``hx-headers``; ``set_cookie`` a session cookie
    to send (a local client's first page).
    """

    kind: str
    csrf: str | None = None
    set_cookie: str | None = None


def retry_after(seconds: float) -> AdminRefused:
    wait = math.ceil(seconds)
    return AdminRefused(
        429, f"too many failed attempts: try again in {wait}s", retry_after=float(wait)
    )


def reachable(facts: Facts, admin_token: str, listen_host: str) -> Mode:
    """The mode, if this client may reach the console at all (the login page, static
    files); else AdminRefused(403): off, or not a local client without an admin token."""
    current = mode(admin_token, listen_host)
    if current is Mode.OFF:
        raise AdminRefused(403, OFF)
    if current is Mode.LOCAL:
        local = is_loopback_ip(facts.peer) and host_header_is_local(facts.host)
        if not local or facts.proxied:
            raise AdminRefused(403, LOCAL_ONLY)
    return current


def decide(
    facts: Facts,
    admin_token: str,
    listen_host: str,
    throttle: Throttle,
    now: float,
    *,
    start_session: bool = False,
) -> Access:
    """Let a request in or raise :class:`AdminRefused` (401, 403 or 429) saying why.

    ``start_session``: a page for people, which gives a local client a session cookie.
    """
    current = reachable(facts, admin_token, listen_host)
    sessions = Sessions.for_token(admin_token)
    if current is Mode.LOCAL:
        session = sessions.verify(facts.cookie, now)
        if session is None:
            # A web page cannot add a header to another origin's request: asking for one
            # is what keeps a page the operator visits from driving a local relay.
            if facts.changes_state and not facts.csrf:
                raise AdminRefused(403, NEED_CSRF)
            if not start_session:
                return Access("local")
            cookie = sessions.issue(now)
            session = sessions.verify(cookie, now)
            assert session is not None
            return Access("local", sessions.csrf(session), cookie)
        return Access("local", _checked_csrf(facts, sessions.csrf(session)))
    given = bearer(facts.authorization)
    if given is not None:
        wait = throttle.blocked_for(facts.client, now)
        if wait > 0:
            raise retry_after(wait)
        if not token_matches(given, admin_token):
            throttle.failed(facts.client, now)
            raise AdminRefused(401, "wrong admin token")
        throttle.succeeded(facts.client)
        return Access("token")
    session = sessions.verify(facts.cookie, now)
    if session is None:
        raise AdminRefused(401, "log in, or send Authorization: Bearer <admin token>")
    return Access("session", _checked_csrf(facts, sessions.csrf(session)))


def _checked_csrf(facts: Facts, expected: str) -> str:
    if facts.changes_state and not hmac.compare_digest(
        (facts.csrf or "").encode("utf-8", "replace"), expected.encode()
    ):
        raise AdminRefused(403, NEED_CSRF)
    return expected


def login(given: str, admin_token: str, client: str, throttle: Throttle, now: float) -> str:
    """The login form's check: a session cookie for the right token, else AdminRefused."""
    wait = throttle.blocked_for(client, now)
    if wait > 0:
        raise retry_after(wait)
    if not admin_token or not token_matches(given, admin_token):
        throttle.failed(client, now)
        raise AdminRefused(401, "wrong admin token")
    throttle.succeeded(client)
    return Sessions.for_token(admin_token).issue(now)
