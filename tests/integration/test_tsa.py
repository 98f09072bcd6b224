"""RFC 3161 with real peers: ``openssl ts`` verifies the built-in TSA's tokens, our verifier
accepts OpenSSL's tokens (including the DER set-ordering trap), HttpTimestampAuthority talks
to local HTTP TSAs, and processes racing on a fresh key directory end with one CA."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import tsp

from archive_service.core.timestamp import (
    build_request,
    check_response_matches,
    token_info,
    verify_timestamp,
)
from archive_service.errors import TimestampInvalid, Unavailable
from archive_service.ports import TimestampAuthority
from archive_service.tsa import builtin
from archive_service.tsa.builtin import BuiltinTimestampAuthority
from archive_service.tsa.http import HttpTimestampAuthority
from tests.tsa_helpers import (
    FixedClock,
    OpenSslTsa,
    chain_after_barrier,
    free_port_url,
    make_openssl_tsa,
    openssl,
    openssl_verify,
    serve_tsa,
)

MESSAGE = b"manifest.xml bytes: <ArchiveTransfer/>\n"
DIGEST = hashlib.sha256(MESSAGE).digest()
OK = "Verification: OK"
FAILED = "Verification: FAILED"


@pytest.fixture
def tsa(tmp_path: Path) -> BuiltinTimestampAuthority:
    return BuiltinTimestampAuthority(tmp_path / "tsa")


@pytest.fixture(scope="module")
def openssl_tsa(tmp_path_factory: pytest.TempPathFactory) -> OpenSslTsa:
    return make_openssl_tsa(tmp_path_factory.mktemp("openssl-tsa"), embed_ca=False)


@pytest.fixture(scope="module")
def openssl_tsa_with_ca(tmp_path_factory: pytest.TempPathFactory) -> OpenSslTsa:
    return make_openssl_tsa(tmp_path_factory.mktemp("openssl-tsa-ca"), embed_ca=True)


def assert_ok(result: object) -> None:
    stdout = getattr(result, "stdout", "")
    assert getattr(result, "returncode", None) == 0, f"{stdout}\n{getattr(result, 'stderr', '')}"
    assert OK in stdout


def assert_failed(result: object, reason: str) -> None:
    stdout, stderr = getattr(result, "stdout", ""), getattr(result, "stderr", "")
    assert getattr(result, "returncode", None) != 0
    assert FAILED in stdout
    assert reason in stderr, stderr


class TestOpenSslVerifiesBuiltinTokens:
    def test_data_with_chain_as_cafile(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path
    ) -> None:
        response = tsa.timestamp(DIGEST)
        chain = tsa.certificate_chain_pem()
        assert_ok(openssl_verify(tmp_path, response=response, data=MESSAGE, cafile=chain))
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain)

    def test_chain_file_on_disk_is_usable_as_cafile(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path
    ) -> None:
        response = tsa.timestamp(DIGEST)
        (tmp_path / "resp.tsr").write_bytes(response)
        (tmp_path / "doc.bin").write_bytes(MESSAGE)
        chain_file = tsa.directory / builtin.CHAIN_FILE
        result = openssl(tmp_path, f"ts -verify -data doc.bin -in resp.tsr -CAfile '{chain_file}'")
        assert OK in result.stdout

    def test_queryfile_made_by_openssl_checks_the_nonce(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path
    ) -> None:
        (tmp_path / "doc.bin").write_bytes(MESSAGE)
        openssl(tmp_path, "ts -query -data doc.bin -sha256 -cert -out req.tsq")
        query = (tmp_path / "req.tsq").read_bytes()
        response = tsa.respond(query)
        chain = tsa.certificate_chain_pem()
        assert_ok(openssl_verify(tmp_path, response=response, query=query, cafile=chain))
        check_response_matches(response, query)
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain)

    def test_openssl_reads_our_request(self, tmp_path: Path) -> None:
        (tmp_path / "req.tsq").write_bytes(build_request(DIGEST))
        text = openssl(tmp_path, "ts -query -in req.tsq -text").stdout
        assert "Hash Algorithm: sha256" in text
        assert "Certificate required: yes" in text
        assert "Nonce: 0x" in text

    def test_bare_token(self, tsa: BuiltinTimestampAuthority, tmp_path: Path) -> None:
        (tmp_path / "resp.tsr").write_bytes(tsa.timestamp(DIGEST))
        openssl(tmp_path, "ts -reply -in resp.tsr -token_out -out token.tst")
        token = (tmp_path / "token.tst").read_bytes()
        chain = tsa.certificate_chain_pem()
        result = openssl_verify(tmp_path, response=token, token_in=True, data=MESSAGE, cafile=chain)
        assert_ok(result)
        assert verify_timestamp(token, message=MESSAGE, chain_pem=chain)

    def test_tampered_data_fails(self, tsa: BuiltinTimestampAuthority, tmp_path: Path) -> None:
        response = tsa.timestamp(DIGEST)
        chain = tsa.certificate_chain_pem()
        result = openssl_verify(tmp_path, response=response, data=MESSAGE + b"!", cafile=chain)
        assert_failed(result, "message imprint mismatch")
        with pytest.raises(TimestampInvalid, match="message imprint"):
            verify_timestamp(response, message=MESSAGE + b"!", chain_pem=chain)

    def test_other_ca_fails(self, tsa: BuiltinTimestampAuthority, tmp_path: Path) -> None:
        other = BuiltinTimestampAuthority(tmp_path / "other")
        response = tsa.timestamp(DIGEST)
        result = openssl_verify(
            tmp_path, response=response, data=MESSAGE, cafile=other.certificate_chain_pem()
        )
        assert_failed(result, "unable to get local issuer certificate")
        with pytest.raises(TimestampInvalid, match="certificate path"):
            verify_timestamp(response, message=MESSAGE, chain_pem=other.certificate_chain_pem())

    def test_token_without_certificate_needs_untrusted(
        self, tsa: BuiltinTimestampAuthority, tmp_path: Path
    ) -> None:
        """Without certReq the token names its signer only; OpenSSL looks for it in -untrusted,
        never in -CAfile. chain.pem serves for both."""
        response = tsa.respond(build_request(DIGEST, cert_req=False))
        chain = tsa.certificate_chain_pem()
        result = openssl_verify(tmp_path, response=response, data=MESSAGE, cafile=chain)
        assert_failed(result, "signer certificate not found")
        assert_ok(
            openssl_verify(tmp_path, response=response, data=MESSAGE, cafile=chain, untrusted=chain)
        )
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain)

    def test_certificate_expired_now_verifies_at_gen_time(self, tmp_path: Path) -> None:
        gen_time = datetime(2001, 5, 4, 3, 2, 1, tzinfo=UTC)
        old = BuiltinTimestampAuthority(tmp_path / "old", clock=FixedClock(gen_time))
        response = old.timestamp(DIGEST)
        chain = old.certificate_chain_pem()
        # openssl checks certificates at the current time unless told otherwise...
        now = openssl_verify(tmp_path, response=response, data=MESSAGE, cafile=chain)
        assert_failed(now, "certificate has expired")
        # ...at genTime the token is good, and that is what our verifier checks.
        at_gen_time = openssl_verify(
            tmp_path, response=response, data=MESSAGE, cafile=chain, attime=gen_time
        )
        assert_ok(at_gen_time)
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain).gen_time == gen_time


class TestOpenSslTokensVerifyWithOurCode:
    def test_openssl_token_with_tsa_certificate_only(
        self, openssl_tsa: OpenSslTsa, tmp_path: Path
    ) -> None:
        request = build_request(DIGEST)
        response = openssl_tsa.reply(request)
        check_response_matches(response, request)
        rfc3161_client.decode_timestamp_response(response)  # strict DER parser accepts it
        info = verify_timestamp(response, message=MESSAGE, chain_pem=openssl_tsa.chain_pem())
        assert info.policy == "1.3.6.1.4.1.99999.1.1"
        assert info.tsa_name is not None and "OpenSSL Test TSA" in info.tsa_name

    def test_der_set_ordering_trap_falls_back_to_our_checklist(
        self, openssl_tsa_with_ca: OpenSslTsa
    ) -> None:
        """``certs = ca.crt``: OpenSSL embeds TSA + CA certificates unsorted; rfc3161-client's
        strict DER parser refuses that, our verifier (asn1crypto + cryptography) does not."""
        request = build_request(DIGEST)
        response = openssl_tsa_with_ca.reply(request)
        with pytest.raises(ValueError, match="InvalidSetOrdering"):
            rfc3161_client.decode_timestamp_response(response)
        check_response_matches(response, request)
        chain = openssl_tsa_with_ca.ca_cert.read_bytes()
        info = verify_timestamp(response, message=MESSAGE, chain_pem=chain)
        assert info.message_imprint == DIGEST
        assert token_info(response) == info
        # The fallback is lenient on encoding only, never on substance.
        with pytest.raises(TimestampInvalid, match="message imprint"):
            verify_timestamp(response, message=b"other", chain_pem=chain)
        other_ca = BuiltinTimestampAuthority(openssl_tsa_with_ca.directory / "other")
        with pytest.raises(TimestampInvalid, match="certificate path"):
            verify_timestamp(response, message=MESSAGE, chain_pem=other_ca.certificate_chain_pem())


# -- HttpTimestampAuthority -----------------------------------------------------------------


class TestHttpTimestampAuthority:
    def test_against_the_builtin_tsa(self, tsa: BuiltinTimestampAuthority) -> None:
        with serve_tsa(tsa.respond) as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem(), timeout=10)
            response = client.timestamp(DIGEST)
        assert server.requests[0][0] == "application/timestamp-query"
        assert tsp.TimeStampReq.load(server.requests[0][1])["cert_req"].native is True
        chain = client.certificate_chain_pem()
        assert verify_timestamp(response, message=MESSAGE, chain_pem=chain).message_imprint == (
            DIGEST
        )

    def test_against_openssl_ts_reply(self, openssl_tsa_with_ca: OpenSslTsa) -> None:
        with serve_tsa(openssl_tsa_with_ca.reply) as server:
            client = HttpTimestampAuthority(server.url, openssl_tsa_with_ca.chain_pem())
            response = client.timestamp(DIGEST)
        assert verify_timestamp(response, digest=DIGEST, chain_pem=client.certificate_chain_pem())

    def test_unreachable_tsa_is_unavailable(self) -> None:
        client = HttpTimestampAuthority(free_port_url(), b"", timeout=5)
        with pytest.raises(Unavailable, match="unreachable: ConnectError"):
            client.timestamp(DIGEST)

    def test_reply_with_wrong_imprint_is_invalid(self, tsa: BuiltinTimestampAuthority) -> None:
        other_digest = hashlib.sha256(b"someone else's document").digest()

        def wrong_imprint(request: bytes) -> bytes:
            nonce = tsp.TimeStampReq.load(request)["nonce"].native
            forged = tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "hashed_message": other_digest,
                    },
                    "nonce": nonce,
                    "cert_req": True,
                }
            )
            return tsa.respond(forged.dump())

        with serve_tsa(wrong_imprint) as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem())
            with pytest.raises(TimestampInvalid, match=f"message imprint: expected {DIGEST.hex()}"):
                client.timestamp(DIGEST)

    def test_replayed_reply_is_invalid(self, tsa: BuiltinTimestampAuthority) -> None:
        old_reply = tsa.timestamp(DIGEST)  # same digest, but another nonce
        with serve_tsa(lambda _request: old_reply) as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem())
            with pytest.raises(TimestampInvalid, match="nonce: expected"):
                client.timestamp(DIGEST)

    def test_rejection_is_invalid(self, tsa: BuiltinTimestampAuthority) -> None:
        with serve_tsa(lambda _request: tsa.respond(b"\x30\x00")) as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem())
            with pytest.raises(TimestampInvalid, match="found rejection"):
                client.timestamp(DIGEST)

    def test_wrong_content_type_is_invalid(self, tsa: BuiltinTimestampAuthority) -> None:
        with serve_tsa(tsa.respond, content_type="text/html") as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem())
            with pytest.raises(TimestampInvalid, match="found 'text/html'"):
                client.timestamp(DIGEST)

    @pytest.mark.parametrize(
        ("status", "error"),
        [(503, Unavailable), (429, Unavailable), (404, TimestampInvalid)],
    )
    def test_http_errors(
        self, tsa: BuiltinTimestampAuthority, status: int, error: type[Exception]
    ) -> None:
        with serve_tsa(lambda _request: b"busy", status=status) as server:
            client = HttpTimestampAuthority(server.url, tsa.certificate_chain_pem())
            with pytest.raises(error, match=f"HTTP {status}"):
                client.timestamp(DIGEST)


# -- the TimestampAuthority port, the same contract for every implementation ----------------


@contextmanager
def _builtin(tmp_path: Path) -> Iterator[TimestampAuthority]:
    yield BuiltinTimestampAuthority(tmp_path / "tsa")


@contextmanager
def _http_to_builtin(tmp_path: Path) -> Iterator[TimestampAuthority]:
    inner = BuiltinTimestampAuthority(tmp_path / "tsa")
    with serve_tsa(inner.respond) as server:
        yield HttpTimestampAuthority(server.url, inner.certificate_chain_pem())


@contextmanager
def _http_to_openssl(tmp_path: Path) -> Iterator[TimestampAuthority]:
    inner = make_openssl_tsa(tmp_path / "openssl", embed_ca=False)
    with serve_tsa(inner.reply) as server:
        yield HttpTimestampAuthority(server.url, inner.chain_pem())


@pytest.mark.parametrize(
    "make", [_builtin, _http_to_builtin, _http_to_openssl], ids=["builtin", "http", "openssl"]
)
def test_timestamp_authority_contract(
    make: Callable[[Path], AbstractContextManager[TimestampAuthority]], tmp_path: Path
) -> None:
    with make(tmp_path) as authority:
        for algorithm in ("sha256", "sha512"):
            digest = hashlib.new(algorithm, MESSAGE).digest()
            response = authority.timestamp(digest, hash_algorithm=algorithm)
            info = verify_timestamp(
                response, message=MESSAGE, chain_pem=authority.certificate_chain_pem()
            )
            assert info.hash_algorithm == algorithm
            assert info.message_imprint == digest
        result = openssl_verify(
            tmp_path / "verify",
            response=response,
            data=MESSAGE,
            cafile=authority.certificate_chain_pem(),
        )
        assert_ok(result)


# -- first start racing across processes ------------------------------------------------------


def test_racing_processes_create_one_ca(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=chain_after_barrier, args=(str(tmp_path / "tsa"), barrier, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    chains = [results.get() for _ in processes]
    for process in processes:
        process.join()
        assert process.exitcode == 0
    assert len(set(chains)) == 1
    assert (tmp_path / "tsa" / builtin.CHAIN_FILE).read_bytes() == chains[0]
    survivor = BuiltinTimestampAuthority(tmp_path / "tsa")
    assert verify_timestamp(survivor.timestamp(DIGEST), message=MESSAGE, chain_pem=chains[0])
