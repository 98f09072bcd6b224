"""Full-text search in French, as an archivist uses it, on PostgreSQL and on SQLite.

Both adapters promise the same (``GET /v1/archive-units?q=``): accents and case ignored, each
word a prefix, all words required, the user's text never read as query syntax, one tenant's
dossiers only. PostgreSQL also stems French words (``french`` configuration after
``unaccent``): « nettoyages » finds « nettoyage », which SQLite does not.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.pool import NullPool

from archive_service.config import Settings
from archive_service.db.migrate import upgrade
from archive_service.db.uow import POOL_SIZE, make_engine, uow_factory
from archive_service.ports import SearchQuery
from archive_service.search.postgres_fts import PostgresFtsIndex, tsquery
from archive_service.search.sqlite_fts import SqliteFtsIndex
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env, only_postgresql

SPORTS_TITLE = "Equipements sportifs du complexe des Tilleuls"


def ingest(env: Env, root: Path, *, contract_type: str, title: str | None = None) -> str:
    metadata, _ = make_dossier(
        root, contract_type=contract_type, message_identifier=f"FTS-{contract_type}"
    )
    if title is not None:
        metadata["title"] = title
    r = env.post_transfer(metadata, root)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    return str(done["archive_unit_id"])


def search(env: Env, q: str, *, other_tenant: bool = False) -> list[str]:
    r = env.http.get(
        "/v1/archive-units",
        params={"q": q},
        headers=env.auth("archivist", other_tenant=other_tenant),
    )
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


@pytest.fixture
def dossiers(env: Env, tmp_path: Path) -> tuple[str, str]:
    """Supplies titled « Equipements sportifs… » and the town hall cleaning services."""
    sports = ingest(env, tmp_path / "sports", contract_type="F", title=SPORTS_TITLE)
    cleaning = ingest(env, tmp_path / "cleaning", contract_type="S")
    return sports, cleaning


def test_accents_case_and_plural_are_ignored(env: Env, dossiers: tuple[str, str]) -> None:
    sports, cleaning = dossiers
    assert search(env, "équipement") == [sports]
    assert search(env, "ÉQUIPEMENTS") == [sports]
    assert search(env, "equipement") == [sports]
    assert search(env, "hôtel") == search(env, "hotel") == [cleaning]
    assert search(env, "ecoles") == search(env, "écoles") == [sports]  # a keyword


def test_every_word_is_a_prefix_and_all_are_required(env: Env, dossiers: tuple[str, str]) -> None:
    sports, cleaning = dossiers
    assert search(env, "équip sport") == [sports]
    assert search(env, "Tilleul") == [sports]
    assert search(env, "équipement nettoyage") == []
    assert search(env, "nettoyage") == [cleaning]
    assert search(env, "introuvablexyz") == []


def test_user_text_is_never_query_syntax(env: Env, dossiers: tuple[str, str]) -> None:
    sports, _ = dossiers
    # Operators of FTS5 and of tsquery are plain punctuation here: only the words count.
    assert search(env, '"équipement*" & (sportifs | !tilleuls) : \'x') == []
    assert search(env, '"équipement*" & (sportifs | !tilleuls)') == [sports]
    assert search(env, "équipement OR nettoyage") == []
    assert search(env, "NEAR(équipement sportifs) -") == []
    assert search(env, "&|!:*()'\"") == []
    assert search(env, "équipement", other_tenant=True) == []


@only_postgresql()
def test_postgres_stems_french_words(env: Env, dossiers: tuple[str, str]) -> None:
    sports, cleaning = dossiers
    # Words no indexed word starts with (SQLite finds nothing), found by their French stem.
    assert search(env, "nettoyages") == [cleaning]
    assert search(env, "hôtels") == [cleaning]
    assert search(env, "complexes") == [sports]
    # Its configuration removes accents before stemming: unaccent is there.
    with env.services.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'"))
        assert conn.scalar(text("SELECT to_tsvector('archive_french', 'Équipé')::text")) == (
            "'equip':1"
        )


@only_postgresql()
def test_without_unaccent_the_migration_warns_and_search_still_works(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A database owner who may not create extensions (no CREATE on the database) still gets
    French search; only accents count. The migration says so instead of failing."""
    url = make_url(settings.resolved_database_url)
    role = f"archive_limited_{secrets.token_hex(4)}"
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
    try:
        engine = make_engine(url.set(username=role).render_as_string(hide_password=False))
        try:
            with caplog.at_level(logging.WARNING):
                upgrade(engine)
            assert "cannot create the unaccent extension" in caplog.text
            with engine.connect() as conn:
                stems = "SELECT to_tsvector('archive_french', 'Équipements')::text"
                assert conn.scalar(text(stems)) == "'équip':1"
                assert not conn.scalar(
                    text("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'")
                )
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_reindexing_replaces_what_was_indexed(env: Env, dossiers: tuple[str, str]) -> None:
    sports, _ = dossiers
    tenant = env.services.tenancy.authenticate(env.keys["archivist"]).tenant_id
    engine = env.services.engine
    index = PostgresFtsIndex if engine.dialect.name == "postgresql" else SqliteFtsIndex
    with uow_factory(engine, index)() as uow:
        unit = uow.archive.get_unit(tenant, sports)
        assert unit is not None
        uow.search.index_unit(unit, body="Marché de piscine", keywords="natation")
        uow.commit()
    assert search(env, "piscine natation") == [sports]
    assert search(env, "mobilier") == []  # what the first indexing held is gone
    with uow_factory(engine, index)() as uow:
        page = uow.search.search(SearchQuery(tenant_id=tenant, text="Équipements natation"))
    assert page.unit_ids == (sports,)


def test_tsquery_binds_every_word() -> None:
    expr = tsquery("gymnase' | !jean:* &")
    assert expr is not None
    compiled = expr.compile(dialect=postgresql.dialect())
    assert "gymnase" not in str(compiled) and "jean" not in str(compiled)
    assert sorted(set(compiled.params.values())) == ["'gymnase':*", "'jean':*"]
    assert tsquery(" ,;:!& ") is None


def test_a_bare_postgresql_url_uses_psycopg() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
    finally:
        engine.dispose()
