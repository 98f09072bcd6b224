"""Validate SEDA messages: the official XSD (offline) and our procurement profile (RelaxNG).

Official XSDs are reference data the project does not ship: :class:`SedaValidator` reads them
from ``settings.seda_xsd_dir``, either a directory with ``2.2/`` and ``2.3/`` sub-directories or
the directory of one version's files. They import the W3C schemas by absolute URL
(``http://www.w3.org/2001/xml.xsd``, ``http://www.w3.org/1999/xlink.xsd``); a resolver maps those
to the local copies next to the SEDA files and refuses every location outside that directory,
and the parser never uses the network.

Each version's schema is compiled once, on first use: the bare, unmodified ``seda-<v>-main.xsd``
(with what it includes), and nothing of ours. This is exactly what an auditor runs with
``xmllint --schema seda-<v>-main.xsd``: our manifests carry no element that needs an extension
schema (our few technical elements sit in ``BinaryDataObject/OtherMetadata``, an ``OpenType``
with a lax ``##other`` wildcard), so the same compiled schema serves our manifests, our replies
and foreign transfers.

Our profile (``seda_schemas/procurement-profile-<v>.rng``) describes exactly what the builder
writes and is checked for our own packages, together with
:mod:`~archive_service.core.seda.profile_rules` (plain-worded requirements first, then the
co-constraints RelaxNG cannot express). It does not apply to foreign transfers
(``profile=False``).

Every failure is :class:`~archive_service.errors.SedaInvalid`; each
:class:`~archive_service.errors.Issue` has a stable code and a location
``line N: /ArchiveTransfer/…``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, cast
from urllib.parse import unquote, urlparse

from lxml import etree

from archive_service.core.seda.names import EXT_NS, EXT_PREFIX, SEDA_NS, SedaVersion
from archive_service.core.seda.profile_rules import consistency_issues, requirement_issues
from archive_service.core.seda.xmlsafe import (
    element_path,
    locate,
    parse_untrusted,
    safe_parser,
    seda_version_of,
)
from archive_service.errors import ConfigurationError, Issue, SedaInvalid

__all__ = ["SedaValidator", "detect_version", "profile_dir"]


class _LogEntry(Protocol):
    """What we read of an lxml ``_LogEntry`` (not described by lxml-stubs)."""

    line: int
    path: str | None
    message: str


_W3C_SCHEMAS: Final = {
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "https://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://www.w3.org/1999/xlink.xsd": "xlink.xsd",
    "https://www.w3.org/1999/xlink.xsd": "xlink.xsd",
}


def profile_dir() -> Path:
    """``seda_schemas/`` at the repository root (found from this file in an editable install).

    A wheel does not contain it: ``seda_schemas/`` is outside the ``archive_service`` package.
    """
    return Path(__file__).resolve().parents[3] / "seda_schemas"


def detect_version(xml: bytes) -> SedaVersion:
    """``"2.2"`` or ``"2.3"`` from the root element's namespace; ``SedaInvalid`` otherwise."""
    return seda_version_of(parse_untrusted(xml))


@dataclass(frozen=True, slots=True)
class _Compiled:
    validator: etree._Validator
    lock: threading.Lock


