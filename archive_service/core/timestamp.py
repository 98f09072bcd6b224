"""RFC 3161 time-stamp tokens (jetons d'horodatage): build requests, match replies, verify tokens.

Pure: bytes in, values out; no files, no network. The TSA clients (``archive_service.tsa``)
send what :func:`build_request` makes and hand the reply to :func:`check_response_matches`;
the services call :func:`verify_timestamp` whenever a stored token must prove something.

Why two parsers. ``rfc3161-client`` (Rust, strict DER) is the project's reference verifier,
but it refuses tokens whose ``SignedData.certificates`` SET is not sorted in DER order
(``InvalidSetOrdering``), which ``openssl ts -reply`` with ``certs =`` and some real TSAs
produce; it also cannot build a request from a precomputed digest. So the authoritative
checklist in :func:`verify_timestamp` runs on a lenient BER parse (asn1crypto) with signatures
and the chain checked by ``cryptography``; when rfc3161-client can parse the token, it verifies
it too (OpenSSL ``PKCS7_verify`` at genTime) as an independent second opinion, and both must
agree. When its parser refuses the token, our checklist stands alone: the token is not
rejected for an encoding detail that RFC 3161 verifiers such as ``openssl ts -verify`` accept.

References: RFC 3161 §2.4.1 (TimeStampReq), §2.4.2 (TimeStampResp, TSTInfo), §2.3 (TSA
certificate: extendedKeyUsage timeStamping, critical), RFC 5816 (ESSCertIDv2), RFC 5652 §5.3-5.4
(SignerInfo, signed attributes, message digest), RFC 5280 §6 (path validation).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import rfc3161_client
from asn1crypto import cms, core, parser, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from archive_service.core.model import TimestampInfo
from archive_service.errors import Issue, TimestampInvalid

__all__ = [
    "HASH_ALGORITHMS",
    "build_request",
    "check_response_matches",
    "token_info",
    "verify_timestamp",
]

#: Digest algorithms accepted for message imprints, ESS certificate hashes and signatures.
#: SHA-1 and MD5 are refused on purpose (fail closed).
HASH_ALGORITHMS: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_DIGEST_SIZES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
_GRANTED: Final = frozenset({"granted", "granted_with_mods"})
_TIME_STAMPING: Final = ExtendedKeyUsageOID.TIME_STAMPING


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2 TimeStampResp; asn1crypto's own class wrongly makes the token mandatory."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _fail(code: str, what: str, *, expected: str, found: str) -> NoReturn:
    message = f"{what}: expected {expected}, found {found}"
    raise TimestampInvalid(message, issues=(Issue(f"timestamp-{code}", message),))


def _check(ok: bool, code: str, what: str, *, expected: str, found: str) -> None:
    if not ok:
        _fail(code, what, expected=expected, found=found)


@contextmanager
def _malformed_is_invalid(what: str, expected: str) -> Iterator[None]:
    """asn1crypto parses lazily: a malformed field may surface at any access; fail closed."""
    try:
        yield
    except TimestampInvalid:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        _fail("parse", what, expected=expected, found=f"{exc}")


# --------------------------------------------------------------------------------------------
# Requests (RFC 3161 §2.4.1)
# --------------------------------------------------------------------------------------------


def build_request(
    data_digest: bytes,
    *,
    hash_algorithm: str = "sha256",
    nonce: bool = True,
    cert_req: bool = True,
) -> bytes:
    """A DER ``TimeStampReq`` over an already computed digest (RFC 3161 §2.4.1).

    ``certReq`` is true by default so that the token carries the TSA certificate that its
    ESS signing-certificate attribute names; the nonce is a random 64-bit integer.
    Raises ``ValueError`` for an unknown algorithm or a digest of the wrong length.
    """
    expected_size = _DIGEST_SIZES.get(hash_algorithm)
    if expected_size is None:
        msg = f"unsupported hash algorithm {hash_algorithm!r}; use one of {sorted(_DIGEST_SIZES)}"
        raise ValueError(msg)
    if len(data_digest) != expected_size:
        msg = f"a {hash_algorithm} digest has {expected_size} bytes, got {len(data_digest)}"
        raise ValueError(msg)
    fields: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": hash_algorithm},
            "hashed_message": data_digest,
        },
        "cert_req": cert_req,
    }
    if nonce:
        fields["nonce"] = secrets.randbits(64)
    return bytes(tsp.TimeStampReq(fields).dump())


@dataclass(frozen=True, slots=True)
class _Request:
    hash_algorithm: str
    hashed_message: bytes
    nonce: int | None
    policy: str | None
    cert_req: bool


def _parse_request(request_der: bytes) -> _Request:
    with _malformed_is_invalid("TimeStampReq", "a DER TimeStampReq"):
        req = tsp.TimeStampReq.load(request_der, strict=True)
        imprint = req["message_imprint"]
        return _Request(
            hash_algorithm=str(imprint["hash_algorithm"]["algorithm"].native),
            hashed_message=bytes(imprint["hashed_message"].native),
            nonce=req["nonce"].native,
            policy=req["req_policy"].dotted if req["req_policy"].native is not None else None,
            cert_req=bool(req["cert_req"].native),
        )


# --------------------------------------------------------------------------------------------
# Responses and tokens (RFC 3161 §2.4.2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One reply or bare token, parsed leniently (BER); asn1crypto parses the rest lazily."""

    is_bare_token: bool
    token_der: bytes
    """The ContentInfo bytes when the input was a bare token (else empty)."""
    signed_data: Any
    tst_info: Any
    tst_info_der: bytes
    info: TimestampInfo
    nonce: int | None


