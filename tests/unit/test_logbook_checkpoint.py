"""core.logbook.checkpoint: the checkpoint body (C2SP tlog-checkpoint), its strict parser, and
the signed note (C2SP signed-note, Ed25519), including a check by the real ``openssl``."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archive_service.core.logbook import (
    Checkpoint,
    CheckpointError,
    MemoryTree,
    key_id,
    leaf_hash,
    parse_checkpoint,
    parse_signed_note,
    sign_checkpoint,
    verify_checkpoint,
)

ORIGIN = "archive-service.example/tn-0123"
KEY_NAME = "archive-service.example"
ROOT = hashlib.sha256(b"root").digest()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"checkpoint test key").digest())


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    tree = MemoryTree([leaf_hash(str(i).encode()) for i in range(11)])
    return Checkpoint(origin=ORIGIN, size=tree.size, root=tree.root())


# --- body -----------------------------------------------------------------------------------


def test_body_format_and_round_trip(checkpoint: Checkpoint) -> None:
    body = checkpoint.body()
    root_b64 = base64.b64encode(checkpoint.root).decode()
    assert body == f"{ORIGIN}\n11\n{root_b64}\n".encode()
    assert parse_checkpoint(body) == checkpoint
    for size in (0, 1, 10, 2**63, 2**64 - 1):
        cp = Checkpoint(origin="é/ünïcode", size=size, root=ROOT)
        assert parse_checkpoint(cp.body()) == cp


URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode()
GOOD = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"


@pytest.mark.parametrize(
    "body",
    [
        GOOD[:-1].encode(),  # no final newline
        GOOD.replace("\n42\n", "\n042\n").encode(),  # leading zero
        GOOD.replace("\n42\n", "\n-42\n").encode(),  # sign
        GOOD.replace("\n42\n", "\n+42\n").encode(),
        GOOD.replace("\n42\n", "\n 42\n").encode(),
        GOOD.replace("\n42\n", "\n4 2\n").encode(),
        GOOD.replace("\n42\n", "\n0x2a\n").encode(),
        GOOD.replace("\n42\n", "\n\u0664\u0662\n").encode(),  # Arabic-Indic digits
        GOOD.replace("\n42\n", "\n\n").encode(),
        GOOD.replace("\n42\n", f"\n{2**64}\n").encode(),  # beyond uint64
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n".encode(),  # 31-byte hash
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT + b'x').decode()}\n".encode(),  # 33 bytes
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode().rstrip('=')}\n".encode(),  # no padding
        f"{ORIGIN}\n42\n{URLSAFE_ROOT}\n".encode(),  # base64url, not base64
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()[:-2]}!=\n".encode(),  # bad character
        f"{ORIGIN}\n42\n {base64.b64encode(ROOT).decode()}\n".encode(),
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\nextension\n".encode(),
        f"\n42\n{base64.b64encode(ROOT).decode()}\n".encode(),  # empty origin
        f"{ORIGIN}\r\n42\n{base64.b64encode(ROOT).decode()}\n".encode(),
        GOOD.encode() + b"\n",
        b"\xff" + GOOD.encode(),  # not UTF-8
        b"",
    ],
)
def test_strict_parsing(body: bytes) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_parse_accepts_the_good_body() -> None:
    assert parse_checkpoint(GOOD.encode()) == Checkpoint(ORIGIN, 42, ROOT)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("a\tb", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, 2**64, ROOT),
        (ORIGIN, True, ROOT),
        (ORIGIN, 1, ROOT[:31]),
        (ORIGIN, 1, ROOT.hex()),
    ],
)
def test_checkpoint_values_are_checked_on_creation(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin=origin, size=size, root=root)


# --- signed note ----------------------------------------------------------------------------


def test_key_id_is_the_signed_note_ed25519_key_hash(key: Ed25519PrivateKey) -> None:
    expected = hashlib.sha256(KEY_NAME.encode() + b"\n\x01" + raw(key)).digest()[:4]
    assert key_id(KEY_NAME, raw(key)) == expected
    assert key_id("other", raw(key)) != expected
    with pytest.raises(CheckpointError):
        key_id(KEY_NAME, raw(key)[:31])


def test_signed_note_format_and_verification(
    key: Ed25519PrivateKey, checkpoint: Checkpoint
) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    body, _, signature_line = note.partition(b"\n\n")
    assert body + b"\n" == checkpoint.body()
    assert signature_line.startswith(f"\u2014 {KEY_NAME} ".encode())
    assert signature_line.endswith(b"\n") and signature_line.count(b"\n") == 1
    blob = base64.b64decode(signature_line.split(b" ")[2].rstrip(b"\n"), validate=True)
    assert blob[:4] == key_id(KEY_NAME, raw(key))
    key.public_key().verify(blob[4:], checkpoint.body())  # Ed25519 over the body, nothing else
    assert verify_checkpoint(note, key.public_key(), KEY_NAME) == checkpoint
    parsed_body, signatures = parse_signed_note(note)
    assert parsed_body == checkpoint.body()
    assert [(s.key_name, s.key_id, s.signature) for s in signatures] == [
        (KEY_NAME, blob[:4], blob[4:])
    ]


def test_note_signed_by_another_key_is_rejected(
    key: Ed25519PrivateKey, checkpoint: Checkpoint
) -> None:
    other = Ed25519PrivateKey.generate()
    note = sign_checkpoint(checkpoint, other, KEY_NAME)  # same name, other key: unknown key id
    with pytest.raises(CheckpointError, match="no signature by key"):
        verify_checkpoint(note, key.public_key(), KEY_NAME)


def test_signature_moved_to_our_key_id_is_rejected(
    key: Ed25519PrivateKey, checkpoint: Checkpoint
) -> None:
    """Another key's signature relabelled with our key id does not verify."""
    other = Ed25519PrivateKey.generate()
    forged_sig = other.sign(checkpoint.body())
    blob = base64.b64encode(key_id(KEY_NAME, raw(key)) + forged_sig).decode()
    note = checkpoint.body() + f"\n\u2014 {KEY_NAME} {blob}\n".encode()
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(note, key.public_key(), KEY_NAME)


