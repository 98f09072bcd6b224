"""SEDA versions, namespaces and the fixed vocabulary the builder writes.

SEDA 2.x changes its namespace with every version (``fr:gouv:culture:archivesdefrance:seda:v2.3``
for 2.3), so the root element's namespace *is* the version. The few technical facts SEDA has no
element for are written in the project's own namespace ``urn:archive-service:seda-ext:1`` (prefix
``ase``), and only under ``BinaryDataObject/OtherMetadata``: its type is an ``OpenType`` whose
content is ``xs:any namespace="##other" processContents="lax"``, so the bare official XSD accepts
them without any schema of ours. Nothing of ours appears anywhere else (no substitute of an
abstract SEDA element): our manifests validate against the unmodified official XSD alone.
"""

from __future__ import annotations

from typing import Final, Literal, cast

SedaVersion = Literal["2.2", "2.3"]

SEDA_VERSIONS: Final[tuple[SedaVersion, ...]] = ("2.2", "2.3")

SEDA_NS: Final[dict[SedaVersion, str]] = {
    "2.2": "fr:gouv:culture:archivesdefrance:seda:v2.2",
    "2.3": "fr:gouv:culture:archivesdefrance:seda:v2.3",
}
VERSION_BY_NS: Final[dict[str, SedaVersion]] = {ns: v for v, ns in SEDA_NS.items()}

#: The project's extension namespace and its fixed prefix.
EXT_NS: Final = "urn:archive-service:seda-ext:1"
EXT_PREFIX: Final = "ase"

#: Identifier of our archival profile (``ManagementMetadata/ArchivalProfile``): the RelaxNG
#: files ``seda_schemas/procurement-profile-<version>.rng``.
ARCHIVAL_PROFILE_ID: Final = "archive-service:procurement-profile:1"

#: ``DataObjectVersion`` of every archived file: the original as received (SEDA
#: ``DataObjectVersionCodeList``: ``BinaryMaster`` usage, version 1).
DATA_OBJECT_VERSION: Final = "BinaryMaster_1"

#: The code list the ``Rule`` ids of ``AppraisalRule`` and ``AccessRule`` come from: our retention
#: référentiel (``archive_service.core.retention``). Named in ``CodeListVersions`` as
#: ``AppraisalRuleCodeListVersion`` and ``AccessRuleCodeListVersion`` unless the caller names a
#: more precise one (e.g. with the référentiel's version), see ``build_archive_transfer``.
REFERENTIAL_CODE_LIST: Final = "archive-service:retention-referential"

#: ``schemeID`` of the ``KeywordReference`` that holds a unit's document category code
#: (``offres.non_retenue``…, ``archive_service.core.procurement.CATEGORIES``).
CATEGORY_SCHEME: Final = "archive-service:document-categories"


def transfer_code_lists(rule_code_list: str) -> tuple[tuple[str, str], ...]:
    """``CodeListVersions`` of an ``ArchiveTransfer`` we build, in XSD order
    (``MessageDigestAlgorithm``, ``MimeType``, ``FileFormat``, ``DataObjectVersion``,
    ``AppraisalRule``, ``AccessRule``)."""
    return (
        ("MessageDigestAlgorithmCodeListVersion", "archive-service:digest-algorithms:1"),
        ("MimeTypeCodeListVersion", "IANA:media-types"),
        ("FileFormatCodeListVersion", "PRONOM"),
        ("DataObjectVersionCodeListVersion", "archive-service:data-object-versions:1"),
        ("AppraisalRuleCodeListVersion", rule_code_list),
        ("AccessRuleCodeListVersion", rule_code_list),
    )


#: ``CodeListVersions`` of an ``ArchiveTransferReply``.
REPLY_CODE_LISTS: Final[tuple[tuple[str, str], ...]] = (
    ("ReplyCodeListVersion", "archive-service:reply-codes:1"),
)


def seda(version: SedaVersion, local: str) -> str:
    """Clark name ``{namespace}local`` of a SEDA element in ``version``."""
    return f"{{{SEDA_NS[version]}}}{local}"


def ext(local: str) -> str:
    """Clark name of an element in the project's extension namespace."""
    return f"{{{EXT_NS}}}{local}"


def nsmap(mapping: dict[str | None, str]) -> dict[str, str]:
    """An lxml ``nsmap``: ``None`` is the default namespace (lxml-stubs only allow ``str`` keys)."""
    return cast("dict[str, str]", mapping)
