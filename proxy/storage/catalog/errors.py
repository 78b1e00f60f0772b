"""What the catalog raises.  Every error is a ``CatalogError``; the subclasses say whose
fault it is: the database's (``CatalogUnavailableError``: try again later), the
caller's (``InvalidFieldError``, ``InvalidTransitionError``, ``CatalogClosedError``) or
the data's (``NotFoundError``, ``DuplicateError``, ``SchemaTooNewError``)."""

from __future__ import annotations


class CatalogError(Exception):
    """Base class of every error raised by the catalog."""


class SchemaTooNewError(CatalogError):
    """The database was migrated by newer code than this; refuse to touch it."""


class CatalogUnavailableError(CatalogError):
    """The database did not take the operation (locked past the busy timeout, read-only,
    disk full, an I/O error): nothing was changed, and the same call may succeed later."""


class CatalogClosedError(CatalogError):
    """The catalog was used before ``open()`` or after ``close()``."""


class NotFoundError(CatalogError, LookupError):
    """The call, recording or segment named does not exist."""


class DuplicateError(CatalogError):
    """A row with that identity already exists."""


class InvalidFieldError(CatalogError, ValueError):
    """A value given to the catalog is malformed or out of range (our caller's bug)."""


class InvalidTransitionError(CatalogError, ValueError):
    """A recording state change that the state machine does not allow."""
