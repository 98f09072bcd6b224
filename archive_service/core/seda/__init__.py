"""SEDA 2.3 / 2.2 messages: the byte-stable ``ArchiveTransfer`` builder, the
``ArchiveTransferReply`` builder, validation (the bare official XSD, offline, + our RelaxNG
procurement profile) and a hardened reader of manifests for offline verification.

SEDA: Standard d'échange de données pour l'archivage (SIAF), https://francearchives.gouv.fr/seda/.
"""

from archive_service.core.seda.builder import build_archive_transfer
from archive_service.core.seda.names import (
    ARCHIVAL_PROFILE_ID,
    CATEGORY_SCHEME,
    EXT_NS,
    REFERENTIAL_CODE_LIST,
    SEDA_NS,
    SedaVersion,
)
from archive_service.core.seda.parse import ParsedDataObject, ParsedManifest, read_manifest
from archive_service.core.seda.reply import build_transfer_reply
from archive_service.core.seda.validate import SedaValidator, detect_version, profile_dir

__all__ = [
    "ARCHIVAL_PROFILE_ID",
    "CATEGORY_SCHEME",
    "EXT_NS",
    "REFERENTIAL_CODE_LIST",
    "SEDA_NS",
    "ParsedDataObject",
    "ParsedManifest",
    "SedaValidator",
    "SedaVersion",
    "build_archive_transfer",
    "build_transfer_reply",
    "detect_version",
    "profile_dir",
    "read_manifest",
]
