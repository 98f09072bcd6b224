"""Checkpoints of the logbook: the log's state (origin, tree size, root hash) as a signed note.

Formats, so that the generic transparency-log tooling and an auditor with ``openssl`` can read
them:

- body: transparency-dev/formats ``log`` checkpoint (C2SP tlog-checkpoint) — the origin line,
  the tree size in decimal, the root hash in standard base64, each ending in a newline. This
  service writes no extension lines, and refuses them when parsing (fail closed);
- signature: C2SP signed-note — after the body, a blank line, then
  ``"— <key name> <base64(key id || Ed25519 signature)>"`` (U+2014 EM DASH, a space). The
  signature is Ed25519 over the body bytes exactly, so ``openssl pkeyutl -verify -rawin`` checks
  it given the body and the 64 signature bytes. The key id is the first 4 bytes of
  SHA-256(key name || 0x0A || 0x01 || raw public key), 0x01 naming Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "key_id",
    "parse_checkpoint",
    "parse_signed_note",
    "sign_checkpoint",
    "verify_checkpoint",
]

HASH_SIZE = 32  # SHA-256; merkle.HASH_SIZE, not imported so that the two stay independent
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, then a space
ED25519_ALGORITHM = b"\x01"  # signed-note signature type of Ed25519
ED25519_SIGNATURE_SIZE = 64
MAX_SIZE = 2**64 - 1  # tlog-checkpoint sizes are uint64
MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note: a bound on work, not a format rule

_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # control characters but newline


class CheckpointError(ValueError):
    """A checkpoint or signed note that is malformed, or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    """The state of one log: ``origin`` names the log (one per tenant), ``size`` leaves,
    ``root`` their RFC 9162 root hash. Checked on creation."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointError("checkpoint origin is empty")
        if "\n" in self.origin or _CONTROL_RE.search(self.origin):
            raise CheckpointError(f"checkpoint origin {self.origin!r} has control characters")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError(f"checkpoint size {self.size!r} is not an integer")
        if not 0 <= self.size <= MAX_SIZE:
            raise CheckpointError(f"checkpoint size {self.size} is outside 0..2**64-1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root is not a {HASH_SIZE}-byte hash")

    def body(self) -> bytes:
        """The note body that is signed: ``origin\\nsize\\nbase64(root)\\n``, UTF-8."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n".encode()


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note."""

    key_name: str
    key_id: bytes
    signature: bytes


def _decode_text(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{what} is not UTF-8") from None
    if _CONTROL_RE.search(text):
        raise CheckpointError(f"{what} has control characters")
    if not text.endswith("\n"):
        raise CheckpointError(f"{what} does not end with a newline")
    return text


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckpointError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def parse_checkpoint(body: bytes) -> Checkpoint:
    """Parse a checkpoint body strictly: exactly the three lines that :meth:`Checkpoint.body`
    writes, decimal size without sign or leading zeros, canonical base64 of a 32-byte root."""
    text = _decode_text(body, "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise CheckpointError(f"checkpoint has {len(lines)} lines, expected 3")
    origin, size_text, root_text = lines
    if not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError(f"checkpoint size {size_text!r} is not a canonical decimal")
    root = _b64decode(root_text, "checkpoint root")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"checkpoint root is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin=origin, size=int(size_text), root=root)


def _check_key_name(key_name: str) -> None:
    if not key_name or any(c.isspace() or c == "+" for c in key_name):
        raise CheckpointError(f"key name {key_name!r} is empty or has spaces or '+'")


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key_name: str, public_key: bytes) -> bytes:
    """Signed-note key id: SHA-256(key name || 0x0A || 0x01 || raw Ed25519 key)[:4]."""
    if len(public_key) != 32:
        raise CheckpointError(f"Ed25519 public key is {len(public_key)} bytes, expected 32")
    digest = hashlib.sha256(key_name.encode() + b"\n" + ED25519_ALGORITHM + public_key)
    return digest.digest()[:4]


def sign_checkpoint(cp: Checkpoint, private_key: Ed25519PrivateKey, key_name: str) -> bytes:
    """The signed note: the body, a blank line, and one signature line by ``key_name``."""
    _check_key_name(key_name)
    body = cp.body()
    kid = key_id(key_name, _raw_public_key(private_key.public_key()))
    blob = base64.b64encode(kid + private_key.sign(body)).decode("ascii")
    return body + f"\n{SIGNATURE_PREFIX}{key_name} {blob}\n".encode()


def parse_signed_note(note: bytes) -> tuple[bytes, list[NoteSignature]]:
    """Split a signed note into its body (the signed bytes) and its signature lines; nothing
    is verified. Raises CheckpointError when the note is malformed."""
    text = _decode_text(note, "signed note")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("signed note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise CheckpointError("signed note has no signature")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"signed note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError(f"signature line {line!r} does not start with '— '")
        fields = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise CheckpointError(f"signature line {line!r} is not '— <name> <signature>'")
        name, blob_text = fields
        _check_key_name(name)
        blob = _b64decode(blob_text, f"signature of {name!r}")
        if len(blob) < 5:
            raise CheckpointError(f"signature of {name!r} is too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    return body.encode(), signatures


def verify_checkpoint(note: bytes, public_key: Ed25519PublicKey, key_name: str) -> Checkpoint:
    """Verify the signature of ``key_name`` / ``public_key`` on a signed note and return its
    checkpoint. Signatures by other keys (witnesses, a previous key) are ignored; one by this
    key that does not verify, or none at all, is an error, as is any malformed part."""
    _check_key_name(key_name)
    body, signatures = parse_signed_note(note)
    kid = key_id(key_name, _raw_public_key(public_key))
    ours = [s for s in signatures if s.key_name == key_name and s.key_id == kid]
    if not ours:
        found = ", ".join(f"{s.key_name}/{s.key_id.hex()}" for s in signatures)
        raise CheckpointError(
            f"no signature by key {key_name}/{kid.hex()} (found: {found or 'none'})"
        )
    for sig in ours:
        if len(sig.signature) != ED25519_SIGNATURE_SIZE:
            raise CheckpointError(f"signature of {key_name} is not 64 bytes")
        try:
            public_key.verify(sig.signature, body)
        except InvalidSignature:
            raise CheckpointError(f"signature of {key_name} does not verify") from None
    return parse_checkpoint(body)