def _status_detail(status_info: Any) -> str:
    parts: list[str] = []
    texts = status_info["status_string"].native
    if texts:
        parts.append("; ".join(str(t) for t in texts))
    fail_info = status_info["fail_info"].native
    if fail_info:
        parts.append("failInfo " + ", ".join(sorted(str(f) for f in fail_info)))
    return " (" + ", ".join(parts) + ")" if parts else ""


def _is_bare_token(der: bytes) -> bool:
    """A ContentInfo starts with an OID; a TimeStampResp starts with a PKIStatusInfo SEQUENCE."""
    _class, _method, _tag, _header, contents, _trailer = parser.parse(der, strict=True)
    return bool(contents[:1] == b"\x06")


def _decode(der: bytes) -> _Decoded:
    with _malformed_is_invalid("time-stamp reply", "a TimeStampResp or a token"):
        return _decode_unchecked(der)


def _decode_unchecked(der: bytes) -> _Decoded:
    if _is_bare_token(der):
        content_info = cms.ContentInfo.load(der, strict=True)
        bare = True
    else:
        resp = _TimeStampResp.load(der, strict=True)
        status = str(resp["status"]["status"].native)
        if status not in _GRANTED:
            detail = _status_detail(resp["status"])
            _fail("status", "PKIStatus", expected="granted", found=f"{status}{detail}")
        content_info = resp["time_stamp_token"]
        if isinstance(content_info, core.Void):
            _fail("token", "timeStampToken", expected="present", found="absent")
        bare = False
    content_type = content_info["content_type"].native
    _check(
        content_type == "signed_data",
        "content-type",
        "token content type",
        expected="signed_data (RFC 3161 §2.4.2)",
        found=str(content_type),
    )
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    econtent_type = encap["content_type"].native
    _check(
        econtent_type == "tst_info",
        "econtent-type",
        "encapsulated content type",
        expected="tst_info (id-ct-TSTInfo)",
        found=str(econtent_type),
    )
    tst_info_der = bytes(encap["content"])  # the eContent octets, as signed
    tst_info = tsp.TSTInfo.load(tst_info_der, strict=True)
    _ = tst_info.native  # parse every TSTInfo field now, so later access cannot fail
    imprint = tst_info["message_imprint"]
    gen_time = tst_info["gen_time"].native
    if gen_time.tzinfo is None:  # pragma: no cover - asn1crypto always returns aware values
        gen_time = gen_time.replace(tzinfo=UTC)
    tsa = tst_info["tsa"]
    info = TimestampInfo(
        gen_time=gen_time.astimezone(UTC),
        serial_number=int(tst_info["serial_number"].native),
        policy=str(tst_info["policy"].dotted),
        hash_algorithm=str(imprint["hash_algorithm"]["algorithm"].native),
        message_imprint=bytes(imprint["hashed_message"].native),
        tsa_name=_general_name_text(tsa) if tsa.native is not None else None,
    )
    return _Decoded(
        is_bare_token=bare,
        token_der=der if bare else b"",
        signed_data=signed_data,
        tst_info=tst_info,
        tst_info_der=tst_info_der,
        info=info,
        nonce=tst_info["nonce"].native,
    )


