"""RFC 3161: requests, reply matching and token verification (core.timestamp), and the built-in
TSA's tokens, certificates and key files (tsa.builtin). No sockets; OpenSSL and HTTP are in
tests/integration/test_tsa.py."""

from __future__ import annotations

import hashlib
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import parser, tsp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from archive_service.core.timestamp import (
    build_request,
    check_response_matches,
    token_info,
    verify_timestamp,
)
from archive_service.errors import ConfigurationError, TimestampInvalid
from archive_service.tsa import builtin
from archive_service.tsa.builtin import POLICY_OID, BuiltinTimestampAuthority
from tests.tsa_helpers import FixedClock, write_custom_tsa_dir

NOW = datetime(2026, 3, 2, 9, 30, 15, 250_000, tzinfo=UTC)
MESSAGE = b"<ArchiveTransfer>manifest bytes</ArchiveTransfer>"
DIGEST = hashlib.sha256(MESSAGE).digest()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def tsa(tmp_path: Path, clock: FixedClock) -> BuiltinTimestampAuthority:
    return BuiltinTimestampAuthority(tmp_path / "tsa", clock=clock)


def bare_token(response: bytes) -> bytes:
    return bytes(tsp.TimeStampResp.load(response)["time_stamp_token"].dump())


def reply_status(response: bytes) -> tsp.PKIStatusInfo:
    """The PKIStatusInfo of a reply (asn1crypto's TimeStampResp wrongly requires a token)."""
    contents = parser.parse(response)[4]
    _class, _method, _tag, header, status, _trailer = parser.parse(contents)
    return tsp.PKIStatusInfo.load(header + status)


def flip_byte_inside(data: bytes, needle: bytes) -> bytes:
    """Flip the last byte of the one occurrence of ``needle`` (same length, still parses)."""
    assert data.count(needle) == 1
    index = data.index(needle) + len(needle) - 1
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def load_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class TestBuildRequest:
    def test_request_carries_the_digest_a_nonce_and_cert_req(self) -> None:
        request = tsp.TimeStampReq.load(build_request(DIGEST))
        assert request["version"].native == "v1"
        assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
        assert request["message_imprint"]["hashed_message"].native == DIGEST
        assert request["cert_req"].native is True
        assert 0 <= request["nonce"].native < 2**64
        assert request["req_policy"].native is None

    def test_each_request_has_its_own_nonce(self) -> None:
        nonces = {tsp.TimeStampReq.load(build_request(DIGEST))["nonce"].native for _ in range(5)}
        assert len(nonces) == 5

    def test_nonce_and_cert_req_can_be_left_out(self) -> None:
        request = tsp.TimeStampReq.load(build_request(DIGEST, nonce=False, cert_req=False))
        assert request["nonce"].native is None
        assert request["cert_req"].native is False

    def test_sha512_request(self) -> None:
        digest = hashlib.sha512(MESSAGE).digest()
        request = tsp.TimeStampReq.load(build_request(digest, hash_algorithm="sha512"))
        assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha512"

    @pytest.mark.parametrize(
        ("digest", "algorithm", "error"),
        [
            (DIGEST[:20], "sha256", "a sha256 digest has 32 bytes, got 20"),
            (DIGEST, "sha512", "a sha512 digest has 64 bytes, got 32"),
            (hashlib.sha1(MESSAGE).digest(), "sha1", "unsupported hash algorithm 'sha1'"),
        ],
    )
    def test_bad_digest_or_algorithm_is_refused(
        self, digest: bytes, algorithm: str, error: str
    ) -> None:
        with pytest.raises(ValueError, match=error):
            build_request(digest, hash_algorithm=algorithm)


