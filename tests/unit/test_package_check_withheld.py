"""``check_package`` with a ``WITHHELD.json`` (what ``get`` writes when the server refused some
objects): an absent object the list names is *withheld* — never a pass, never a plain
"missing" — and the list itself must be well formed and name only objects of the manifest."""

from __future__ import annotations

import json

import pytest

from archive_service.core.model import VerificationReport
from archive_service.core.package_check import (
    WITHHELD_CHECK,
    check_package,
    is_withheld,
    read_withheld,
)
from archive_service.tsa.builtin import BuiltinTimestampAuthority
from tests.unit.test_package_check import FixedClock, Package, build_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return build_package(
        BuiltinTimestampAuthority(tmp_path_factory.mktemp("tsa"), clock=FixedClock())
    )


def listing(*entries: tuple[str, str]) -> bytes:
    return json.dumps(
        {"objects": [{"uri": uri, "summary": why, "withheld": "x"} for uri, why in entries]}
    ).encode()


def check(package: Package, files: dict[str, bytes], withheld: bytes | None) -> VerificationReport:
    return check_package(
        package.manifest,
        package.token,
        package.chain,
        Package(None, None, None, files).open_object,
        content_listing=list(files),
        withheld_list=withheld,
    )


def test_an_absent_object_the_list_names_is_withheld_not_missing(package: Package) -> None:
    kept, gone = sorted(package.files)
    why = "not communicable until 2050-03-01: Secret des affaires (MP-ACC-SA-25A)"
    report = check(package, {kept: package.files[kept]}, listing((gone, why)))

    assert not report.ok  # incomplete: never a pass
    (line,) = report.failures
    assert is_withheld(line) and line.name.startswith(WITHHELD_CHECK)
    assert line.subject == gone and why in line.found
    assert not any(c.name.startswith("3.1") and c.subject == gone for c in report.checks)
    # The object that is there is checked in full, and the list is accepted (check 5).
    assert {c.name.split(" ")[0] for c in report.checks if c.subject == kept} >= {"3.1", "3.3"}
    assert any(c.name.startswith("5.") and c.ok for c in report.checks)


def test_a_listed_object_that_is_present_is_verified_as_usual(package: Package) -> None:
    uri = sorted(package.files)[0]
    report = check(package, package.files, listing((uri, "stale claim")))
    assert report.ok
    altered = {**package.files, uri: package.files[uri] + b"x"}
    report = check(package, altered, listing((uri, "stale claim")))
    assert [c.name.split(" ")[0] for c in report.failures] == ["3.2", "3.3", "3.4"]
    assert not any(is_withheld(c) for c in report.checks)


def test_an_absent_object_the_list_does_not_name_is_missing(package: Package) -> None:
    kept, gone = sorted(package.files)
    report = check(package, {kept: package.files[kept]}, listing())
    (line,) = report.failures
    assert line.name.startswith("3.1") and line.subject == gone and line.found == "missing"
    assert not is_withheld(line)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"{oops", "not JSON"),
        (b'{"objects": {}}', 'no "objects" list'),
        (b'{"objects": [{"uri": "content/x"}]}', 'objects[0] has no "uri" and "summary"'),
        (listing(("content/obj-invente", "made up")), "unknown: content/obj-invente"),
    ],
)
def test_a_bad_list_fails_check_5(package: Package, data: bytes, found: str) -> None:
    report = check(package, package.files, data)
    (line,) = report.failures
    assert line.name.startswith("5.") and found in line.found and not is_withheld(line)


def test_read_withheld_maps_uri_to_summary() -> None:
    assert read_withheld(listing(("content/a", "why a"), ("content/b", "why b"))) == {
        "content/a": "why a",
        "content/b": "why b",
    }
