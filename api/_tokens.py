"""Our session tokens for mini-program users: JWT (HS256, PyJWT) under a key derived from
FUEL_SECRET_KEY, with the user id (`sub`), the openid (`oid`), issue and expiry times, issuer and
audience. Checked without a database round trip: the signature, the expiry, the issuer and the audience.
A token is the user's only: it is never logged, and its payload holds nothing the user does not know.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import jwt

from store._users import User

ALGORITHM = "HS256"
ISSUER = "lijiang-fuel"
AUDIENCE = "mini-program"
_KEY_LABEL = b"lijiang-fuel user session v1"
MAX_TOKEN_CHARS = 2_048  # longer is never one of ours: refused without decoding


def session_key(secret_key: str) -> bytes:
    """The session tokens' own key, derived from FUEL_SECRET_KEY (never the secret itself)."""
    return hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def issue(user: User, *, secret_key: str, ttl_s: int, now: datetime | None = None) -> tuple[str, datetime]:
    """A signed token for `user` and when it expires."""
    now = now or datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_s)
    claims = {
        "sub": str(user.id),
        "oid": user.openid,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, session_key(secret_key), algorithm=ALGORITHM), expires.replace(microsecond=0)


def verify(token: str, *, secret_key: str) -> User | None:
    """The user of a valid token, else None (bad signature, expired, malformed, another issuer)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        claims = jwt.decode(
            token,
            session_key(secret_key),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["sub", "oid", "exp", "iat", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        return None
    sub, oid = claims.get("sub"), claims.get("oid")
    if not isinstance(sub, str) or not sub.isdigit() or not isinstance(oid, str):
        return None
    return User(int(sub), oid)


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
