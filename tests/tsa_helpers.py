"""Test helpers for RFC 3161: a fixed clock, hand-made TSA key material, an OpenSSL TSA, a tiny
HTTP TSA server and ``openssl ts -verify``.

The OpenSSL TSA follows the recipe of reference/feasibility.md §2(a); the HTTP server is the
wrapper of its Appendix C, generalised to any ``request bytes -> reply bytes`` function.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive_service.tsa import builtin

REPLY_MEDIA_TYPE = "application/timestamp-reply"


@dataclass
class FixedClock:
    """A clock that says what the test says."""

    at: datetime

    def now(self) -> datetime:
        return self.at


# -- hand-made key material in the built-in TSA's directory layout -------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_custom_tsa_dir(
    directory: Path,
    *,
    eku: list[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = True,
    not_before: datetime | None = None,
    validity: timedelta = timedelta(days=365),
    root_validity: timedelta | None = None,
) -> None:
    """Write a root + TSA certificate with chosen flaws where BuiltinTimestampAuthority looks.

    The built-in TSA then signs with whatever certificate it finds, which lets tests make
    tokens from certificates a real TSA should never have (``eku=[]`` leaves EKU out).
    """
    start = not_before or datetime.now(UTC) - timedelta(hours=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("test custom root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + (root_validity or 10 * validity))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("test custom TSA"))
        .issuer_name(root_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    usages = [ExtendedKeyUsageOID.TIME_STAMPING] if eku is None else eku
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=eku_critical)
    tsa = builder.sign(root_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    key_pem = tsa_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / builtin.TSA_KEY_FILE).write_bytes(key_pem)
    (directory / builtin.TSA_CERT_FILE).write_bytes(tsa.public_bytes(pem))
    (directory / builtin.ROOT_CERT_FILE).write_bytes(root.public_bytes(pem))
    (directory / builtin.CHAIN_FILE).write_bytes(tsa.public_bytes(pem) + root.public_bytes(pem))


# -- OpenSSL as a TSA (feasibility.md §2a) -------------------------------------------------

_TSA_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
extendedKeyUsage=critical,timeStamping
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""

_TSA_CONFIG = """[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.crt
{certs_line}
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.1
other_policies = 1.3.6.1.4.1.99999.1.2
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )


def run_ok(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@dataclass(frozen=True)
class OpenSslTsa:
    """An ``openssl ts -reply`` TSA (RSA-2048) in ``directory``."""

    directory: Path
    config: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def tsa_cert(self) -> Path:
        return self.directory / "tsa.crt"

    def chain_pem(self) -> bytes:
        return self.tsa_cert.read_bytes() + self.ca_cert.read_bytes()

    def reply(self, request_der: bytes) -> bytes:
        """Answer one DER TimeStampReq with ``openssl ts -reply``."""
        query = self.directory / f"q-{os.urandom(6).hex()}.tsq"
        out = query.with_suffix(".tsr")
        query.write_bytes(request_der)
        try:
            run_ok(
                "openssl", "ts", "-reply", "-config", self.config, "-queryfile", query, "-out", out
            )
            return out.read_bytes()
        finally:
            query.unlink(missing_ok=True)
            out.unlink(missing_ok=True)


def openssl(directory: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``openssl <command>`` (shell-style quoting) in ``directory``; it must succeed."""
    return run_ok("openssl", *shlex.split(command), cwd=directory)


def make_openssl_tsa(directory: Path, *, embed_ca: bool) -> OpenSslTsa:
    """CA + TSA certificate by the openssl CLI. ``embed_ca`` puts ``certs = ca.crt`` in the
    config, so replies carry two certificates in a non-DER order (the rfc3161-client trap).
    """
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    openssl(
        d,
        "req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt"
        " -subj '/CN=OpenSSL Test Root CA/O=T' -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign",
    )
    # A long subject keeps the TSA certificate's DER larger than the CA's, so "TSA then CA"
    # (OpenSSL's order) is not the DER SET OF order.
    openssl(
        d,
        "req -newkey rsa:2048 -nodes -sha256 -keyout tsa.key -out tsa.csr"
        " -subj '/CN=OpenSSL Test TSA/OU=a deliberately long unit name, to sort after the CA/O=T'",
    )
    (d / "tsa-ext.cnf").write_text(_TSA_EXTENSIONS)
    openssl(
        d,
        "x509 -req -in tsa.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1825 -sha256"
        " -extfile tsa-ext.cnf -out tsa.crt",
    )
    (d / "tsaserial").write_text("01\n")
    certs_line = "certs = $dir/ca.crt" if embed_ca else ""
    config = d / "tsa.cnf"
    config.write_text(_TSA_CONFIG.format(dir=d.resolve(), certs_line=certs_line))
    return OpenSslTsa(directory=d, config=config)


def openssl_verify(
    directory: Path,
    *,
    response: bytes,
    data: bytes | None = None,
    query: bytes | None = None,
    cafile: bytes,
    untrusted: bytes | None = None,
    token_in: bool = False,
    attime: datetime | None = None,
) -> subprocess.CompletedProcess[str]:
    """``openssl ts -verify`` with everything written to files under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tag = os.urandom(4).hex()
    resp_path = directory / f"resp-{tag}.tsr"
    resp_path.write_bytes(response)
    ca_path = directory / f"ca-{tag}.pem"
    ca_path.write_bytes(cafile)
    args: list[str | Path] = ["openssl", "ts", "-verify", "-in", resp_path, "-CAfile", ca_path]
    if token_in:
        args.append("-token_in")
    if data is not None:
        data_path = directory / f"data-{tag}.bin"
        data_path.write_bytes(data)
        args += ["-data", data_path]
    if query is not None:
        query_path = directory / f"query-{tag}.tsq"
        query_path.write_bytes(query)
        args += ["-queryfile", query_path]
    if untrusted is not None:
        untrusted_path = directory / f"untrusted-{tag}.pem"
        untrusted_path.write_bytes(untrusted)
        args += ["-untrusted", untrusted_path]
    if attime is not None:
        args += ["-attime", str(int(attime.timestamp()))]
    return run(*args)


# -- a tiny HTTP TSA (feasibility.md Appendix C) --------------------------------------------


@dataclass
class ServedTsa:
    url: str
    requests: list[tuple[str, bytes]]
    """(Content-Type, body) of every request received."""


@contextmanager
def serve_tsa(
    answer: Callable[[bytes], bytes],
    *,
    status: int = 200,
    content_type: str = REPLY_MEDIA_TYPE,
) -> Iterator[ServedTsa]:
    """Serve ``answer(request) -> reply`` on 127.0.0.1, on a free port."""
    seen: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers.get("Content-Type", ""), body))
            out = answer(body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ServedTsa(f"http://127.0.0.1:{server.server_address[1]}/tsa", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was bound, then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


# -- racing first starts across processes ----------------------------------------------------


def chain_after_barrier(directory: str, barrier: object, results: object) -> None:
    """Child process body: wait for the others, then start a built-in TSA on ``directory``."""
    barrier.wait()  # type: ignore[attr-defined]
    tsa = builtin.BuiltinTimestampAuthority(Path(directory))
    results.put(tsa.certificate_chain_pem())  # type: ignore[attr-defined]
