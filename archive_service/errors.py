"""The one error family of archive-service.

Errors carry what was expected and what was found; they know nothing of HTTP status codes or
exit codes. Entry points (api/errors.py, cli/main.py, tasks/) translate them at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One reason something was refused: a stable code, a message and where it applies."""

    code: str
    message: str
    location: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.location is not None:
            out["location"] = self.location
        return out


class ArchiveError(Exception):
    """Root of every error the service raises on purpose."""

    code = "archive-error"
    title = "Archive error"

    def __init__(
        self,
        message: str,
        *,
        issues: Sequence[Issue] = (),
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.issues: tuple[Issue, ...] = tuple(issues)
        #: Machine-readable facts about the refusal (e.g. the access rule and its end date),
        #: rendered as extension members of the HTTP problem and printed by the CLI.
        self.extra: dict[str, object] = dict(extra or {})


class InvalidInput(ArchiveError):
    """The caller sent something we refuse (metadata, file, path, parameter)."""

    code = "invalid-input"
    title = "Invalid input"


class BadRequest(InvalidInput):
    """The request itself is malformed (missing part, JSON that does not parse)."""

    code = "bad-request"
    title = "Bad request"


class PayloadTooLarge(InvalidInput):
    code = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class UnsafeArchive(InvalidInput):
    """A received zip is refused before anything is extracted (traversal, symlink, bomb…)."""

    code = "unsafe-archive"
    title = "Unsafe archive"


class ArchiveTooLarge(PayloadTooLarge):
    """A received zip declares or produces more entries or bytes than the limits allow."""

    code = "archive-too-large"
    title = "Archive too large"


class SedaInvalid(ArchiveError):
    """A SEDA message does not validate against its schema or our profile."""

    code = "seda-invalid"
    title = "SEDA message invalid"


class NotAuthenticated(ArchiveError):
    code = "not-authenticated"
    title = "Authentication required"


class Forbidden(ArchiveError):
    code = "forbidden"
    title = "Forbidden"


class AccessRestricted(Forbidden):
    """The unit exists and the caller may see it, but its AccessRule does not let the caller
    read it yet (communicability): ``extra`` names the rule and the date it ends."""

    code = "access-restricted"
    title = "Not communicable yet"


class NotFound(ArchiveError):
    code = "not-found"
    title = "Not found"


class Gone(NotFound):
    """It existed and was destroyed or transferred out, with a visa; ``extra`` says how."""

    code = "gone"
    title = "Gone"


class Conflict(ArchiveError):
    code = "conflict"
    title = "Conflict"


class IntegrityFailure(ArchiveError):
    """A digest, token or proof did not verify."""

    code = "integrity-failure"
    title = "Integrity check failed"


class FingerprintMismatch(IntegrityFailure):
    code = "fingerprint-mismatch"
    title = "Fingerprint mismatch"


class TimestampInvalid(IntegrityFailure):
    code = "timestamp-invalid"
    title = "Timestamp token invalid"


class Unavailable(ArchiveError):
    """A dependency (storage, TSA, database) cannot be reached now; the caller may retry."""

    code = "unavailable"
    title = "Service unavailable"


class InsufficientStorage(ArchiveError):
    """No room to take what was sent (the staging disk is full); nothing was kept."""

    code = "insufficient-storage"
    title = "Insufficient storage"


class ConfigurationError(ArchiveError):
    code = "configuration-error"
    title = "Configuration error"
