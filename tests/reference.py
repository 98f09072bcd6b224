"""Where tests find reference data that lives outside the project (../shared).

Outside CI a missing reference skips the test with the reason; with ``CI=true`` it fails,
since nothing that matters may be skipped there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(path: Path, what: str, env: str) -> Path:
    if path.exists():
        return path
    reason = f"{what} not found at {path} (set {env})"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def seda_xsd_dir() -> Path:
    """Directory with the official SEDA XSDs (sub-directories 2.2 and 2.3)."""
    env = "ARCHIVE_SEDA_XSD_DIR"
    path = Path(os.environ.get(env) or SHARED / "seda")
    return require(path / "2.3" / "seda-2.3-main.xsd", "official SEDA 2.3 XSD", env).parent.parent


def decp_schema_path() -> Path:
    env = "ARCHIVE_DECP_SCHEMA"
    path = Path(os.environ.get(env) or SHARED / "decp" / "schema_decp_v2.0.3.json")
    return require(path, "official DECP 2.0.3 JSON schema", env)


def seda_examples_dir() -> Path:
    env = "ARCHIVE_SEDA_EXAMPLES_DIR"
    path = Path(os.environ.get(env) or SHARED / "seda" / "examples")
    return require(path, "SEDA example transfers", env)


def official_schema(version: str = "2.3") -> object:
    """The bare official SEDA XSD of ``version``, compiled offline: the auditor's view."""
    from lxml import etree

    directory = seda_xsd_dir() / version
    local = {
        "http://www.w3.org/2001/xml.xsd": directory / "xml.xsd",
        "http://www.w3.org/1999/xlink.xsd": directory / "xlink.xsd",
    }

    class Resolver(etree.Resolver):
        def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
            if url in local:
                return self.resolve_filename(str(local[url]), context)
            return None

    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(Resolver())
    doc = etree.parse(str(directory / f"seda-{version}-main.xsd"), parser)
    return etree.XMLSchema(doc)