def _name_text(name: Any) -> str:
    """RFC 4514 text of an asn1crypto ``Name``, via cryptography's formatter."""
    try:
        rdns = [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(x509.ObjectIdentifier(a["type"].dotted), a["value"].native)
                    for a in rdn
                ]
            )
            for rdn in name.chosen
        ]
        return x509.Name(rdns).rfc4514_string()
    except (ValueError, TypeError):
        return str(name.human_friendly)


def _general_name_text(general_name: Any) -> str:
    if general_name.name == "directory_name":
        return _name_text(general_name.chosen)
    return f"{general_name.name}:{general_name.native}"


def token_info(response_der: bytes) -> TimestampInfo:
    """What a reply or bare token says (TSTInfo, RFC 3161 §2.4.2), for display.

    Nothing is verified: neither the signature, nor the certificate, nor the imprint.
    Raises ``TimestampInvalid`` if it cannot be parsed or the reply carries no token.
    """
    return _decode(response_der).info


def check_response_matches(response_der: bytes, request_der: bytes) -> None:
    """Check a TSA reply answers our request (RFC 3161 §2.4.2); raise ``TimestampInvalid``.

    This is the client's check right after the exchange; it does not verify the signature
    or the certificate (that is :func:`verify_timestamp`, against the trust anchors).
    """
    with _malformed_is_invalid("time-stamp reply", "a well-formed TimeStampResp"):
        _check_response_matches(response_der, request_der)


def _check_response_matches(response_der: bytes, request_der: bytes) -> None:
    # 1. The request is ours and parses.
    request = _parse_request(request_der)
    # 2. The reply parses, its status is granted (or grantedWithMods) and it carries a token.
    decoded = _decode(response_der)
    info = decoded.info
    # 3. Same imprint algorithm and same digest as requested.
    _check(
        info.hash_algorithm == request.hash_algorithm,
        "imprint-algorithm",
        "message imprint algorithm",
        expected=request.hash_algorithm,
        found=info.hash_algorithm,
    )
    _check(
        info.message_imprint == request.hashed_message,
        "imprint",
        "message imprint",
        expected=request.hashed_message.hex(),
        found=info.message_imprint.hex(),
    )
    # 4. The nonce is echoed (replay protection, §2.4.2 "MUST have the same value").
    if request.nonce is not None:
        _check(
            decoded.nonce == request.nonce,
            "nonce",
            "nonce",
            expected=str(request.nonce),
            found=str(decoded.nonce),
        )
    # 5. A requested policy is the one applied.
    if request.policy is not None:
        _check(
            info.policy == request.policy,
            "policy",
            "TSA policy",
            expected=request.policy,
            found=info.policy,
        )
    # 6. certReq true: the TSA certificate MUST be in the token's certificates (§2.4.1).
    if request.cert_req:
        count = len(_embedded_certificates(decoded.signed_data))
        _check(
            count > 0,
            "cert-req",
            "certificates in the token (certReq was true)",
            expected="at least 1",
            found=str(count),
        )


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def _embedded_certificates(signed_data: Any) -> list[bytes]:
    """DER of the token's certificates (other CertificateChoices are ignored).

    Taken as bytes before any field is read: asn1crypto re-checks a parsed tree on every
    ``dump()``, which is slow, and these bytes are what the ESS hash covers.
    """
    certificates = signed_data["certificates"]
    if isinstance(certificates, core.Void):
        return []
    return [bytes(c.chosen.dump()) for c in certificates if c.name == "certificate"]


def _load_chain(chain_pem: bytes) -> list[x509.Certificate]:
    try:
        return list(x509.load_pem_x509_certificates(chain_pem))
    except ValueError as exc:
        _fail("trust-anchors", "chain_pem", expected="PEM certificates", found=f"{exc}")


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signed_attributes(signed_attrs_der: bytes) -> dict[str, list[Any]]:
    attrs: dict[str, list[Any]] = {}
    for attr in cms.CMSAttributes.load(signed_attrs_der, strict=True):
        attrs.setdefault(str(attr["type"].native), []).extend(attr["values"])
    return attrs


