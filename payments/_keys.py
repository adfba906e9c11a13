"""Key material of a WeChat Pay merchant and of a platform (the fake gateway's), as files in one folder.

In production the merchant key comes from the merchant platform and the platform public key from WeChat
Pay; in development and tests `ensure_dev_keys` generates both pairs, so the fake gateway signs with a
platform key that our client knows only by its public half, like the real one.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEYS_FILE = "keys.json"  # mchid, appid, serial numbers, the APIv3 key
MERCHANT_PRIVATE = "merchant_private.pem"
MERCHANT_PUBLIC = "merchant_public.pem"
PLATFORM_PRIVATE = "platform_private.pem"  # only the fake gateway reads it
PLATFORM_PUBLIC = "platform_public.pem"


@dataclass(frozen=True)
class DevKeys:
    """One merchant and one platform: what both the fake gateway and our client need to know."""

    folder: Path
    mchid: str
    appid: str
    merchant_serial_no: str
    public_key_id: str
    apiv3_key: str

    @property
    def merchant_private_pem(self) -> str:
        return (self.folder / MERCHANT_PRIVATE).read_text()

    @property
    def merchant_public_pem(self) -> str:
        return (self.folder / MERCHANT_PUBLIC).read_text()

    @property
    def platform_private_pem(self) -> str:
        return (self.folder / PLATFORM_PRIVATE).read_text()

    @property
    def platform_public_pem(self) -> str:
        return (self.folder / PLATFORM_PUBLIC).read_text()


def _pem_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def ensure_dev_keys(folder: Path) -> DevKeys:
    """The keys in `folder`, generated on the first call (under a file lock: concurrent starts agree)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / KEYS_FILE).exists():
            for private_name, public_name in (
                (MERCHANT_PRIVATE, MERCHANT_PUBLIC),
                (PLATFORM_PRIVATE, PLATFORM_PUBLIC),
            ):
                private, public = _pem_pair()
                _write(folder / private_name, private, mode=0o600)
                _write(folder / public_name, public, mode=0o644)
            meta = {
                "mchid": "19" + "".join(secrets.choice("0123456789") for _ in range(8)),
                "appid": "wx" + secrets.token_hex(8),
                "merchant_serial_no": secrets.token_hex(20).upper(),
                "public_key_id": "PUB_KEY_ID_" + secrets.token_hex(16).upper(),
                "apiv3_key": secrets.token_urlsafe(32)[:32],
            }
            _write(folder / KEYS_FILE, json.dumps(meta, indent=2).encode(), mode=0o600)  # last: complete
    return load_dev_keys(folder)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def load_dev_keys(folder: Path) -> DevKeys:
    meta = json.loads((folder / KEYS_FILE).read_text())
    return DevKeys(folder=folder, **meta)
