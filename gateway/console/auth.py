"""Console sessions, CSRF tokens and the login rate limit.

Theory of operation
-------------------
- **Session.** A successful login creates a random 256-bit session id kept in memory on the
  gateway; the browser holds it in the `vc_session` cookie (HttpOnly, SameSite=Strict, Secure
  unless the console is configured for plain http on localhost tests). A session ends at
  logout, after `IDLE_S` without a request, or `MAX_S` after login. The role is re-read from
  the users table on every request, so disabling an account takes effect at once.
- **CSRF.** Each session has its own random token. Every form carries it in `csrf_token`,
  every JSON request that changes something in the `X-CSRF-Token` header; a missing or wrong
  token is a 403. Before login there is no session, so the login form uses a double-submit
  pair instead: a random nonce in the `vc_login` cookie and the same nonce, signed with the
  console secret (itsdangerous, 1 hour), in the form.
- **API tokens.** A machine client (a service account, `vericam users token create`) sends
  `Authorization: Bearer vct_...` on each JSON request instead of a session cookie. It gets a
  per-request `Session` with the role `service` and the token's scopes; only routes that name a
  scope accept it, and those only read, so a bearer call needs no CSRF token (a browser never
  sends the header by itself, so a forged cross-site request cannot carry it).
- **Rate limit.** Failed logins are counted per client address and per user name in a sliding
  window; at `MAX_FAILURES` within `WINDOW_S` further attempts are refused with 429 without
  checking the password, until the oldest failure leaves the window.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "vc_session"
LOGIN_COOKIE = "vc_login"
IDLE_S = 30 * 60
MAX_S = 12 * 3600
MAX_FAILURES = 5
WINDOW_S = 300.0


@dataclass
class Session:
    user: str
    role: str
    csrf: str
    created: float
    seen: float
    scopes: frozenset[str] | None = None  # a service account's API token: what it may do instead of a role
    opened: dict[str, str] = field(default_factory=dict)  # "device/alarm" -> the reason a supervisor gave


@dataclass
class Sessions:
    clock: callable = time.monotonic
    _by_id: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, user: str, role: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        s = Session(user, role, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._by_id[sid] = s
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.seen > IDLE_S or now - s.created > MAX_S:
                del self._by_id[sid]
                return None
            s.seen = now
            return s

    def end(self, sid: str | None) -> Session | None:
        with self._lock:
            return self._by_id.pop(sid, None) if sid else None


def csrf_ok(session: Session | None, token: str | None) -> bool:
    return bool(session and token and hmac.compare_digest(session.csrf.encode(), token.encode()))


class LoginForm:
    """Double-submit CSRF for the login form (there is no session yet)."""

    def __init__(self, secret: str):
        self._signer = URLSafeTimedSerializer(secret, salt="vericam-console-login")

    def issue(self) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(16)
        return nonce, self._signer.dumps(nonce)

    def check(self, cookie_nonce: str | None, token: str | None) -> bool:
        if not cookie_nonce or not token:
            return False
        try:
            nonce = self._signer.loads(token, max_age=3600)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce.encode(), cookie_nonce.encode())


class LoginLimiter:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, clock=time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._fails: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _keys(self, client: str, name: str) -> list[str]:
        return [f"ip:{client}", f"user:{(name or '').lower()[:64]}"]

    def retry_after(self, client: str, name: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for k in self._keys(client, name):
                q = self._fails.get(k)
                while q and now - q[0] > self.window_s:
                    q.popleft()
                if not q:
                    self._fails.pop(k, None)  # forget quiet keys: memory stays bounded by recent failures
                    continue
                if len(q) >= self.max_failures:
                    wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def failed(self, client: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            for k in self._keys(client, name):
                self._fails[k].append(now)

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            self._fails.pop(self._keys(client, name)[1], None)