def _single(attrs: dict[str, list[Any]], name: str) -> Any:
    values = attrs.get(name, [])
    _check(
        len(values) == 1,
        f"attribute-{name.replace('_', '-')}",
        f"signed attribute {name}",
        expected="exactly one value",
        found=f"{len(values)} values",
    )
    return values[0]


def _require_hash(name: str, *, what: str) -> hashes.HashAlgorithm:
    factory = HASH_ALGORITHMS.get(name)
    if factory is None:
        _fail("algorithm", what, expected=" or ".join(sorted(HASH_ALGORITHMS)), found=name)
    return factory()


def _hash(name: str, data: bytes, *, what: str) -> bytes:
    _require_hash(name, what=what)
    return hashlib.new(name, data).digest()


def _find_signer(sid: Any, candidates: list[bytes]) -> bytes:
    """The DER of the certificate the SignerInfo ``sid`` names (RFC 5652 §5.3)."""
    certs = [(der, asn1_x509.Certificate.load(der)) for der in candidates]
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for der, cert in certs:
            if cert.serial_number == serial and cert.issuer == issuer:
                return der
        wanted = f"issuer {_name_text(issuer)}, serial {serial:x}"
    else:
        key_id = sid.chosen.native
        for der, cert in certs:
            if cert.key_identifier == key_id:
                return der
        wanted = f"subject key identifier {key_id.hex()}"
    _fail(
        "signer-certificate",
        "TSA (signer) certificate",
        expected=f"a certificate in the token or chain_pem with {wanted}",
        found=f"none among {len(candidates)} certificates",
    )


def _check_ess(attrs: dict[str, list[Any]], signer_der: bytes, signer: Any) -> None:
    """ESS signing-certificate(-v2) binds the signature to one certificate (RFC 5816 §2.2.1)."""
    ess_ids: list[tuple[str, Any]] = []
    if "signing_certificate_v2" in attrs:
        first = _single(attrs, "signing_certificate_v2")["certs"][0]
        ess_ids.append((str(first["hash_algorithm"]["algorithm"].native), first))
    if "signing_certificate" in attrs:
        first = _single(attrs, "signing_certificate")["certs"][0]
        ess_ids.append(("sha1", first))
    _check(
        bool(ess_ids),
        "ess",
        "ESS signing-certificate attribute",
        expected="signingCertificate or signingCertificateV2 (RFC 3161 §2.4.1, RFC 5816)",
        found="neither",
    )
    for algorithm, ess_id in ess_ids:
        if algorithm == "sha1":  # ESSCertID (v1) is SHA-1 by definition; it only names the cert.
            cert_hash = hashlib.sha1(signer_der, usedforsecurity=False).digest()
        else:
            cert_hash = _hash(algorithm, signer_der, what="ESSCertIDv2 hash algorithm")
        found_hash = bytes(ess_id["cert_hash"].native)
        _check(
            found_hash == cert_hash,
            "ess-hash",
            f"ESS certificate hash ({algorithm}) of the signer certificate",
            expected=cert_hash.hex(),
            found=found_hash.hex(),
        )
        issuer_serial = ess_id["issuer_serial"]
        if issuer_serial.native is not None:
            serial = issuer_serial["serial_number"].native
            names = [g.chosen for g in issuer_serial["issuer"] if g.name == "directory_name"]
            _check(
                serial == signer.serial_number and signer.issuer in names,
                "ess-issuer-serial",
                "ESS issuerSerial",
                expected=f"{_name_text(signer.issuer)} / {signer.serial_number:x}",
                found=f"{[_name_text(n) for n in names]} / {serial:x}",
            )