def test_edited_body_is_rejected(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    edits = [
        note.replace(b"\n11\n", b"\n12\n"),
        note.replace(ORIGIN.encode(), b"archive-service.example/tn-9999"),
        note.replace(base64.b64encode(checkpoint.root), base64.b64encode(ROOT)),
    ]
    for edited in edits:
        assert edited != note
        with pytest.raises(CheckpointError, match="does not verify"):
            verify_checkpoint(edited, key.public_key(), KEY_NAME)


def test_edited_signature_is_rejected(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    body, _, line = note.partition(b"\n\n")
    blob = base64.b64decode(line.split(b" ")[2].rstrip(b"\n"), validate=True)
    for position in [4, 20, 40, len(blob) - 1]:  # every part of the signature, not the key id
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        edited = body + f"\n\n\u2014 {KEY_NAME} {base64.b64encode(tampered).decode()}\n".encode()
        with pytest.raises(CheckpointError, match="does not verify"):
            verify_checkpoint(edited, key.public_key(), KEY_NAME)
    truncated = body + f"\n\n\u2014 {KEY_NAME} {base64.b64encode(blob[:-1]).decode()}\n".encode()
    with pytest.raises(CheckpointError):
        verify_checkpoint(truncated, key.public_key(), KEY_NAME)


def test_wrong_key_name_is_rejected(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    with pytest.raises(CheckpointError, match="no signature by key"):
        verify_checkpoint(note, key.public_key(), "archive-service.other")
    relabelled = note.replace(f"\u2014 {KEY_NAME} ".encode(), "\u2014 other-name ".encode())
    with pytest.raises(CheckpointError, match="no signature by key"):
        verify_checkpoint(relabelled, key.public_key(), KEY_NAME)
    with pytest.raises(CheckpointError):
        verify_checkpoint(relabelled, key.public_key(), "other-name")  # key id binds the name


def test_other_signers_are_ignored(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> None:
    witness = Ed25519PrivateKey.generate()
    ours = sign_checkpoint(checkpoint, key, KEY_NAME)
    theirs = sign_checkpoint(checkpoint, witness, "witness.example")
    cosigned = ours + theirs.partition(b"\n\n")[2]
    assert verify_checkpoint(cosigned, key.public_key(), KEY_NAME) == checkpoint
    assert verify_checkpoint(cosigned, witness.public_key(), "witness.example") == checkpoint
    assert len(parse_signed_note(cosigned)[1]) == 2


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n[:-1],  # no final newline
        lambda n: n.replace(b"\n\n", b"\n"),  # no blank line
        lambda n: n.partition(b"\n\n")[0] + b"\n\n",  # no signature line
        lambda n: n.replace("\u2014".encode(), b"-"),  # ASCII dash
        lambda n: n.replace("\u2014 ".encode(), "\u2014  ".encode()),
        lambda n: n + b"trailing garbage\n",
        lambda n: n[:-2] + b"\n",  # signature base64 without its padding
        lambda n: n.replace(b"\n\n", b"\n\t\n"),
        lambda n: b"\xff" + n,
        lambda n: n.partition(b"\n\n")[0] + b"\n\n" + b"\xe2\x80\x94 name AAAA\n",  # too short
    ],
)
def test_malformed_notes_are_rejected(
    key: Ed25519PrivateKey, checkpoint: Checkpoint, mangle: object
) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    assert callable(mangle)
    with pytest.raises(CheckpointError):
        verify_checkpoint(mangle(note), key.public_key(), KEY_NAME)


def test_bad_key_names_are_refused(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> None:
    for name in ["", "a b", "a+b", "a\nb", "a\u00a0b"]:
        with pytest.raises(CheckpointError):
            sign_checkpoint(checkpoint, key, name)


# --- openssl, as an auditor would -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_signature(
    key: Ed25519PrivateKey, checkpoint: Checkpoint, tmp_path: Path
) -> None:
    note = sign_checkpoint(checkpoint, key, KEY_NAME)
    body, signatures = parse_signed_note(note)
    (tmp_path / "body").write_bytes(body)
    (tmp_path / "sig").write_bytes(signatures[0].signature)
    (tmp_path / "pub.pem").write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    command = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-in",
        "body",
        "-sigfile",
        "sig",
    ]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout

    (tmp_path / "body").write_bytes(body.replace(b"\n11\n", b"\n12\n"))
    bad = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0
