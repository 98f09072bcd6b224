"""The built-in RFC 3161 time-stamping authority: the one-machine default, never a qualified TSA.

It implements the ``TimestampAuthority`` port so that a fresh install can timestamp manifests
and logbook checkpoints without any external service. Its tokens are ordinary RFC 3161 tokens
(they verify with ``openssl ts -verify`` and with :func:`archive_service.core.timestamp.
verify_timestamp`), but they prove only what the operator's own clock and key prove: every
certificate says "non-qualified" in its subject, and production refuses this adapter unless
explicitly allowed (DESIGN §5).

Key material. On first use, under the directory given to the constructor
(``settings.tsa_dir``), it creates a root CA and a TSA certificate issued by it:

* ``root-ca.key.pem``, ``tsa.key.pem``: PKCS#8 PEM private keys, mode 0600, not encrypted
  (protect the directory; a real TSA keeps its key in an HSM);
* ``root-ca.pem``, ``tsa.pem``: the certificates;
* ``chain.pem``: TSA certificate then root, written last: its presence means the set is
  complete. It is usable directly as ``openssl ts -verify -CAfile chain.pem`` (OpenSSL only
  accepts the self-signed root as an anchor; the TSA certificate in the file just helps).

Keys are ECDSA P-256: 128-bit security like RSA-3072 (ANSSI RGS and ETSI TS 119 312 accept
both), but generated in milliseconds instead of seconds, with tokens about 1 KB smaller; OpenSSL,
rfc3161-client and pyHanko verify them. Generation happens under an exclusive ``flock`` on
``.init.lock`` and every file is written to a temporary name then renamed, so two processes
starting together end up with one CA, and a crash mid-way leaves no ``chain.pem`` and is
redone on the next start. Existing keys are never replaced.

Tokens (RFC 3161 §2.4.2): TSTInfo v1 with the policy OID :data:`POLICY_OID`, a serial number
that is unique (64 random bits) and increasing (microseconds of the clock in the high bits),
genTime in whole UTC seconds with an accuracy of one second, the nonce echoed and the TSA name;
signed as CMS SignedData (RFC 5652) with contentType, messageDigest and ESS
signing-certificate-v2 (RFC 5816) signed attributes. When the request asks for it (certReq),
the token embeds only the TSA certificate: a second certificate would have to be DER-sorted
for rfc3161-client's strict parser, and the root must come from the verifier's trust anchors
anyway.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive_service.core.model import require_utc
from archive_service.core.timestamp import build_request, check_response_matches
from archive_service.errors import ConfigurationError
from archive_service.ports import Clock

__all__ = ["POLICY_OID", "BuiltinTimestampAuthority", "SystemClock"]

log = structlog.get_logger(__name__)

#: TSA policy of the built-in TSA (RFC 3161 §2.1 item 4). An OID under the 2.25 UUID arc
#: (ITU-T X.667), which anyone may allocate without registration; it identifies "the
#: archive-service built-in, non-qualified TSA policy" and nothing more.
POLICY_OID = "2.25.145985954561306902041404869420828953241"

ROOT_CN = "archive-service built-in root CA (non-qualified)"
TSA_CN = "archive-service built-in TSA (non-qualified)"
ORGANIZATION = "archive-service development (not an eIDAS qualified TSA)"

ROOT_KEY_FILE = "root-ca.key.pem"
ROOT_CERT_FILE = "root-ca.pem"
TSA_KEY_FILE = "tsa.key.pem"
TSA_CERT_FILE = "tsa.pem"
CHAIN_FILE = "chain.pem"
LOCK_FILE = ".init.lock"

ROOT_VALIDITY = timedelta(days=30 * 365)
TSA_VALIDITY = timedelta(days=10 * 365)
#: Certificates start a little before "now" so a token made at once is inside their validity
#: even if another process's clock is slightly behind.
BACKDATE = timedelta(hours=1)
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SystemClock:
    """The machine's clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2 TimeStampResp, with the token optional (absent when rejected)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejection(Exception):
    """A request the TSA refuses, with its PKIFailureInfo bit (RFC 3161 §2.4.2)."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


@dataclass(frozen=True, slots=True)
class _Material:
    tsa_key: ec.EllipticCurvePrivateKey
    tsa_cert: x509.Certificate
    tsa_cert_asn1: Any
    tsa_cert_der: bytes
    chain_pem: bytes
    signing_certificate_v2: Any


class BuiltinTimestampAuthority:
    """RFC 3161 TSA signing with keys kept under ``directory`` (created on first use).

    The constructor does no I/O; the keys are loaded (or made) on the first call. ``clock``
    gives genTime and the certificates' validity, so tests can fix it.
    """

    def __init__(
        self, directory: Path, *, clock: Clock | None = None, policy: str = POLICY_OID
    ) -> None:
        self.directory = Path(directory)
        self.policy = policy
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._material: _Material | None = None
        self._last_serial = 0

    # -- TimestampAuthority port ---------------------------------------------------------

    def timestamp(self, data_digest: bytes, *, hash_algorithm: str = "sha256") -> bytes:
        """A granted DER ``TimeStampResp`` over ``data_digest``, checked against its request."""
        request = build_request(data_digest, hash_algorithm=hash_algorithm)
        response = self.respond(request)
        check_response_matches(response, request)
        return response

    def certificate_chain_pem(self) -> bytes:
        """TSA certificate PEM, then the root CA PEM (the content of ``chain.pem``)."""
        return self._loaded().chain_pem

    # -- RFC 3161 server side --------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """Answer any DER ``TimeStampReq`` (e.g. from an HTTP front end) with a TimeStampResp.

        A request we cannot honour gets a ``rejection`` with its PKIFailureInfo, as RFC 3161
        §2.4.2 says, rather than an exception.
        """
        material = self._loaded()
        try:
            request = self._parse(request_der)
        except _Rejection as rejection:
            return _rejection_response(rejection)
        now = self._clock.now()
        require_utc(now, "TSA clock")
        cert = material.tsa_cert
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            msg = (
                f"built-in TSA certificate is not valid at {now.isoformat()} (valid "
                f"{cert.not_valid_before_utc.isoformat()} to "
                f"{cert.not_valid_after_utc.isoformat()}); move {self.directory} "
                "aside to create new keys, or configure an external TSA"
            )
            raise ConfigurationError(msg)
        return self._sign(material, request, now)

    # -- internals ---------------------------------------------------------------------------

    def _parse(self, request_der: bytes) -> Any:
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            _ = request.native
        except (ValueError, TypeError) as exc:
            raise _Rejection("bad_data_format", f"not a DER TimeStampReq: {exc}") from exc
        if request["version"].native != "v1":
            raise _Rejection("bad_request", f"version {request['version'].native}, expected v1")
        algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
        size = _DIGEST_SIZES.get(algorithm)
        if size is None:
            raise _Rejection("bad_alg", f"hash algorithm {algorithm} is not accepted")
        if len(request["message_imprint"]["hashed_message"].native) != size:
            raise _Rejection("bad_data_format", f"a {algorithm} imprint has {size} bytes")
        policy = request["req_policy"]
        if policy.native is not None and policy.dotted != self.policy:
            raise _Rejection("unaccepted_policy", f"policy {policy.dotted} is not {self.policy}")
        if request["extensions"].native:
            raise _Rejection("unaccepted_extensions", "no request extension is supported")
        return request

    def _next_serial(self, now: datetime) -> int:
        # Unique across processes (64 random bits), increasing with the clock (high bits),
        # strictly increasing within this process even if the clock stands still.
        micros = max(0, (now - _EPOCH) // timedelta(microseconds=1))
        candidate = (micros << 64) | secrets.randbits(64)
        with self._lock:
            self._last_serial = max(candidate, self._last_serial + 1)
            return self._last_serial

    def _sign(self, material: _Material, request: Any, now: datetime) -> bytes:
        fields: dict[str, Any] = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": request["message_imprint"],
            "serial_number": self._next_serial(now),
            "gen_time": now.astimezone(UTC).replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(
                name="directory_name", value=material.tsa_cert_asn1.subject
            ),
        }
        if request["nonce"].native is not None:
            fields["nonce"] = request["nonce"].native
        tst_info_der = tsp.TSTInfo(fields).dump()
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_info_der).digest()]},
                {"type": "signing_certificate_v2", "values": [material.signing_certificate_v2]},
            ]
        )
        signature = material.tsa_key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        cert = material.tsa_cert_asn1
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": cert.issuer, "serial_number": cert.serial_number},
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_info_der),
            },
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            # A freshly loaded copy: asn1crypto dumps an untouched tree without re-walking it.
            signed_data["certificates"] = [asn1_x509.Certificate.load(material.tsa_cert_der)]
        token = cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )
        response = _TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return bytes(response.dump())

    def _loaded(self) -> _Material:
        with self._lock:
            if self._material is None:
                self._material = self._load_or_create()
            return self._material

    def _load_or_create(self) -> _Material:
        chain_path = self.directory / CHAIN_FILE
        if not chain_path.exists():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with _exclusive_lock(self.directory / LOCK_FILE):
                if not chain_path.exists():  # another process may have won the race
                    self._create()
        return self._load()

    def _create(self) -> None:
        now = self._clock.now()
        require_utc(now, "TSA clock")
        root_key = ec.generate_private_key(ec.SECP256R1())
        tsa_key = ec.generate_private_key(ec.SECP256R1())
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
        instance = root_ski.digest[:4].hex()
        root_name = _name(ROOT_CN, instance)
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA256())
        )
        tsa = (
            x509.CertificateBuilder()
            .subject_name(_name(TSA_CN, instance))
            .issuer_name(root_name)
            .public_key(tsa_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + TSA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(digital_signature=True, content_commitment=True), critical=True
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        root_pem = root.public_bytes(serialization.Encoding.PEM)
        tsa_pem = tsa.public_bytes(serialization.Encoding.PEM)
        _write_atomic(self.directory / ROOT_KEY_FILE, _private_pem(root_key), 0o600)
        _write_atomic(self.directory / TSA_KEY_FILE, _private_pem(tsa_key), 0o600)
        _write_atomic(self.directory / ROOT_CERT_FILE, root_pem, 0o644)
        _write_atomic(self.directory / TSA_CERT_FILE, tsa_pem, 0o644)
        _write_atomic(self.directory / CHAIN_FILE, tsa_pem + root_pem, 0o644)  # commit point
        _fsync_directory(self.directory)
        log.info(
            "tsa.builtin.keys_created",
            directory=str(self.directory),
            root_sha256=root.fingerprint(hashes.SHA256()).hex(),
            tsa_sha256=tsa.fingerprint(hashes.SHA256()).hex(),
        )

    def _load(self) -> _Material:
        try:
            key_pem = (self.directory / TSA_KEY_FILE).read_bytes()
            cert_pem = (self.directory / TSA_CERT_FILE).read_bytes()
            root_pem = (self.directory / ROOT_CERT_FILE).read_bytes()
        except FileNotFoundError as exc:
            msg = f"{self.directory} has {CHAIN_FILE} but lacks {exc.filename}: restore it"
            raise ConfigurationError(msg) from exc
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            msg = f"{TSA_KEY_FILE} does not match {TSA_CERT_FILE} in {self.directory}"
            raise ConfigurationError(msg)
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        cert_asn1 = asn1_x509.Certificate.load(cert_der)
        ess = tsp.SigningCertificateV2(
            {
                "certs": [
                    {
                        # hash_algorithm left out: DER omits the sha256 default (RFC 5035 §5.4)
                        "cert_hash": hashlib.sha256(cert_der).digest(),
                        "issuer_serial": {
                            "issuer": [
                                asn1_x509.GeneralName(name="directory_name", value=cert_asn1.issuer)
                            ],
                            "serial_number": cert_asn1.serial_number,
                        },
                    }
                ]
            }
        )
        return _Material(
            tsa_key=key,
            tsa_cert=cert,
            tsa_cert_asn1=cert_asn1,
            tsa_cert_der=cert_der,
            chain_pem=cert_pem + root_pem,
            signing_certificate_v2=ess,
        )


def _rejection_response(rejection: _Rejection) -> bytes:
    status = {
        "status": "rejection",
        "status_string": [rejection.text],
        "fail_info": {rejection.fail_info},
    }
    return bytes(_TimeStampResp({"status": status}).dump())


def _name(common_name: str, instance: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"instance {instance}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write to a fresh temporary file with ``mode`` from the start, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have removed bits we asked for
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock``: serialises key creation across threads and processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