def _verify_signature(
    public_key: Any, signer_info: Any, data: bytes, digest_algorithm: str
) -> None:
    """The SignerInfo signature over the DER SET OF signed attributes (RFC 5652 §5.4)."""
    sig_alg = signer_info["signature_algorithm"]
    kind = sig_alg.signature_algo
    signature = bytes(signer_info["signature"].native)
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            try:
                hash_name = str(sig_alg.hash_algo)
            except ValueError:  # rsaEncryption: the SignerInfo digestAlgorithm applies
                hash_name = digest_algorithm
            algorithm = _require_hash(hash_name, what="signature hash algorithm")
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif kind == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
            params = sig_alg["parameters"]
            hash_name = str(params["hash_algorithm"]["algorithm"].native)
            mgf_hash = str(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
            algorithm = _require_hash(hash_name, what="RSASSA-PSS hash algorithm")
            mgf = padding.MGF1(_require_hash(mgf_hash, what="RSASSA-PSS MGF1 hash algorithm"))
            pss = padding.PSS(mgf=mgf, salt_length=int(params["salt_length"].native))
            public_key.verify(signature, data, pss, algorithm)
        elif kind == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            algorithm = _require_hash(str(sig_alg.hash_algo), what="ECDSA hash algorithm")
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif kind in ("ed25519", "ed448") and isinstance(
            public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
        ):
            public_key.verify(signature, data)
        else:
            _fail(
                "signature-algorithm",
                "signature algorithm",
                expected="RSA PKCS#1 v1.5, RSASSA-PSS, ECDSA or EdDSA matching the TSA key",
                found=f"{sig_alg['algorithm'].native} with a {type(public_key).__name__}",
            )
    except InvalidSignature:
        _fail(
            "signature",
            "CMS signature over the signed attributes",
            expected="valid for the TSA certificate's key",
            found="invalid",
        )


def _check_tsa_certificate_usage(cert: x509.Certificate) -> None:
    """RFC 3161 §2.3: only id-kp-timeStamping, in a critical extendedKeyUsage."""
    subject = cert.subject.rfc4514_string()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        _fail(
            "eku",
            f"extendedKeyUsage of {subject}",
            expected="critical, timeStamping only",
            found="absent",
        )
    usages = list(eku.value)
    _check(
        usages == [_TIME_STAMPING],
        "eku",
        f"extendedKeyUsage of {subject}",
        expected="timeStamping only",
        found=", ".join(u.dotted_string for u in usages) or "empty",
    )
    _check(
        eku.critical,
        "eku-critical",
        f"extendedKeyUsage of {subject}",
        expected="critical",
        found="not critical",
    )
    # Same rule as OpenSSL's timestamp purpose: keyUsage, when present, is for signing only.
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    signing = ku.digital_signature or ku.content_commitment
    others = ku.key_encipherment or ku.data_encipherment or ku.key_agreement
    others = others or ku.key_cert_sign or ku.crl_sign
    _check(
        signing and not others,
        "key-usage",
        f"keyUsage of {subject}",
        expected="digitalSignature and/or nonRepudiation only",
        found=str(ku),
    )


def _ca_policy() -> ExtensionPolicy:
    def require_ca(_policy: Policy, cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
        if not bc.ca:
            msg = f"{cert.subject.rfc4514_string()} is not a CA (basicConstraints cA false)"
            raise ValueError(msg)

    def require_cert_sign(
        _policy: Policy, cert: x509.Certificate, ku: x509.KeyUsage | None
    ) -> None:
        if ku is not None and not ku.key_cert_sign:
            msg = f"{cert.subject.rfc4514_string()} keyUsage lacks keyCertSign"
            raise ValueError(msg)

    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, require_ca)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, require_cert_sign)
    )


def _ee_policy() -> ExtensionPolicy:
    def require_time_stamping(
        _policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage
    ) -> None:
        if _TIME_STAMPING not in eku:
            msg = f"{cert.subject.rfc4514_string()} extendedKeyUsage lacks timeStamping"
            raise ValueError(msg)

    return ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, Criticality.CRITICAL, require_time_stamping
    )


def _verify_chain(
    leaf: x509.Certificate,
    roots: list[x509.Certificate],
    intermediates: list[x509.Certificate],
    at: datetime,
) -> None:
    """RFC 5280 path validation from the TSA certificate to a root, at genTime (not now)."""
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(at)
        .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy())
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        _fail(
            "chain",
            f"certificate path of {leaf.subject.rfc4514_string()} at genTime {at.isoformat()}",
            expected="a valid path to a root in chain_pem: "
            + "; ".join(r.subject.rfc4514_string() for r in roots),
            found=str(exc),
        )


