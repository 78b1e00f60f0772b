"""Which catalog the configuration names: the SQLite file at ``[catalog] path`` (the
embedded default), or the PostgreSQL server at ``[catalog] url`` (issue 20).  The
composition roots (``app``, ``records_service``, ``cli``) open the catalog through
here, so each of them works on either engine.  The catalog's modules load only when one
is made (the command line starts quickly), and psycopg only for a URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import CatalogSettings

if TYPE_CHECKING:
    from .storage.catalog import SqlCatalog
    from .storage.catalog.db import Synchronous


def make_catalog(
    settings: CatalogSettings, *, synchronous: Synchronous | None = None
) -> SqlCatalog:
    """The configured catalog, not yet opened.  ``synchronous`` overrides the SQLite
    setting (the command line writes with ``FULL``)."""
    if settings.url:
        from .storage.catalog.postgres import PostgresCatalog

        return PostgresCatalog(settings.url)
    from .storage.catalog import SqliteCatalog

    configured: Synchronous = "FULL" if settings.synchronous == "full" else "NORMAL"
    return SqliteCatalog(settings.path, synchronous=synchronous or configured)


def catalog_missing(settings: CatalogSettings) -> bool:
    """True when the catalog is a SQLite file that does not exist yet (a server's
    database is there, or the connection says why not)."""
    return not settings.url and not settings.path.exists()


def catalog_name(settings: CatalogSettings) -> str:
    """How messages name the catalog: its file, or its URL (which holds no password)."""
    return settings.url or str(settings.path)