class TestCheckResponseMatches:
    def test_matching_reply_passes(self, tsa: BuiltinTimestampAuthority) -> None:
        request = build_request(DIGEST)
        check_response_matches(tsa.respond(request), request)

    def test_reply_for_another_digest_is_refused(self, tsa: BuiltinTimestampAuthority) -> None:
        other = tsa.respond(build_request(hashlib.sha256(b"other").digest(), nonce=False))
        with pytest.raises(TimestampInvalid, match=f"message imprint: expected {DIGEST.hex()}"):
            check_response_matches(other, build_request(DIGEST, nonce=False))

    def test_reply_with_another_nonce_is_refused(self, tsa: BuiltinTimestampAuthority) -> None:
        first, second = build_request(DIGEST), build_request(DIGEST)
        with pytest.raises(TimestampInvalid, match="nonce: expected") as caught:
            check_response_matches(tsa.respond(first), second)
        assert caught.value.issues[0].code == "timestamp-nonce"

    def test_reply_without_certificate_when_requested_is_refused(
        self, tsa: BuiltinTimestampAuthority
    ) -> None:
        reply = tsa.respond(build_request(DIGEST, nonce=False, cert_req=False))
        with pytest.raises(TimestampInvalid, match=r"certReq was true.*expected at least 1"):
            check_response_matches(reply, build_request(DIGEST, nonce=False, cert_req=True))

    def test_rejection_is_refused_with_its_reason(self, tsa: BuiltinTimestampAuthority) -> None:
        request = bytes(
            tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "hashed_message": DIGEST,
                    },
                    "req_policy": "1.2.3.4",
                }
            ).dump()
        )
        with pytest.raises(TimestampInvalid, match="PKIStatus: expected granted, found rejection"):
            check_response_matches(tsa.respond(request), request)

    def test_garbage_is_refused(self) -> None:
        with pytest.raises(TimestampInvalid, match="expected a TimeStampResp or a token"):
            check_response_matches(b"\x30\x03\x02\x01", build_request(DIGEST))