class SedaValidator:
    """Validates SEDA 2.2/2.3 messages; compiles each schema once, on first use, offline."""

    def __init__(self, xsd_dir: Path | None, profile_dir: Path) -> None:
        self._xsd_dir = xsd_dir
        self._profile_dir = profile_dir
        self._lock = threading.Lock()
        self._official: dict[SedaVersion, _Compiled] = {}
        self._profiles: dict[SedaVersion, _Compiled] = {}

    def official_dir(self, version: SedaVersion) -> Path | None:
        """Directory holding ``seda-<version>-main.xsd``, or ``None`` when not installed."""
        if self._xsd_dir is None:
            return None
        main = f"seda-{version}-main.xsd"
        for candidate in (self._xsd_dir / version, self._xsd_dir):
            if (candidate / main).is_file():
                return candidate
        return None

    def official_available(self, version: SedaVersion) -> bool:
        return self.official_dir(version) is not None

    def detect_version(self, xml: bytes) -> SedaVersion:
        return detect_version(xml)

    def validate(
        self, xml: bytes, *, version: SedaVersion | None = None, profile: bool = True
    ) -> None:
        """Validate ``xml``; raise ``SedaInvalid`` carrying every issue found.

        The version comes from the root namespace (``version`` must agree when given).

        The official XSD is used when installed; ``profile`` adds our procurement profile (for
        the manifests we build; foreign transfers use ``profile=False``). Without the official
        XSD and without the profile nothing could be checked: ``ConfigurationError``.
        """
        tree = parse_untrusted(xml)
        detected = seda_version_of(tree)
        if version is not None and version != detected:
            root = tree.getroot()
            issue = Issue(
                "seda-version-mismatch",
                f"expected SEDA {version}, the message is SEDA {detected}",
                f"line {root.sourceline or 1}: {element_path(root)}",
            )
            raise SedaInvalid(f"expected a SEDA {version} message", issues=[issue])
        official = self.official_available(detected)
        if not official and not profile:
            msg = f"official SEDA {detected} XSD not installed (settings.seda_xsd_dir)"
            raise ConfigurationError(msg)
        issues: list[Issue] = []
        if profile:
            issues += requirement_issues(tree, detected)
        if official:
            issues += _run(self._official_schema(detected), tree, "seda-xsd-invalid")
        if profile:
            issues += _run(self._profile_schema(detected), tree, "seda-profile-invalid")
            issues += consistency_issues(tree, detected)
        issues = list(dict.fromkeys(issues))
        if issues:
            what = "official XSD" if official else "profile"
            if official and profile:
                what = "official XSD and profile"
            msg = f"SEDA {detected} message does not validate ({what}): {len(issues)} issue(s)"
            raise SedaInvalid(msg, issues=issues)

    # -- compilation -------------------------------------------------------------------------

    def _official_schema(self, version: SedaVersion) -> _Compiled:
        with self._lock:
            compiled = self._official.get(version)
            if compiled is None:
                compiled = _Compiled(self._compile_official(version), threading.Lock())
                self._official[version] = compiled
            return compiled

    def _profile_schema(self, version: SedaVersion) -> _Compiled:
        with self._lock:
            compiled = self._profiles.get(version)
            if compiled is None:
                compiled = _Compiled(self._compile_profile(version), threading.Lock())
                self._profiles[version] = compiled
            return compiled

    def _compile_official(self, version: SedaVersion) -> etree.XMLSchema:
        xsd_dir = self.official_dir(version)
        if xsd_dir is None:
            msg = f"official SEDA {version} XSD not installed"
            raise ConfigurationError(msg)
        xsd_dir = xsd_dir.resolve()
        for needed in (xsd_dir / "xml.xsd", xsd_dir / "xlink.xsd"):
            if not needed.is_file():
                msg = (
                    f"cannot compile the SEDA {version} schema offline: {needed} is missing "
                    "(local copies of the W3C xml.xsd and xlink.xsd must sit next to the SEDA XSD)"
                )
                raise ConfigurationError(msg)
        parser = safe_parser()
        parser.resolvers.add(_LocalOnlyResolver(xsd_dir))
        main = xsd_dir / f"seda-{version}-main.xsd"
        try:
            doc = etree.parse(str(main), parser)
            return etree.XMLSchema(doc)
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
            msg = f"cannot compile the official SEDA {version} XSD in {xsd_dir}: {exc}"
            raise ConfigurationError(msg) from exc

    def _compile_profile(self, version: SedaVersion) -> etree.RelaxNG:
        path = self._profile_dir / f"procurement-profile-{version}.rng"
        if not path.is_file():
            msg = f"procurement profile {path} is missing"
            raise ConfigurationError(msg)
        try:
            doc = etree.parse(str(path), safe_parser())
            return etree.RelaxNG(doc)
        except (etree.RelaxNGParseError, etree.XMLSyntaxError) as exc:
            msg = f"cannot compile the procurement profile {path}: {exc}"
            raise ConfigurationError(msg) from exc


class _LocalOnlyResolver(etree.Resolver):
    """W3C schema URLs to the local copies; files inside the schema directory; nothing else."""

    def __init__(self, xsd_dir: Path) -> None:
        super().__init__()
        self._xsd_dir = xsd_dir

    def resolve(  # type: ignore[override]  # lxml-stubs omit the context argument lxml passes
        self, system_url: str | None, public_id: str | None, context: object
    ) -> etree._InputDocument | None:
        if system_url is None:
            return self.resolve_string("", context, base_url=None)
        local = _W3C_SCHEMAS.get(system_url)
        if local is not None:
            path = self._xsd_dir / local
            return self.resolve_string(path.read_bytes(), context, base_url=str(path))
        parsed = urlparse(system_url)
        if parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path) if parsed.scheme else system_url).resolve()
            if path.is_relative_to(self._xsd_dir):
                return None
        return self.resolve_string("", context, base_url=None)


# -- running a validator ------------------------------------------------------------------------


def _shorten(message: str) -> str:
    for ns in SEDA_NS.values():
        message = message.replace(f"{{{ns}}}", "")
    return message.replace(f"{{{EXT_NS}}}", f"{EXT_PREFIX}:")


def _run(compiled: _Compiled, tree: etree._ElementTree, code: str) -> list[Issue]:
    with compiled.lock:
        ok = compiled.validator.validate(tree)
        errors = cast("list[_LogEntry]", list(compiled.validator.error_log))  # type: ignore[call-overload]
    if ok:
        return []
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        location = locate(tree, error.line, error.path)
        message = _shorten(error.message)
        if (message, location) in seen:
            continue
        seen.add((message, location))
        issues.append(Issue(code, message, location))
    if not issues:
        issues.append(Issue(code, "the document does not validate", "line 1"))
    return issues
