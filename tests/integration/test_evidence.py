"""Evidence bundles and ``archive-verify`` (issue 4 items 5 and 6), on both stacks.

A bundle made by the real service verifies with ``archive-verify`` (a subprocess, no
ARCHIVE_* setting), with ``openssl ts -verify`` / ``openssl pkeyutl`` and with ``python3 -I
verify_proofs.py`` in the extracted bundle; and each corruption of the matrix is detected and
named — by ``archive-verify`` (in the bundle, or in the objects it is given), by ``audit``
(an object in one offer) and by ``logbook verify`` (the database), where the service refuses to
build a bundle from a logbook it finds tampered with.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archive_service.config import Settings
from tests.integration.conftest import Env
from tests.integration.test_logbook import ingest
from tests.tsa_helpers import openssl

REPO = Path(__file__).parents[2]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Checkpoints locked on the shared test S3 server for a day, not for 30 years.
    return settings.model_copy(update={"logbook_checkpoint_retention_days": 1})


def fetch(env: Env, unit_id: str, role: str = "archivist", **params: Any) -> bytes:
    r = env.http.get(f"/v1/archive-units/{unit_id}/evidence", params=params, headers=env.auth(role))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    return r.content


def archive_verify(bundle: Path, *args: str | Path) -> tuple[int, dict[str, Any], str]:
    """The real console script's code, as an auditor runs it: no ARCHIVE_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    text = subprocess.run(
        [sys.executable, "-m", "archive_service.cli.archive_verify", str(bundle), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    as_json = subprocess.run(
        [sys.executable, "-m", "archive_service.cli.archive_verify", str(bundle), "--json"]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert as_json.returncode == text.returncode, (text.stdout, as_json.stdout)
    return text.returncode, json.loads(as_json.stdout), text.stdout


def failed(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["subject"]) for c in report["checks"] if not c["ok"]]


def rewrite(bundle: bytes, target: Path, changes: dict[str, bytes | None]) -> Path:
    """A copy of the zip with some members replaced (``None``: removed)."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is not None:
                    dst.writestr(info.filename, data)
            else:
                dst.writestr(info, src.read(info))
    return target


def members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return {n: z.read(n) for n in z.namelist()}


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --- a good bundle --------------------------------------------------------------------------


def test_a_bundle_verifies_with_archive_verify_openssl_and_python3(
    env: Env, tmp_path: Path
) -> None:
    unit_id = ingest(env, tmp_path)
    bundle = fetch(env, unit_id, with_objects="true")
    path = tmp_path / "evidence.zip"
    path.write_bytes(bundle)
    files = members(bundle)
    for name in (
        "VERIFY.md", "report.html", "report.pdf", "bundle.json", "manifest.xml", "timestamp.tsr",
        "tsa-chain.pem", "SHA256SUMS", "SHA512SUMS", "logbook/checkpoint.note",
        "logbook/checkpoint.tsr", "logbook/checkpoint.body", "logbook/checkpoint.sig",
        "logbook/public-key.pem", "logbook/key-name.txt", "logbook/proofs.json",
        "verify_proofs.py", "merkle.py", "canonical.py",
    ):  # fmt: skip
        assert name in files, name
    assert files["report.pdf"].startswith(b"%PDF")
    assert "Relevé de valeur probante" in files["report.html"].decode()
    objects = json.loads(files["bundle.json"])["objects"]
    assert objects
    assert sorted(n for n in files if n.startswith("content/")) == sorted(o["uri"] for o in objects)

    code, report, text = archive_verify(path)
    assert code == 0, text
    names = [c["name"] for c in report["checks"]]
    for expected in (
        "2.3 token signed by the TSA chain",
        "7.3 checkpoint signed by the logbook key",
        "7.6.3 token signed by the TSA chain",
        "9.3 package.timestamped entry = this manifest and token",
    ):
        assert expected in names
    assert any(n.startswith("3.3 SHA-256") for n in names)
    assert "expected:" in text and "found:" in text

    out = tmp_path / "x"
    with zipfile.ZipFile(path) as z:
        z.extractall(out)
    # the objects, with sha256sum -c
    subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, check=True, capture_output=True)
    subprocess.run(["sha512sum", "-c", "SHA512SUMS"], cwd=out, check=True, capture_output=True)
    # tokens with the real openssl ts -verify, the checkpoint with openssl pkeyutl
    openssl(out, "ts -verify -data manifest.xml -in timestamp.tsr -CAfile tsa-chain.pem")
    openssl(
        out,
        "ts -verify -data logbook/checkpoint.note -in logbook/checkpoint.tsr -CAfile tsa-chain.pem",
    )
    openssl(
        out,
        "pkeyutl -verify -pubin -inkey logbook/public-key.pem -rawin"
        " -in logbook/checkpoint.body -sigfile logbook/checkpoint.sig",
    )
    # the proofs with python3 alone, isolated from this project
    ok = subprocess.run(
        ["python3", "-I", "verify_proofs.py"], cwd=out, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "inclusion proof" in ok.stdout
    entry = next(out.glob("logbook/entries/*.json"))
    entry.write_bytes(entry.read_bytes().replace(b'"outcome":"OK"', b'"outcome":"KO"'))
    bad = subprocess.run(
        ["python3", "-I", "verify_proofs.py"], cwd=out, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert f"[FAILED] entry {int(entry.stem)}: inclusion proof" in bad.stdout
