"""Settings read from the environment under the names the README documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive_service.config import Settings


@pytest.mark.parametrize("name", ["ARCHIVE_DECP_SCHEMA", "ARCHIVE_DECP_SCHEMA_PATH"])
def test_the_decp_schema_is_read_under_its_documented_name(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ARCHIVE_DECP_SCHEMA", raising=False)
    monkeypatch.delenv("ARCHIVE_DECP_SCHEMA_PATH", raising=False)
    monkeypatch.setenv(name, str(tmp_path / "schema_decp_v2.0.3.json"))
    assert Settings().decp_schema_path == tmp_path / "schema_decp_v2.0.3.json"


def test_the_decp_schema_can_be_given_by_field_name(tmp_path: Path) -> None:
    assert Settings(decp_schema_path=tmp_path / "s.json").decp_schema_path == tmp_path / "s.json"
