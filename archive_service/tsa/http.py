"""Client of an external RFC 3161 TSA over HTTP (RFC 3161 §3.4), e.g. an eIDAS qualified TSA.

It implements the ``TimestampAuthority`` port: POST a DER ``TimeStampReq`` as
``application/timestamp-query``, expect ``application/timestamp-reply``, and check that the
reply answers our request (status, imprint, nonce) before handing it back. Verifying the token
against the trust anchors is the caller's job (``core.timestamp.verify_timestamp`` with
:meth:`HttpTimestampAuthority.certificate_chain_pem`).

Errors: the TSA cannot be reached, times out or answers 5xx / 429 → ``Unavailable`` (retry
later); anything else that is not a matching granted reply → ``TimestampInvalid``.
"""

from __future__ import annotations

import httpx

from archive_service.core.timestamp import build_request, check_response_matches
from archive_service.errors import TimestampInvalid, Unavailable

__all__ = ["QUERY_MEDIA_TYPE", "REPLY_MEDIA_TYPE", "HttpTimestampAuthority"]

QUERY_MEDIA_TYPE = "application/timestamp-query"
REPLY_MEDIA_TYPE = "application/timestamp-reply"
_MAX_REPLY_BYTES = 1024 * 1024


class HttpTimestampAuthority:
    """An RFC 3161 TSA reached over HTTP(S); ``chain_pem`` are its trust anchors (PEM).

    ``client`` may be given to share a connection pool or to inject a transport in tests;
    otherwise each call opens and closes its own client.
    """

    def __init__(
        self,
        url: str,
        chain_pem: bytes,
        timeout: float = 15.0,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self._chain_pem = chain_pem
        self._timeout = timeout
        self._client = client

    def certificate_chain_pem(self) -> bytes:
        return self._chain_pem

    def timestamp(self, data_digest: bytes, *, hash_algorithm: str = "sha256") -> bytes:
        """Request a token over ``data_digest``; the reply is checked against the request."""
        request = build_request(data_digest, hash_algorithm=hash_algorithm)
        reply = self._post(request)
        check_response_matches(reply, request)
        return reply

    def _post(self, request: bytes) -> bytes:
        headers = {"Content-Type": QUERY_MEDIA_TYPE, "Accept": REPLY_MEDIA_TYPE}
        try:
            if self._client is not None:
                response = self._client.post(
                    self.url, content=request, headers=headers, timeout=self._timeout
                )
            else:
                with httpx.Client(timeout=self._timeout) as client:
                    response = client.post(self.url, content=request, headers=headers)
        except httpx.TransportError as exc:
            msg = f"TSA {self.url} unreachable: {type(exc).__name__}: {exc}"
            raise Unavailable(msg) from exc
        status = response.status_code
        if status >= 500 or status == 429:
            msg = f"TSA {self.url} answered HTTP {status}"
            raise Unavailable(msg)
        if status != 200:
            msg = f"TSA {self.url}: expected HTTP 200, found HTTP {status}"
            raise TimestampInvalid(msg)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != REPLY_MEDIA_TYPE:
            msg = f"TSA {self.url}: expected content type {REPLY_MEDIA_TYPE}, found {media_type!r}"
            raise TimestampInvalid(msg)
        body = response.content
        if not body or len(body) > _MAX_REPLY_BYTES:
            msg = (
                f"TSA {self.url}: expected a reply of 1 to {_MAX_REPLY_BYTES} bytes, "
                f"found {len(body)} bytes"
            )
            raise TimestampInvalid(msg)
        return body