class TestBuiltinTokens:
    def test_token_verifies_and_says_what_it_covers(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        info = verify_timestamp(response, message=MESSAGE, chain_pem=tsa.certificate_chain_pem())
        assert info.gen_time == NOW.replace(microsecond=0)
        assert info.gen_time.tzinfo is UTC
        assert info.policy == POLICY_OID
        assert info.hash_algorithm == "sha256"
        assert info.message_imprint == DIGEST
        assert info.tsa_name is not None
        assert "CN=archive-service built-in TSA (non-qualified)" in info.tsa_name
        assert token_info(response) == info

    def test_token_verifies_from_a_precomputed_digest(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        info = verify_timestamp(response, digest=DIGEST, chain_pem=tsa.certificate_chain_pem())
        assert info.message_imprint == DIGEST

    def test_bare_token_verifies(self, tsa: BuiltinTimestampAuthority) -> None:
        token = bare_token(tsa.timestamp(DIGEST))
        info = verify_timestamp(token, message=MESSAGE, chain_pem=tsa.certificate_chain_pem())
        assert token_info(token) == info

    def test_sha512_token_verifies(self, tsa: BuiltinTimestampAuthority) -> None:
        digest = hashlib.sha512(MESSAGE).digest()
        response = tsa.timestamp(digest, hash_algorithm="sha512")
        chain = tsa.certificate_chain_pem()
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain).message_imprint == (
            digest
        )
        info = verify_timestamp(response, digest=digest, digest_algorithm="sha512", chain_pem=chain)
        assert info.hash_algorithm == "sha512"

    def test_rfc3161_client_parses_and_verifies_builtin_tokens(
        self, tsa: BuiltinTimestampAuthority
    ) -> None:
        response = rfc3161_client.decode_timestamp_response(tsa.timestamp(DIGEST))
        assert len(response.signed_data.certificates) == 1  # only the TSA certificate
        root = x509.load_pem_x509_certificates(tsa.certificate_chain_pem())[1]
        verifier = rfc3161_client.VerifierBuilder().add_root_certificate(root).build()
        assert verifier.verify(response, DIGEST)

    def test_tampered_message_fails(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        with pytest.raises(TimestampInvalid, match="message imprint: expected") as caught:
            verify_timestamp(
                response, message=MESSAGE + b" ", chain_pem=tsa.certificate_chain_pem()
            )
        assert caught.value.issues[0].code == "timestamp-imprint"

    def test_digest_of_another_algorithm_fails(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        with pytest.raises(TimestampInvalid, match="expected sha512, found sha256"):
            verify_timestamp(
                response,
                digest=hashlib.sha512(MESSAGE).digest(),
                digest_algorithm="sha512",
                chain_pem=tsa.certificate_chain_pem(),
            )

    def test_token_checked_against_another_ca_fails(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path, clock: FixedClock
    ) -> None:
        other = BuiltinTimestampAuthority(tmp_path / "other", clock=clock)
        response = tsa.timestamp(DIGEST)
        with pytest.raises(TimestampInvalid, match=r"certificate path of .* expected a valid path"):
            verify_timestamp(response, message=MESSAGE, chain_pem=other.certificate_chain_pem())
        other_root = (tmp_path / "other" / builtin.ROOT_CERT_FILE).read_bytes()
        with pytest.raises(TimestampInvalid, match="certificate path"):
            verify_timestamp(response, message=MESSAGE, chain_pem=other_root)

    def test_tampered_signature_fails(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        signer_info = tsp.TimeStampResp.load(response)["time_stamp_token"]["content"][
            "signer_infos"
        ][0]
        tampered = flip_byte_inside(response, signer_info["signature"].native)
        with pytest.raises(TimestampInvalid, match=r"CMS signature .* found invalid"):
            verify_timestamp(tampered, message=MESSAGE, chain_pem=tsa.certificate_chain_pem())

    def test_tampered_tst_info_fails(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        serial = token_info(response).serial_number
        tampered = flip_byte_inside(response, serial.to_bytes((serial.bit_length() + 8) // 8))
        assert token_info(tampered).serial_number != serial
        with pytest.raises(TimestampInvalid, match="messageDigest attribute"):
            verify_timestamp(tampered, message=MESSAGE, chain_pem=tsa.certificate_chain_pem())

    def test_certificate_expired_now_but_valid_at_gen_time_still_verifies(
        self, tmp_path: Path
    ) -> None:
        long_ago = datetime(2001, 5, 4, 3, 2, 1, tzinfo=UTC)
        old_tsa = BuiltinTimestampAuthority(tmp_path / "old", clock=FixedClock(long_ago))
        response = old_tsa.timestamp(DIGEST)
        tsa_cert = load_pem(tmp_path / "old" / builtin.TSA_CERT_FILE)
        assert tsa_cert.not_valid_after_utc < datetime.now(UTC)
        info = verify_timestamp(
            response, message=MESSAGE, chain_pem=old_tsa.certificate_chain_pem()
        )
        assert info.gen_time == long_ago

    def test_root_not_valid_at_gen_time_fails(self, tmp_path: Path) -> None:
        start = datetime(2020, 1, 1, tzinfo=UTC)
        write_custom_tsa_dir(
            tmp_path / "custom",
            not_before=start,
            validity=timedelta(days=3650),
            root_validity=timedelta(days=365),
        )
        late = BuiltinTimestampAuthority(
            tmp_path / "custom", clock=FixedClock(start + timedelta(days=400))
        )
        with pytest.raises(TimestampInvalid, match="at genTime 2021-02-04"):
            verify_timestamp(
                late.timestamp(DIGEST), message=MESSAGE, chain_pem=late.certificate_chain_pem()
            )

    def test_token_without_embedded_certificate(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.respond(build_request(DIGEST, cert_req=False))
        chain = tsa.certificate_chain_pem()
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain)
        root_only = (tsa.directory / builtin.ROOT_CERT_FILE).read_bytes()
        with pytest.raises(TimestampInvalid, match=r"TSA \(signer\) certificate: expected"):
            verify_timestamp(response, message=MESSAGE, chain_pem=root_only)

    def test_chain_without_a_root_fails(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        tsa_only = (tsa.directory / builtin.TSA_CERT_FILE).read_bytes()
        with pytest.raises(TimestampInvalid, match="expected at least one self-signed root"):
            verify_timestamp(response, message=MESSAGE, chain_pem=tsa_only)

    def test_any_corrupted_byte_fails_closed(self, tsa: BuiltinTimestampAuthority) -> None:
        """Flip one bit at a time across the reply: the verifier either refuses with
        TimestampInvalid or (unsigned fields such as SignedData.digestAlgorithms) still
        returns exactly the original TSTInfo; it never raises anything else."""
        response = tsa.timestamp(DIGEST)
        chain = tsa.certificate_chain_pem()
        original = verify_timestamp(response, message=MESSAGE, chain_pem=chain)
        refused = 0
        for index in range(len(response)):
            corrupted = response[:index] + bytes([response[index] ^ 0x04]) + response[index + 1 :]
            try:
                info = verify_timestamp(corrupted, message=MESSAGE, chain_pem=chain)
            except TimestampInvalid:
                refused += 1
            else:
                assert info == original, f"byte {index}"
        assert refused > len(response) * 0.9

    def test_message_or_digest_exactly_one(self, tsa: BuiltinTimestampAuthority) -> None:
        response = tsa.timestamp(DIGEST)
        chain = tsa.certificate_chain_pem()
        with pytest.raises(ValueError, match="exactly one"):
            verify_timestamp(response, message=MESSAGE, digest=DIGEST, chain_pem=chain)
        with pytest.raises(ValueError, match="exactly one"):
            verify_timestamp(response, chain_pem=chain)

    def test_unparsable_input_fails_closed(self, tsa: BuiltinTimestampAuthority) -> None:
        with pytest.raises(TimestampInvalid, match="expected a TimeStampResp or a token"):
            verify_timestamp(b"not DER", message=MESSAGE, chain_pem=tsa.certificate_chain_pem())
        with pytest.raises(TimestampInvalid, match="expected a TimeStampResp or a token"):
            token_info(b"\x30\x00")


class TestTsaCertificateUsage:
    """RFC 3161 §2.3: extendedKeyUsage is timeStamping only, and critical."""

    @pytest.mark.parametrize(
        ("eku", "critical", "error"),
        [
            (None, False, "extendedKeyUsage of CN=test custom TSA: expected critical"),
            ([], True, "extendedKeyUsage of CN=test custom TSA: .*found absent"),
            (
                [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING],
                True,
                "expected timeStamping only, found 1.3.6.1.5.5.7.3.8, 1.3.6.1.5.5.7.3.3",
            ),
            ([ExtendedKeyUsageOID.CODE_SIGNING], True, "expected timeStamping only"),
        ],
    )
    def test_bad_eku_fails(
        self,
        tmp_path: Path,
        eku: list[x509.ObjectIdentifier] | None,
        critical: bool,
        error: str,
    ) -> None:
        write_custom_tsa_dir(tmp_path / "bad", eku=eku, eku_critical=critical)
        bad = BuiltinTimestampAuthority(tmp_path / "bad")
        with pytest.raises(TimestampInvalid, match=error):
            verify_timestamp(
                bad.timestamp(DIGEST), message=MESSAGE, chain_pem=bad.certificate_chain_pem()
            )

    def test_builtin_certificates_have_the_expected_profile(
        self, tsa: BuiltinTimestampAuthority
    ) -> None:
        tsa.certificate_chain_pem()
        root = load_pem(tsa.directory / builtin.ROOT_CERT_FILE)
        cert = load_pem(tsa.directory / builtin.TSA_CERT_FILE)

        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert eku.critical
        assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.digital_signature and ku.value.content_commitment
        assert not ku.value.key_cert_sign
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == root_ski.digest
        assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert cert.issuer == root.subject
        cert.verify_directly_issued_by(root)

        root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
        assert root_bc.critical and root_bc.value.ca
        root_ku = root.extensions.get_extension_for_class(x509.KeyUsage)
        assert root_ku.critical and root_ku.value.key_cert_sign and root_ku.value.crl_sign
        assert root.subject == root.issuer

        for c in (root, cert):
            key = c.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            assert key.curve.name == "secp256r1"
            assert "non-qualified" in c.subject.rfc4514_string()
        assert "CN=archive-service built-in TSA (non-qualified)" in cert.subject.rfc4514_string()

    def test_chain_is_tsa_certificate_then_root(self, tsa: BuiltinTimestampAuthority) -> None:
        chain = x509.load_pem_x509_certificates(tsa.certificate_chain_pem())
        assert chain == [
            load_pem(tsa.directory / builtin.TSA_CERT_FILE),
            load_pem(tsa.directory / builtin.ROOT_CERT_FILE),
        ]
        assert (tsa.directory / builtin.CHAIN_FILE).read_bytes() == tsa.certificate_chain_pem()


class TestBuiltinKeyStore:
    def test_nothing_is_written_before_first_use(self, tmp_path: Path) -> None:
        BuiltinTimestampAuthority(tmp_path / "tsa")
        assert not (tmp_path / "tsa").exists()

    def test_private_keys_are_0600(self, tsa: BuiltinTimestampAuthority) -> None:
        tsa.certificate_chain_pem()
        for name in (builtin.ROOT_KEY_FILE, builtin.TSA_KEY_FILE):
            mode = stat.S_IMODE((tsa.directory / name).stat().st_mode)
            assert mode == 0o600, f"{name}: {oct(mode)}"
        assert stat.S_IMODE(tsa.directory.stat().st_mode) & 0o077 == 0

    def test_keys_persist_across_instances(self, tmp_path: Path, clock: FixedClock) -> None:
        first = BuiltinTimestampAuthority(tmp_path / "tsa", clock=clock)
        chain = first.certificate_chain_pem()
        keys = {
            name: (tmp_path / "tsa" / name).read_bytes()
            for name in (builtin.ROOT_KEY_FILE, builtin.TSA_KEY_FILE)
        }
        second = BuiltinTimestampAuthority(tmp_path / "tsa", clock=clock)
        assert second.certificate_chain_pem() == chain
        assert verify_timestamp(second.timestamp(DIGEST), message=MESSAGE, chain_pem=chain)
        for name, data in keys.items():
            assert (tmp_path / "tsa" / name).read_bytes() == data

    def test_racing_threads_create_one_ca(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        created: list[int] = []
        original = BuiltinTimestampAuthority._create

        def slow_create(self: BuiltinTimestampAuthority) -> None:
            created.append(1)
            time.sleep(0.05)  # widen the race window; the lock must still serialise
            original(self)

        monkeypatch.setattr(BuiltinTimestampAuthority, "_create", slow_create)
        barrier = threading.Barrier(8)
        chains: list[bytes] = []

        def start() -> None:
            instance = BuiltinTimestampAuthority(tmp_path / "tsa")
            barrier.wait()
            chains.append(instance.certificate_chain_pem())

        threads = [threading.Thread(target=start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(chains) == 8
        assert len(set(chains)) == 1
        assert len(created) == 1

    def test_missing_file_next_to_chain_is_a_configuration_error(
        self, tsa: BuiltinTimestampAuthority, clock: FixedClock
    ) -> None:
        tsa.certificate_chain_pem()
        (tsa.directory / builtin.TSA_KEY_FILE).unlink()
        with pytest.raises(ConfigurationError, match="lacks"):
            BuiltinTimestampAuthority(tsa.directory, clock=clock).timestamp(DIGEST)

    def test_refuses_to_sign_outside_its_certificate_validity(self, tmp_path: Path) -> None:
        BuiltinTimestampAuthority(
            tmp_path / "tsa", clock=FixedClock(datetime(2001, 1, 1, tzinfo=UTC))
        ).certificate_chain_pem()
        later = BuiltinTimestampAuthority(tmp_path / "tsa", clock=FixedClock(NOW))
        with pytest.raises(ConfigurationError, match="certificate is not valid at 2026-03-02"):
            later.timestamp(DIGEST)


class TestBuiltinProtocol:
    def test_serials_are_unique_and_increasing(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path, clock: FixedClock
    ) -> None:
        serials = [token_info(tsa.timestamp(DIGEST)).serial_number for _ in range(20)]
        assert serials == sorted(serials)
        assert len(set(serials)) == 20
        twin = BuiltinTimestampAuthority(tsa.directory, clock=clock)  # same keys, same clock
        assert token_info(twin.timestamp(DIGEST)).serial_number not in serials
        clock.at = NOW + timedelta(seconds=1)
        assert token_info(tsa.timestamp(DIGEST)).serial_number > max(serials)

    def test_nonce_is_echoed(self, tsa: BuiltinTimestampAuthority) -> None:
        request = build_request(DIGEST)
        nonce = tsp.TimeStampReq.load(request)["nonce"].native
        tst_info = tsp.TimeStampResp.load(tsa.respond(request))["time_stamp_token"]["content"][
            "encap_content_info"
        ]["content"].parsed
        assert tst_info["nonce"].native == nonce
        assert tst_info["accuracy"]["seconds"].native == 1

    def test_signed_attributes(self, tsa: BuiltinTimestampAuthority) -> None:
        signed_data = tsp.TimeStampResp.load(tsa.timestamp(DIGEST))["time_stamp_token"]["content"]
        attrs = {a["type"].native: a for a in signed_data["signer_infos"][0]["signed_attrs"]}
        assert set(attrs) == {"content_type", "message_digest", "signing_certificate_v2"}
        ess = attrs["signing_certificate_v2"]["values"][0]["certs"][0]
        cert_der = signed_data["certificates"][0].chosen.dump()
        assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()

    @pytest.mark.parametrize(
        ("request_der", "fail_info"),
        [
            (b"\x30\x03\x02\x01\x01", "bad_data_format"),
            (
                tsp.TimeStampReq(
                    {
                        "version": "v1",
                        "message_imprint": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "hashed_message": hashlib.sha1(MESSAGE).digest(),
                        },
                    }
                ).dump(),
                "bad_alg",
            ),
            (
                tsp.TimeStampReq(
                    {
                        "version": "v1",
                        "message_imprint": {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": DIGEST[:16],
                        },
                    }
                ).dump(),
                "bad_data_format",
            ),
            (
                tsp.TimeStampReq(
                    {
                        "version": "v1",
                        "message_imprint": {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": DIGEST,
                        },
                        "req_policy": "1.2.3.4",
                    }
                ).dump(),
                "unaccepted_policy",
            ),
        ],
        ids=["not-a-request", "sha1", "short-imprint", "other-policy"],
    )
    def test_bad_requests_get_a_rejection(
        self, tsa: BuiltinTimestampAuthority, request_der: bytes, fail_info: str
    ) -> None:
        status = reply_status(tsa.respond(request_der))
        assert status["status"].native == "rejection"
        assert status["fail_info"].native == {fail_info}
