"""Staff accounts: roles, who may create whom, password and lockout rules, password hashing (argon2id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from geo._errors import InvalidInput

Role = Literal["manager", "attendant"]
ROLES: tuple[Role, ...] = ("manager", "attendant")
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,31}$"
MIN_PASSWORD = 10
MAX_PASSWORD = 128
MAX_FAILURES = 5  # failed logins in a row before the account locks
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)  # a console session lasts one long shift at most

# argon2id with the library's RFC 9106 "low memory" profile: 64 MiB, 3 passes.
_HASHER = PasswordHasher()


def check_username(username: str) -> str:
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidInput(
            "username",
            "must be 3-32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        )
    return username


def check_password(password: str, *, username: str = "") -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput("password", f"must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    if username and username.lower() in password.lower():
        raise InvalidInput("password", "must not contain the username")
    if len(set(password)) < 4:
        raise InvalidInput("password", "must use at least 4 different characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class LoginVerdict:
    ok: bool
    failed_logins: int
    locked_until: datetime | None


def after_attempt(failed_logins: int, *, ok: bool, now: datetime) -> LoginVerdict:
    """The account's counters after one attempt: success resets them, the MAX_FAILURES-th failure in a row
    locks the account for LOCKOUT."""
    if ok:
        return LoginVerdict(True, 0, None)
    failures = failed_logins + 1
    return LoginVerdict(False, failures, now + LOCKOUT if failures >= MAX_FAILURES else None)


def may_create(creator_role: str, *, creator_station: int | None, role: str, station_id: int) -> str | None:
    """Why `creator_role` may not create a `role` account at `station_id`, or None when it may. Operators
    (API keys) create anyone; a manager creates attendants of its own station only; attendants create none."""
    if role not in ROLES:
        return f"role must be one of {', '.join(ROLES)}"
    if creator_role == "operator":
        return None
    if creator_role == "manager":
        if role != "attendant":
            return "a station manager creates attendants only; managers are created by operators"
        if creator_station != station_id:
            return f"a station manager creates attendants of its own station only, not station {station_id}"
        return None
    return f"{creator_role} accounts may not create staff"
