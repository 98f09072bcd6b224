"""Format identification on real files: libmagic MIME + Siegfried PRONOM id (DESIGN §3 step 2).

The files are generated with the libraries that make them in real life (reportlab,
python-docx, openpyxl, zipfile); the expected PUIDs are those of the embedded PRONOM signature
files (feasibility.md §3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archive_service.core.model import FormatInfo
from archive_service.formats.identify import MAGIC_BATCH, MagicSiegfriedIdentifier
from tests.fixtures.dossier import (
    csv_bytes,
    docx_bytes,
    make_dossier,
    make_large_file,
    odt_bytes,
    pdf_bytes,
    xlsx_bytes,
    xml_notice_bytes,
    zip_bytes,
)

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT_MIME = "application/vnd.oasis.opendocument.text"

TEXT = ["Le titulaire s'engage à respecter les prescriptions du présent cahier."]

SAMPLES: dict[str, Callable[[], bytes]] = {
    "RC.pdf": lambda: pdf_bytes(title="Règlement de la consultation", paragraphs=TEXT),
    "ATTRI1.pdf": lambda: pdf_bytes(title="Acte d'engagement", paragraphs=TEXT, pdfa1b=True),
    "CCTP.docx": lambda: docx_bytes(title="CCTP", paragraphs=TEXT),
    "DPGF.xlsx": lambda: xlsx_bytes(title="DPGF", header=["N°", "Prix"], rows=[["1", 10.5]]),
    "offre.zip": lambda: zip_bytes([("offre.pdf", pdf_bytes(title="Offre", paragraphs=TEXT))]),
    "avis.xml": lambda: xml_notice_bytes({"objet": "Construction d'un gymnase"}),
    "grille.csv": lambda: csv_bytes(["Candidat", "Note"], [["Entreprise A", "92,5"]]),
    "notes.txt": lambda: "Compte rendu de la réunion de chantier n° 3.\n".encode(),
    "memoire.odt": lambda: odt_bytes(title="Mémoire technique", paragraphs=TEXT),
}

# name -> (libmagic MIME, PUID, format version or None)
EXPECTED: dict[str, tuple[str, str, str | None]] = {
    "RC.pdf": ("application/pdf", "fmt/18", "1.4"),
    "ATTRI1.pdf": ("application/pdf", "fmt/354", "1b"),
    "CCTP.docx": (DOCX_MIME, "fmt/412", "2007 onwards"),
    "DPGF.xlsx": (XLSX_MIME, "fmt/214", "2007 onwards"),
    "offre.zip": ("application/zip", "x-fmt/263", None),
    "avis.xml": ("text/xml", "fmt/101", "1.0"),
    "grille.csv": ("text/plain", "x-fmt/18", None),
    "notes.txt": ("text/plain", "x-fmt/111", None),
    "memoire.odt": (ODT_MIME, "fmt/291", "1.2"),
}


@pytest.fixture(scope="module")
def identifier() -> MagicSiegfriedIdentifier:
    return MagicSiegfriedIdentifier()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for name, make in SAMPLES.items():
        path = root / name
        path.write_bytes(make())
        out[name] = path
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_identifies_real_files(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path], name: str
) -> None:
    mime, puid, version = EXPECTED[name]
    info = identifier.identify(samples[name], filename=name, declared_mime=mime)
    assert (info.mime_type, info.puid, info.format_version) == (mime, puid, version)
    assert info.format_name
    assert info.basis
    assert info.declared_mime == mime and not info.declared_mismatch


def test_basis_says_how_the_match_was_made(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path]
) -> None:
    docx = identifier.identify(samples["CCTP.docx"], filename="CCTP.docx", declared_mime=None)
    assert docx.basis is not None and "container name [Content_Types].xml" in docx.basis
    pdf = identifier.identify(samples["RC.pdf"], filename="RC.pdf", declared_mime=None)
    assert pdf.basis is not None and "byte match" in pdf.basis
    csv = identifier.identify(samples["grille.csv"], filename="grille.csv", declared_mime=None)
    # A CSV is recognised by its extension only, and the result says so.
    assert csv.basis is not None and "match on extension only" in csv.basis


def test_staged_file_without_extension_uses_the_senders_file_name(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path], tmp_path: Path
) -> None:
    for name in ("grille.csv", "CCTP.docx", "RC.pdf", "notes.txt"):
        staged = tmp_path / f"obj-{name.split('.')[0]}"
        staged.write_bytes(samples[name].read_bytes())
        info = identifier.identify(staged, filename=name, declared_mime=None)
        assert info.puid == EXPECTED[name][1], (name, info)
        assert info.basis is not None and "extension mismatch" not in info.basis
    # Upper-case extensions are extensions too.
    staged = tmp_path / "obj-upper"
    staged.write_bytes(samples["grille.csv"].read_bytes())
    assert identifier.identify(staged, filename="GRILLE.CSV", declared_mime=None).puid == "x-fmt/18"
    # No temporary link is left next to the staged files.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["obj-grille", "obj-CCTP", "obj-RC", "obj-notes", "obj-upper"]
    )


def test_declared_mime_mismatch_is_kept(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path]
) -> None:
    info = identifier.identify(
        samples["CCTP.docx"], filename="CCTP.docx", declared_mime="application/pdf"
    )
    assert info.mime_type == DOCX_MIME and info.puid == "fmt/412"
    assert info.declared_mime == "application/pdf"
    assert info.declared_mismatch


def test_a_pdf_named_docx_is_a_pdf_with_a_warning(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path]
) -> None:
    info = identifier.identify(samples["RC.pdf"], filename="offre.docx", declared_mime=DOCX_MIME)
    assert info.mime_type == "application/pdf" and info.puid == "fmt/18"
    assert info.basis is not None and "extension mismatch" in info.basis
    assert info.declared_mismatch


def test_unknown_bytes_have_no_puid(identifier: MagicSiegfriedIdentifier, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    make_large_file(path, 4096, seed=1)
    info = identifier.identify(path, filename="blob", declared_mime=None)
    assert info == FormatInfo(mime_type="application/octet-stream", basis="no match")


def test_truncated_pdf_is_not_a_pdf_for_siegfried(
    identifier: MagicSiegfriedIdentifier, tmp_path: Path
) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"%PDF-1.4\nhello")
    info = identifier.identify(path, filename="broken.docx", declared_mime=None)
    assert info.mime_type == "application/pdf"  # libmagic only reads the header
    assert info.puid is None
    assert info.basis is not None and "fmt/412" in info.basis  # the extension's candidates


def test_empty_file(identifier: MagicSiegfriedIdentifier, tmp_path: Path) -> None:
    path = tmp_path / "vide.txt"
    path.write_bytes(b"")
    info = identifier.identify(path, filename="vide.txt", declared_mime="text/plain")
    assert info.mime_type == "application/octet-stream"
    assert info.puid is None
    assert info.basis == "siegfried error: empty source"
    assert info.declared_mime == "text/plain"


def test_missing_file_is_an_error(identifier: MagicSiegfriedIdentifier, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        identifier.identify(tmp_path / "absent.pdf", filename="absent.pdf", declared_mime=None)


def test_identify_many_matches_identify_in_order(
    identifier: MagicSiegfriedIdentifier, tmp_path: Path
) -> None:
    metadata, paths = make_dossier(tmp_path)
    names = [entry["path"] for entry in metadata["files"]]
    batch = identifier.identify_many(paths + paths[:2], filenames=names + names[:2])
    single = [
        identifier.identify(p, filename=n, declared_mime=None)
        for p, n in zip(paths, names, strict=True)
    ]
    assert batch[: len(paths)] == single
    assert batch[len(paths) :] == single[:2]
    by_name = dict(zip(names, single, strict=True))
    assert by_name["7-Attribution/acte_engagement.pdf"].puid == "fmt/354"
    assert by_name["5-Offres/Entreprise-B/offre.zip"].puid == "x-fmt/263"
    assert by_name["3-Publicite/avis_boamp.xml"].puid == "fmt/101"
    assert identifier.identify_many([]) == []
    with pytest.raises(ValueError):
        identifier.identify_many(paths, filenames=names[:1])


def test_parallel_workers_give_the_same_answers(tmp_path: Path) -> None:
    metadata, paths = make_dossier(tmp_path)
    names = [entry["path"] for entry in metadata["files"]]
    paths, names = paths * 2, names * 2  # a batch large enough for libmagic's threads
    assert len(paths) >= MAGIC_BATCH
    serial = MagicSiegfriedIdentifier(magic_threads=1).identify_many(paths, filenames=names)
    parallel = MagicSiegfriedIdentifier(workers=4).identify_many(paths, filenames=names)
    assert parallel == serial
    assert MagicSiegfriedIdentifier(magic_threads=3).identify_many(paths, filenames=names) == serial


def test_threads_share_one_identifier(
    identifier: MagicSiegfriedIdentifier, samples: dict[str, Path]
) -> None:
    names = sorted(EXPECTED) * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda n: identifier.identify(samples[n], filename=n, declared_mime=None), names
            )
        )
    assert [(r.mime_type, r.puid) for r in results] == [EXPECTED[n][:2] for n in names]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_first_use_from_many_threads_in_a_fresh_process(samples: dict[str, Path]) -> None:
    # The lazy loading of Siegfried happens once, even when threads race for it.
    result = _run_python(
        f"""
        import sys, threading
        from pathlib import Path
        from archive_service.formats import identify
        assert "pygfried" not in sys.modules, "pygfried must be imported lazily"
        ident = identify.MagicSiegfriedIdentifier()
        path = Path({str(samples["CCTP.docx"])!r})
        barrier = threading.Barrier(8)
        out = []
        def run():
            barrier.wait()
            out.append(ident.identify(path, filename="CCTP.docx", declared_mime=None).puid)
        threads = [threading.Thread(target=run) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        scanner = identify._scanner
        print(sorted(set(out)), len(out), scanner is identify._siegfried())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['fmt/412'] 8 True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_refuses_the_inherited_go_runtime(samples: dict[str, Path]) -> None:
    result = _run_python(
        f"""
        import os
        from pathlib import Path
        from archive_service.errors import ConfigurationError
        from archive_service.formats.identify import MagicSiegfriedIdentifier
        ident = MagicSiegfriedIdentifier()
        path = Path({str(samples["RC.pdf"])!r})
        ident.identify(path, filename="RC.pdf", declared_mime=None)
        pid = os.fork()
        if pid == 0:
            try:
                ident.identify(path, filename="RC.pdf", declared_mime=None)
                os._exit(3)
            except ConfigurationError:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