def _check_tsa_name(tst_info: Any, signer: Any) -> None:
    """TSTInfo.tsa, when present, names the signer (OpenSSL's TS_VFY_TSA_NAME check)."""
    tsa = tst_info["tsa"]
    if tsa.native is None:
        return
    name = tsa  # the explicit [0] field is the GeneralName CHOICE itself
    alt_names = signer.subject_alt_name_value
    alternatives = list(alt_names) if alt_names is not None else []
    if name.name == "directory_name" and name.chosen == signer.subject:
        return
    if any(alt.name == name.name and alt.dump() == name.dump() for alt in alternatives):
        return
    _fail(
        "tsa-name",
        "TSTInfo tsa name",
        expected=f"the signer certificate's name {_name_text(signer.subject)}",
        found=_general_name_text(name),
    )


def _der_sequence(body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return b"\x30" + bytes([size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + body


def _cross_check_with_rfc3161_client(
    decoded: _Decoded,
    response_der: bytes,
    imprint: bytes,
    roots: list[x509.Certificate],
    intermediates: list[x509.Certificate],
    signer: x509.Certificate,
    embedded: list[bytes],
) -> bool:
    """Second opinion from rfc3161-client (OpenSSL PKCS7_verify at genTime).

    Returns False, without judging, for tokens it cannot handle: its strict DER parser
    refuses them (the ``InvalidSetOrdering`` trap), or they embed certificates but not the
    signer's (it looks for the signer only there). Raises ``TimestampInvalid`` if it disagrees.
    """
    signer_der = signer.public_bytes(serialization.Encoding.DER)
    if embedded and signer_der not in embedded:
        return False
    if decoded.is_bare_token:
        granted = bytes.fromhex("3003020100")  # PKIStatusInfo { status granted }
        response_der = _der_sequence(granted + decoded.token_der)
    try:
        response = rfc3161_client.decode_timestamp_response(response_der)
        _ = response.tst_info.gen_time, response.signed_data.certificates
    except ValueError:
        return False
    except BaseException as exc:
        # Its lazy getters unwrap() in Rust: pyo3's PanicException derives from BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        return False
    builder = rfc3161_client.VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    for cert in intermediates:
        if _is_ca(cert):
            builder = builder.add_intermediate_certificate(cert)
    if not embedded:
        builder = builder.tsa_certificate(signer)
    try:
        builder.build().verify(response, imprint)
    except rfc3161_client.VerificationError as exc:
        _fail(
            "cross-check",
            "rfc3161-client verification",
            expected="the same verdict as our checklist (valid)",
            found=f"{exc}",
        )
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_timestamp(
    response_der: bytes,
    *,
    message: bytes | None = None,
    digest: bytes | None = None,
    digest_algorithm: str = "sha256",
    chain_pem: bytes,
) -> TimestampInfo:
    """Verify a ``TimeStampResp`` or bare token over ``message`` (or its ``digest``).

    ``digest`` is a precomputed digest of the message with ``digest_algorithm`` (sha256 by
    default); the token's imprint must use that same algorithm.

    ``chain_pem`` holds the trust anchors (self-signed roots) and may hold intermediates and
    the TSA certificate itself. Certificates are checked at the token's genTime, not now: a
    TSA certificate that expired since is still good evidence. Fails closed: every failed
    check raises ``TimestampInvalid`` naming what it expected and what it found.
    """
    if (message is None) == (digest is None):
        msg = "give exactly one of message or digest"
        raise ValueError(msg)
    with _malformed_is_invalid("time-stamp token", "a well-formed token"):
        return _verify(response_der, message, digest, digest_algorithm, chain_pem)


def _verify(
    response_der: bytes,
    message: bytes | None,
    digest: bytes | None,
    digest_algorithm: str,
    chain_pem: bytes,
) -> TimestampInfo:
    # 1. Parse (TimeStampResp or bare ContentInfo); a reply must be granted and carry a token;
    #    the token is CMS SignedData encapsulating a TSTInfo v1 (RFC 3161 §2.4.2).
    decoded = _decode(response_der)
    info = decoded.info
    version = decoded.tst_info["version"].native
    _check(version == "v1", "version", "TSTInfo version", expected="v1", found=str(version))

    # 2. Message imprint: the token covers our bytes.
    if message is not None:
        expected_imprint = _hash(info.hash_algorithm, message, what="message imprint algorithm")
    else:
        assert digest is not None
        _check(
            info.hash_algorithm == digest_algorithm,
            "imprint-algorithm",
            f"message imprint algorithm (a {digest_algorithm} digest was given)",
            expected=digest_algorithm,
            found=info.hash_algorithm,
        )
        expected_imprint = digest
    _check(
        info.message_imprint == expected_imprint,
        "imprint",
        "message imprint",
        expected=expected_imprint.hex(),
        found=info.message_imprint.hex(),
    )

    # 3. Exactly one signer (RFC 3161 §2.4.1), with signed attributes. The signature covers
    #    their DER SET OF, i.e. the [0] IMPLICIT field re-tagged as a SET (RFC 5652 §5.4).
    signed_data = decoded.signed_data
    signer_infos = list(signed_data["signer_infos"])
    _check(
        len(signer_infos) == 1,
        "signer-count",
        "SignerInfos",
        expected="exactly 1",
        found=str(len(signer_infos)),
    )
    signer_info = signer_infos[0]
    signed_attrs = signer_info["signed_attrs"]
    _check(
        not isinstance(signed_attrs, core.Void),
        "signed-attributes",
        "signed attributes",
        expected="present",
        found="absent",
    )
    signed_attrs_der = b"\x31" + bytes(signed_attrs.dump())[1:]
    attrs = _signed_attributes(signed_attrs_der)

    # 4. contentType is id-ct-TSTInfo; messageDigest is the digest of the TSTInfo octets.
    signer_digest = str(signer_info["digest_algorithm"]["algorithm"].native)
    content_type = _single(attrs, "content_type").native
    _check(
        content_type == "tst_info",
        "attribute-content-type",
        "contentType attribute",
        expected="tst_info",
        found=str(content_type),
    )
    tst_digest = _hash(signer_digest, decoded.tst_info_der, what="SignerInfo digestAlgorithm")
    message_digest = bytes(_single(attrs, "message_digest").native)
    _check(
        message_digest == tst_digest,
        "attribute-message-digest",
        f"messageDigest attribute ({signer_digest} of the TSTInfo)",
        expected=tst_digest.hex(),
        found=message_digest.hex(),
    )

    # 5. The signer certificate: found by the SignerInfo sid among the token's certificates
    #    and chain_pem, and bound by the ESS signing-certificate(-v2) hash (RFC 5816).
    chain = _load_chain(chain_pem)
    embedded = _embedded_certificates(signed_data)
    candidates = embedded + [c.public_bytes(serialization.Encoding.DER) for c in chain]
    signer_der = _find_signer(signer_info["sid"], candidates)
    signer_asn1 = asn1_x509.Certificate.load(signer_der)
    _check_ess(attrs, signer_der, signer_asn1)
    signer = x509.load_der_x509_certificate(signer_der)

    # 6. The TSA certificate is for time-stamping only: EKU timeStamping, critical (§2.3).
    _check_tsa_certificate_usage(signer)

    # 7. The signature over the signed attributes verifies with the TSA certificate's key.
    _verify_signature(signer.public_key(), signer_info, signed_attrs_der, signer_digest)

    # 8. TSTInfo.tsa, if present, names the signer.
    _check_tsa_name(decoded.tst_info, signer_asn1)

    # 9. The TSA certificate chains to a root of chain_pem, every certificate valid at genTime.
    roots = [c for c in chain if _is_self_signed(c)]
    _check(
        bool(roots),
        "trust-anchors",
        "trust anchors in chain_pem",
        expected="at least one self-signed root certificate",
        found=f"none among {len(chain)} certificates",
    )
    intermediates: list[x509.Certificate] = []
    for cert in chain + [x509.load_der_x509_certificate(der) for der in embedded]:
        if cert not in roots and cert != signer and cert not in intermediates:
            intermediates.append(cert)
    _verify_chain(signer, roots, intermediates, info.gen_time)

    # 10. Independent second opinion by rfc3161-client when its strict DER parser accepts the
    #     token; a disagreement fails closed.
    _cross_check_with_rfc3161_client(
        decoded, response_der, info.message_imprint, roots, intermediates, signer, embedded
    )
    return info
