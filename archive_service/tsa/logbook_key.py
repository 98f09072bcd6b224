"""The Ed25519 key that signs logbook checkpoints: read from a PEM file, or made once.

With ``ARCHIVE_LOGBOOK_SIGNING_KEY`` the operator provides the key (PKCS#8 PEM, not
encrypted; protect the file). Without it, the one-machine default makes a key on first use in
``<data dir>/logbook/signing-key.pem`` (mode 0600) like the built-in TSA's keys: under an
exclusive ``flock``, written to a temporary name then renamed, never replaced. Production
refuses that generated key unless development defaults are allowed (``wiring``).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive_service.errors import ConfigurationError
from archive_service.tsa.builtin import _exclusive_lock, _fsync_directory, _write_atomic

KEY_FILE = "signing-key.pem"
LOCK_FILE = ".init.lock"


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the logbook signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"the logbook signing key {path} is not an Ed25519 key")
    return key


def generated_signing_key(directory: Path) -> Ed25519PrivateKey:
    """The key kept in ``directory``, made on first use (once, whatever races to make it)."""
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _exclusive_lock(directory / LOCK_FILE):
            if not path.exists():
                pem = Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                _write_atomic(path, pem, 0o600)
                _fsync_directory(directory)
    return load_signing_key(path)


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
