"""``Catalog``: what the proxy needs from a metadata store, as one repository per
aggregate.  Callers take a ``Catalog`` (or just the repository they use); only the
composition roots (``app.py``, ``cli.py``) and tests name an implementation, so a
PostgreSQL catalog is a new implementation of these protocols, not a change to callers.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from .access import AccessLog
from .access_requests import AccessRequestRepository
from .audit import AuditLog
from .bulk import BulkRequestRepository
from .call_writes import CallWriteRepository
from .calls import CallRepository
from .config_versions import ConfigVersionLog
from .do_not_record import DoNotRecordList
from .flags import FlagRepository
from .holds import HoldRepository
from .parts import PartRepository
from .recording_events import RecordingEventLog
from .recordings import RecordingRepository
from .retention import RetentionRepository
from .sar import SarCaseRepository
from .search import RecordingSearch
from .sip_credentials import SipCredentialRepository
from .siprec import SiprecRepository
from .users import UserRepository


class Catalog(Protocol):
    """The catalog's repositories, and its life cycle."""

    @property
    def calls(self) -> CallRepository: ...

    @property
    def recordings(self) -> RecordingRepository: ...

    @property
    def events(self) -> RecordingEventLog: ...

    @property
    def do_not_record(self) -> DoNotRecordList: ...

    @property
    def access(self) -> AccessLog: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def config_versions(self) -> ConfigVersionLog: ...

    @property
    def holds(self) -> HoldRepository: ...

    @property
    def retention(self) -> RetentionRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def parts(self) -> PartRepository: ...

    @property
    def flags(self) -> FlagRepository: ...

    @property
    def access_requests(self) -> AccessRequestRepository: ...

    @property
    def search(self) -> RecordingSearch: ...

    @property
    def bulk(self) -> BulkRequestRepository: ...

    @property
    def sar(self) -> SarCaseRepository: ...

    @property
    def siprec(self) -> SiprecRepository: ...

    @property
    def sip_credentials(self) -> SipCredentialRepository: ...

    @property
    def call_writes(self) -> CallWriteRepository: ...

    async def schema_version(self) -> int: ...

    async def open(self) -> Self: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
