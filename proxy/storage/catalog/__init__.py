"""The recording catalog: the one source of truth for recording metadata.

Calls, recordings, segments, consent receipts (P13), recording events (P14), the
do-not-record list and the access log live here; segment files hold audio only.

One module per job:

``interface``          ``Catalog``: the repositories below, and the life cycle
``calls``              calls and their consent receipts
``call_writes``        a call's writes at one moment as one transaction (a unit of work)
``recordings``         recordings, their segments and quality; the state moves
``recording_events``   the events logged inside a running recording
``do_not_record``      the do-not-record list
``access``             the access log
``config_versions``    the configuration versions run under, each change audited
``holds``              holds that keep a recording past its retention
``retention``          which recordings are due for deletion; marking them deleting, deleted
``users``              accounts: users, roles, teams, sessions (token digests), failed logins
``sip_credentials``    users' SIP passwords as digest HA1 values for one realm (registrar)
``parts``              the parts of a recording: one per call taker of a transferred call
``flags``              anomaly flags on unusual access, for the DPO
``access_requests``    access requests and the grants approved from them
``decisions``          what access and bulk requests share: decided once, or withdrawn
``search``             metadata search over recordings, within a person's scope
``bulk``               bulk export requests, for a DPO to approve
``sar``                subject access cases: the recordings found, the DPO's decisions
``siprec``             SIPREC sessions: the recorded session's identifiers, metadata snapshots
``model``, ``errors``  what the repositories take, return and raise
``values``             checks and conversions of what callers give, before any SQL
``rows``               SQLite rows to the model
``migrations``         the versioned schema, applied when the catalog opens
``db``                 the one connection, in its own thread, one transaction per call
``sql_catalog``        ``SqlCatalog``: the repositories on one database, either engine
``sqlite``             ``SqliteCatalog``: the repositories on one SQLite file
``postgres``           ``PostgresCatalog``: the repositories on a PostgreSQL server
                       (imported from its module: psycopg loads only when it is used)
``pg_connection``      the PostgreSQL connection the bodies see as SQLite's
``pg_schema``          the migrations translated for PostgreSQL
``journal``            writes the catalog could not take now, retried in order

Each repository is a small ``Protocol`` with its SQLite implementation, so a
PostgreSQL catalog implements the same protocols without touching callers.
"""

from ...roles import Role
from .access import AccessLog
from .access_requests import AccessRequest, AccessRequestRepository, NewAccessRequest
from .bulk import BulkRequest, BulkRequestRepository, NewBulkRequest
from .call_writes import CallBatch, CallWriteRepository, FirstPart, RecordingEnd
from .calls import CallRepository
from .config_versions import ConfigChange, ConfigVersion, ConfigVersionLog
from .decisions import RequestState, RequestStateError
from .do_not_record import DoNotRecordList
from .errors import (
    CatalogClosedError,
    CatalogError,
    CatalogUnavailableError,
    DuplicateError,
    InvalidFieldError,
    InvalidTransitionError,
    NotFoundError,
    SchemaTooNewError,
)
from .flags import AccessFlag, FlagRepository, FlagStateError, NewFlag
from .holds import Hold, HoldCounts, HoldRefusedError, HoldRepository, NewHold
from .interface import Catalog
from .journal import CatalogJournal, JournalFullError
from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from .model import (
    BY_SYSTEM,
    QUALITY_CHANNELS,
    AccessEntry,
    Attribution,
    Call,
    CallDirection,
    CallKind,
    CallOutcome,
    CallUpdate,
    ChannelQuality,
    ConsentReceipt,
    DoNotRecordEntry,
    EventChannel,
    Expiry,
    NewCall,
    NewRecording,
    NewSegment,
    NoticeMode,
    Recording,
    RecordingAction,
    RecordingEvent,
    RecordingSummary,
    RecordingUpdate,
    Segment,
    SegmentFacts,
    format_utc,
    parse_utc,
)
from .parts import PartRepository, RecordingPart
from .recording_events import RecordingEventLog
from .recordings import RECOVERY_REASON, RecordingRepository
from .retention import Due, Expired, RetentionCounts, RetentionRepository
from .sar import (
    SAR_HOLD_KIND,
    NewSarCase,
    Release,
    SarCase,
    SarCaseError,
    SarCaseRepository,
    SarCounts,
    SarExport,
    SarRecording,
    SarState,
)
from .search import RecordingSearch, Scope, SearchFilters, SearchHit, SearchQuery
from .sip_credentials import SipCredentialRepository, SipCredentials
from .siprec import SiprecParticipant, SiprecRepository, SiprecSession, SiprecSnapshot
from .sql_catalog import SqlCatalog
from .sqlite import SqliteCatalog
from .users import (
    Credentials,
    Lockout,
    NewSession,
    NewUser,
    Session,
    SessionKind,
    User,
    UserRepository,
    UserStateError,
    user_name,
)

__all__ = [
    "BY_SYSTEM",
    "MIGRATIONS",
    "QUALITY_CHANNELS",
    "RECOVERY_REASON",
    "SAR_HOLD_KIND",
    "SCHEMA_VERSION",
    "AccessEntry",
    "AccessFlag",
    "AccessLog",
    "AccessRequest",
    "AccessRequestRepository",
    "Attribution",
    "BulkRequest",
    "BulkRequestRepository",
    "Call",
    "CallBatch",
    "CallDirection",
    "CallKind",
    "CallOutcome",
    "CallRepository",
    "CallUpdate",
    "CallWriteRepository",
    "Catalog",
    "CatalogClosedError",
    "CatalogError",
    "CatalogJournal",
    "CatalogUnavailableError",
    "ChannelQuality",
    "ConfigChange",
    "ConfigVersion",
    "ConfigVersionLog",
    "ConsentReceipt",
    "Credentials",
    "DoNotRecordEntry",
    "DoNotRecordList",
    "Due",
    "DuplicateError",
    "EventChannel",
    "Expired",
    "Expiry",
    "FirstPart",
    "FlagRepository",
    "FlagStateError",
    "Hold",
    "HoldCounts",
    "HoldRefusedError",
    "HoldRepository",
    "InvalidFieldError",
    "InvalidTransitionError",
    "JournalFullError",
    "Lockout",
    "Migration",
    "NewAccessRequest",
    "NewBulkRequest",
    "NewCall",
    "NewFlag",
    "NewHold",
    "NewRecording",
    "NewSarCase",
    "NewSegment",
    "NewSession",
    "NewUser",
    "NotFoundError",
    "NoticeMode",
    "PartRepository",
    "Recording",
    "RecordingAction",
    "RecordingEnd",
    "RecordingEvent",
    "RecordingEventLog",
    "RecordingPart",
    "RecordingRepository",
    "RecordingSearch",
    "RecordingSummary",
    "RecordingUpdate",
    "Release",
    "RequestState",
    "RequestStateError",
    "RetentionCounts",
    "RetentionRepository",
    "Role",
    "SarCase",
    "SarCaseError",
    "SarCaseRepository",
    "SarCounts",
    "SarExport",
    "SarRecording",
    "SarState",
    "SchemaTooNewError",
    "Scope",
    "SearchFilters",
    "SearchHit",
    "SearchQuery",
    "Segment",
    "SegmentFacts",
    "Session",
    "SessionKind",
    "SipCredentialRepository",
    "SipCredentials",
    "SiprecParticipant",
    "SiprecRepository",
    "SiprecSession",
    "SiprecSnapshot",
    "SqlCatalog",
    "SqliteCatalog",
    "User",
    "UserRepository",
    "UserStateError",
    "format_utc",
    "parse_utc",
    "user_name",
]
