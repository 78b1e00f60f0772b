"""The catalog's schema: numbered migrations, applied in order when the catalog opens.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its row
in ``schema_migrations``, so it is applied whole or not at all, and exactly once even
when several processes open the file at the same moment.  A database migrated by newer
code (a version this code does not know) is refused with ``SchemaTooNewError`` and left
untouched.

The statements of a released migration never change: a database made by any earlier
recproxy must upgrade to the very schema a new database gets (the tests compare the two
against a database written by the code before the catalog became a package).  A new
table or column is a new migration at the end of ``MIGRATIONS``.

The same migrations build the PostgreSQL catalog: :mod:`.pg_schema` translates each
statement by a few rules, and a migration that rebuilds a SQLite table gives its
PostgreSQL statements itself (``postgresql``).  There every migration's transaction is a
write transaction, which takes the catalog's advisory lock first (:mod:`.db`), so two
nodes starting at once apply each migration exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .db import Connection, dialect, one, rows, transaction
from .errors import InvalidFieldError, SchemaTooNewError
from .pg_schema import translate_statement


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its statements run in one transaction, then it is recorded.
    ``postgresql``: the statements on PostgreSQL, given only where the SQLite ones
    rebuild a table (otherwise they are translated)."""

    version: int
    name: str
    statements: tuple[str, ...]
    postgresql: tuple[str, ...] | None = None

    def statements_for(self, conn: Connection) -> tuple[str, ...]:
        if dialect(conn) == "sqlite":
            return self.statements
        if self.postgresql is not None:
            return self.postgresql
        return tuple(s for statement in self.statements for s in translate_statement(statement))


_MIGRATION_1 = Migration(
    1,
    "calls, recordings, segments, consent receipts, recording events",
    (
        """
        CREATE TABLE calls (
            id              TEXT PRIMARY KEY,
            sip_call_id     TEXT NOT NULL,
            caller          TEXT NOT NULL,
            callee          TEXT NOT NULL,
            direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            service         TEXT,
            operator        TEXT,
            started_at      INTEGER NOT NULL,
            answered_at     INTEGER,
            bridged_at      INTEGER,
            ended_at        INTEGER,
            outcome         TEXT,
            config_version  TEXT
        )
        """,
        "CREATE INDEX calls_by_caller ON calls (caller, started_at)",
        "CREATE INDEX calls_by_sip_call_id ON calls (sip_call_id)",
        "CREATE INDEX calls_by_started_at ON calls (started_at)",
        """
        CREATE TABLE recordings (
            id                  TEXT PRIMARY KEY,
            call_id             TEXT NOT NULL REFERENCES calls (id),
            state               TEXT NOT NULL,
            directory           TEXT NOT NULL UNIQUE,
            encoding            TEXT NOT NULL,
            sample_rate         INTEGER NOT NULL CHECK (sample_rate > 0),
            channels            INTEGER NOT NULL CHECK (channels > 0),
            started_at          INTEGER NOT NULL,
            ended_at            INTEGER,
            duration_ms         INTEGER CHECK (duration_ms >= 0),
            failure_reason      TEXT,
            wrapped_key_sha256  TEXT,
            discarded_by        TEXT,
            discarded_reason    TEXT,
            discarded_at        INTEGER
        )
        """,
        "CREATE INDEX recordings_by_state ON recordings (state, started_at)",
        "CREATE INDEX recordings_by_call ON recordings (call_id)",
        """
        CREATE TABLE segments (
            recording_id    TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            segment_index   INTEGER NOT NULL CHECK (segment_index >= 0),
            file_name       TEXT NOT NULL,
            chunks          INTEGER NOT NULL DEFAULT 0 CHECK (chunks >= 0),
            first_frame     INTEGER NOT NULL CHECK (first_frame >= 0),
            frames          INTEGER NOT NULL DEFAULT 0 CHECK (frames >= 0),
            size_bytes      INTEGER NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
            sha256          TEXT,
            closed          INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1)),
            PRIMARY KEY (recording_id, segment_index),
            UNIQUE (recording_id, file_name)
        )
        """,
        """
        CREATE TABLE consent_receipts (
            call_id                     TEXT PRIMARY KEY REFERENCES calls (id),
            mode                        TEXT NOT NULL,
            notice_sha256               TEXT,
            notice_version              TEXT,
            started_at                  INTEGER,
            played_ms                   INTEGER NOT NULL CHECK (played_ms >= 0),
            notice_ms                   INTEGER NOT NULL CHECK (notice_ms >= 0),
            completed                   INTEGER NOT NULL CHECK (completed IN (0, 1)),
            caller_left_during_notice   INTEGER NOT NULL
                                        CHECK (caller_left_during_notice IN (0, 1)),
            do_not_record               INTEGER NOT NULL CHECK (do_not_record IN (0, 1))
        )
        """,
        """
        CREATE TABLE recording_events (
            id              INTEGER PRIMARY KEY,
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            at              INTEGER NOT NULL,
            action          TEXT NOT NULL,
            actor           TEXT,
            channel         TEXT NOT NULL,
            reason          TEXT
        )
        """,
        "CREATE INDEX recording_events_by_recording ON recording_events (recording_id, at, id)",
    ),
)

_MIGRATION_2 = Migration(
    2,
    "access log: who read a recording, when and why",
    (
        """
        CREATE TABLE access_log (
            id              INTEGER PRIMARY KEY,
            at              INTEGER NOT NULL,
            actor           TEXT NOT NULL,
            action          TEXT NOT NULL,
            recording_id    TEXT REFERENCES recordings (id),
            reason          TEXT NOT NULL,
            detail          TEXT
        )
        """,
        "CREATE INDEX access_log_by_recording ON access_log (recording_id, at, id)",
        "CREATE INDEX access_log_by_actor ON access_log (actor, at)",
    ),
)

_MIGRATION_3 = Migration(
    3,
    "do-not-record list (P14): numbers from written requests",
    (
        """
        CREATE TABLE do_not_record (
            number          TEXT PRIMARY KEY,
            reference       TEXT NOT NULL,
            added_by        TEXT NOT NULL,
            added_at        INTEGER NOT NULL
        )
        """,
    ),
)

_MIGRATION_4 = Migration(
    4,
    "recording quality: frames filled per channel, and why a recording is degraded",
    (
        """
        CREATE TABLE recording_quality (
            recording_id    TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            channel         TEXT NOT NULL CHECK (channel IN ('caller', 'call_taker')),
            frames          INTEGER NOT NULL CHECK (frames >= 0),
            lost_frames     INTEGER NOT NULL CHECK (lost_frames >= 0),
            late_frames     INTEGER NOT NULL CHECK (late_frames >= 0),
            missing_frames  INTEGER NOT NULL CHECK (missing_frames >= 0),
            longest_gap_ms  INTEGER NOT NULL CHECK (longest_gap_ms >= 0),
            PRIMARY KEY (recording_id, channel)
        )
        """,
        "ALTER TABLE recordings ADD COLUMN degraded_reason TEXT",
    ),
)

_MIGRATION_5 = Migration(
    5,
    "consent receipts: notice restarts and time held (a hold during the notice)",
    (
        "ALTER TABLE consent_receipts ADD COLUMN notice_restarts INTEGER NOT NULL DEFAULT 0"
        " CHECK (notice_restarts >= 0)",
        "ALTER TABLE consent_receipts ADD COLUMN held_ms INTEGER NOT NULL DEFAULT 0"
        " CHECK (held_ms >= 0)",
    ),
)

_MIGRATION_6 = Migration(
    6,
    "audit log: append-only, hash-chained (P5, P20, P22)",
    (
        """
        CREATE TABLE audit_log (
            seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
            at          INTEGER NOT NULL,
            actor       TEXT NOT NULL,
            action      TEXT NOT NULL,
            object      TEXT,
            reason      TEXT,
            detail      TEXT NOT NULL,
            prev        TEXT NOT NULL,
            sha256      TEXT NOT NULL
        )
        """,
        "CREATE INDEX audit_log_by_actor ON audit_log (actor, at)",
        "CREATE INDEX audit_log_by_action ON audit_log (action, at)",
        "CREATE INDEX audit_log_by_at ON audit_log (at)",
        """
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
        """,
        """
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
        """,
    ),
)

_MIGRATION_7 = Migration(
    7,
    "holds: a complaint, training or conduct hold keeps a recording past its retention",
    (
        """
        CREATE TABLE holds (
            id              TEXT PRIMARY KEY,
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            kind            TEXT NOT NULL,
            reference       TEXT NOT NULL,
            placed_by       TEXT NOT NULL,
            placed_at       INTEGER NOT NULL,
            review_at       INTEGER,
            note            TEXT,
            released_by     TEXT,
            released_at     INTEGER,
            release_reason  TEXT,
            CHECK ((released_at IS NULL) = (released_by IS NULL)),
            CHECK ((released_at IS NULL) = (release_reason IS NULL))
        )
        """,
        "CREATE INDEX holds_by_recording ON holds (recording_id, released_at)",
        "CREATE INDEX holds_active_by_review ON holds (review_at) WHERE released_at IS NULL",
    ),
)

_MIGRATION_8 = Migration(
    8,
    "retention: when a recording expires, and when and why it was deleted",
    (
        "ALTER TABLE recordings ADD COLUMN expires_at INTEGER",
        "ALTER TABLE recordings ADD COLUMN deleted_at INTEGER",
        "ALTER TABLE recordings ADD COLUMN deleted_reason TEXT",
        "CREATE INDEX recordings_by_expiry ON recordings (expires_at)"
        " WHERE expires_at IS NOT NULL AND deleted_at IS NULL",
    ),
)

_MIGRATION_9 = Migration(
    9,
    "configuration versions (P22): each version the proxy ran under, its settings redacted",
    (
        """
        CREATE TABLE config_versions (
            version         TEXT PRIMARY KEY,
            first_seen_at   INTEGER NOT NULL,
            last_seen_at    INTEGER NOT NULL,
            settings        TEXT NOT NULL
        )
        """,
        "CREATE INDEX config_versions_by_last_seen ON config_versions (last_seen_at)",
    ),
)

_MIGRATION_10 = Migration(
    10,
    "accounts: users, their teams, login sessions (token digests only), failed logins",
    (
        """
        CREATE TABLE users (
            name                TEXT PRIMARY KEY
                                CHECK (length(name) BETWEEN 1 AND 64
                                       AND name NOT GLOB '*[^a-z0-9._-]*'),
            role                TEXT NOT NULL CHECK (role IN ('staff', 'manager',
                                    'records_officer', 'dpo', 'admin', 'maintenance')),
            password_hash       TEXT NOT NULL,
            operator            TEXT,
            created_at          INTEGER NOT NULL,
            disabled_at         INTEGER,
            failed_logins       INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
            locked_until        INTEGER,
            password_changed_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE user_teams (
            user    TEXT NOT NULL REFERENCES users (name),
            team    TEXT NOT NULL,
            PRIMARY KEY (user, team)
        )
        """,
        "CREATE INDEX user_teams_by_team ON user_teams (team)",
        """
        CREATE TABLE sessions (
            token_sha256    TEXT PRIMARY KEY CHECK (length(token_sha256) = 64),
            user            TEXT NOT NULL REFERENCES users (name),
            kind            TEXT NOT NULL CHECK (kind IN ('browser', 'bearer')),
            created_at      INTEGER NOT NULL,
            expires_at      INTEGER NOT NULL,
            last_seen_at    INTEGER NOT NULL,
            source          TEXT NOT NULL,
            revoked_at      INTEGER
        )
        """,
        "CREATE INDEX sessions_by_user ON sessions (user) WHERE revoked_at IS NULL",
        """
        CREATE TABLE login_failures (
            source  TEXT NOT NULL,
            at      INTEGER NOT NULL
        )
        """,
        "CREATE INDEX login_failures_by_source ON login_failures (source, at)",
    ),
)

_MIGRATION_11 = Migration(
    11,
    "recording parts (one per call taker of a transferred call), access requests and"
    " grants, anomaly flags",
    (
        """
        CREATE TABLE recording_parts (
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            part            INTEGER NOT NULL CHECK (part >= 1),
            operator        TEXT,
            team            TEXT,
            started_at      INTEGER NOT NULL,
            ended_at        INTEGER,
            PRIMARY KEY (recording_id, part)
        )
        """,
        "CREATE INDEX recording_parts_by_operator ON recording_parts (operator)",
        "CREATE INDEX recording_parts_by_team ON recording_parts (team)",
        # every recording made before parts existed is one part: its call's operator
        """
        INSERT INTO recording_parts (recording_id, part, operator, team, started_at, ended_at)
        SELECT recordings.id, 1, calls.operator, NULL, recordings.started_at,
               recordings.ended_at
        FROM recordings JOIN calls ON calls.id = recordings.call_id
        """,
        """
        CREATE TABLE access_requests (
            id              TEXT PRIMARY KEY,
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            requester       TEXT NOT NULL,
            purpose         TEXT NOT NULL,
            reason          TEXT NOT NULL,
            state           TEXT NOT NULL
                            CHECK (state IN ('pending', 'approved', 'refused', 'withdrawn')),
            requested_at    INTEGER NOT NULL,
            decided_by      TEXT,
            decided_at      INTEGER,
            decision_reason TEXT,
            expires_at      INTEGER,
            CHECK (decided_by IS NULL OR decided_by <> requester)
        )
        """,
        "CREATE INDEX access_requests_by_state ON access_requests (state, requested_at)",
        "CREATE INDEX access_requests_by_requester ON access_requests (requester, state)",
        "CREATE INDEX access_requests_by_recording ON access_requests (recording_id)",
        """
        CREATE TABLE access_flags (
            id              INTEGER PRIMARY KEY,
            raised_at       INTEGER NOT NULL,
            user            TEXT NOT NULL,
            kind            TEXT NOT NULL,
            recording_id    TEXT,
            detail          TEXT,
            cleared_by      TEXT,
            cleared_at      INTEGER,
            cleared_reason  TEXT
        )
        """,
        "CREATE INDEX access_flags_open ON access_flags (raised_at) WHERE cleared_at IS NULL",
        "CREATE INDEX access_flags_by_user ON access_flags (user, raised_at)",
    ),
)

_MIGRATION_12 = Migration(
    12,
    "bulk requests: a records officer's or the DPO's bulk export, for a DPO to approve",
    (
        """
        CREATE TABLE bulk_requests (
            id              TEXT PRIMARY KEY,
            requester       TEXT NOT NULL,
            purpose         TEXT NOT NULL,
            reason          TEXT NOT NULL,
            state           TEXT NOT NULL
                            CHECK (state IN ('pending', 'approved', 'refused', 'withdrawn')),
            requested_at    INTEGER NOT NULL,
            decided_by      TEXT,
            decided_at      INTEGER,
            decision_reason TEXT,
            expires_at      INTEGER,
            CHECK (decided_by IS NULL OR decided_by <> requester)
        )
        """,
        "CREATE INDEX bulk_requests_by_state ON bulk_requests (state, requested_at)",
        """
        CREATE TABLE bulk_request_recordings (
            request_id      TEXT NOT NULL REFERENCES bulk_requests (id),
            position        INTEGER NOT NULL CHECK (position >= 1),
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            PRIMARY KEY (request_id, position),
            UNIQUE (request_id, recording_id)
        )
        """,
    ),
)

_MIGRATION_13 = Migration(
    13,
    "search indexes (P8): a number as callee, a service or an operator within a window;"
    " a part's operator or team leading to its recording",
    (
        # a number is looked for as caller (calls_by_caller) or callee, within a window
        "CREATE INDEX calls_by_callee ON calls (callee, started_at)",
        "CREATE INDEX calls_by_service ON calls (service, started_at)",
        # a recording with no part row is its call operator's
        "CREATE INDEX calls_by_operator ON calls (operator, started_at)",
        # covering: the recordings of an operator's or a team's parts, without the table
        "DROP INDEX recording_parts_by_operator",
        "DROP INDEX recording_parts_by_team",
        "CREATE INDEX recording_parts_by_operator ON recording_parts (operator, recording_id)",
        "CREATE INDEX recording_parts_by_team ON recording_parts (team, recording_id)",
    ),
)

_MIGRATION_14 = Migration(
    14,
    "subject access cases (P17-P19): the requester, the identity check, the numbers and"
    " window searched, the recordings found with the DPO's decision on each, and the"
    " bundles exported",
    (
        """
        CREATE TABLE sar_cases (
            id              TEXT PRIMARY KEY,
            requester       TEXT NOT NULL,
            contact         TEXT,
            identity_check  TEXT NOT NULL,
            numbers         TEXT NOT NULL,
            window_from     INTEGER NOT NULL,
            window_to       INTEGER NOT NULL CHECK (window_to > window_from),
            operator        TEXT,
            received_at     INTEGER NOT NULL,
            deadline_at     INTEGER NOT NULL CHECK (deadline_at > received_at),
            opened_by       TEXT NOT NULL,
            opened_at       INTEGER NOT NULL,
            state           TEXT NOT NULL CHECK (state IN ('open', 'answered', 'closed')),
            closed_by       TEXT,
            closed_at       INTEGER,
            close_reason    TEXT
        )
        """,
        "CREATE INDEX sar_cases_by_state ON sar_cases (state, deadline_at)",
        """
        CREATE TABLE sar_case_recordings (
            case_id         TEXT NOT NULL REFERENCES sar_cases (id),
            position        INTEGER NOT NULL CHECK (position >= 1),
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            release         TEXT CHECK (release IN ('both', 'caller', 'refuse')),
            decision_reason TEXT,
            decided_by      TEXT,
            decided_at      INTEGER,
            hold_id         TEXT REFERENCES holds (id),
            PRIMARY KEY (case_id, position),
            UNIQUE (case_id, recording_id),
            CHECK ((release IS NULL) = (decided_by IS NULL))
        )
        """,
        "CREATE INDEX sar_case_recordings_by_recording ON sar_case_recordings (recording_id)",
        """
        CREATE TABLE sar_exports (
            case_id         TEXT NOT NULL REFERENCES sar_cases (id),
            number          INTEGER NOT NULL CHECK (number >= 1),
            exported_by     TEXT NOT NULL,
            exported_at     INTEGER NOT NULL,
            bundle          TEXT NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            recordings      TEXT NOT NULL,
            PRIMARY KEY (case_id, number)
        )
        """,
    ),
)

# SIPREC (issue 18)
_MIGRATION_SIPREC = Migration(
    15,
    "SIPREC recording sessions (RFC 7866): a call's kind; the communication session's"
    " identifiers; each metadata snapshot with its participants and their channel",
    (
        "ALTER TABLE calls ADD COLUMN kind TEXT NOT NULL DEFAULT 'call'"
        " CHECK (kind IN ('call', 'siprec'))",
        """
        CREATE TABLE siprec_sessions (
            call_id         TEXT PRIMARY KEY REFERENCES calls (id),
            src_call_id     TEXT NOT NULL,
            session_id      TEXT,
            sip_session_id  TEXT
        )
        """,
        """
        CREATE TABLE siprec_snapshots (
            call_id         TEXT NOT NULL REFERENCES siprec_sessions (call_id),
            snapshot        INTEGER NOT NULL CHECK (snapshot >= 1),
            received_at     INTEGER NOT NULL,
            metadata        TEXT NOT NULL,
            PRIMARY KEY (call_id, snapshot)
        )
        """,
        """
        CREATE TABLE siprec_participants (
            call_id         TEXT NOT NULL,
            snapshot        INTEGER NOT NULL,
            position        INTEGER NOT NULL CHECK (position >= 1),
            participant_id  TEXT NOT NULL,
            aor             TEXT,
            name            TEXT,
            channel         TEXT CHECK (channel IN ('left', 'right')),
            PRIMARY KEY (call_id, snapshot, position),
            FOREIGN KEY (call_id, snapshot) REFERENCES siprec_snapshots (call_id, snapshot)
        )
        """,
        "CREATE INDEX siprec_participants_by_aor ON siprec_participants (aor)",
    ),
)

# the registrar's SIP credentials (issue 18)
_MIGRATION_SIP_CREDENTIALS = Migration(
    16,
    "SIP credentials (issue 18): a user's digest HA1 values (SHA-256 and MD5) for one"
    " realm, never the SIP password; apart from the console password",
    (
        """
        CREATE TABLE sip_credentials (
            user        TEXT PRIMARY KEY REFERENCES users (name),
            realm       TEXT NOT NULL,
            ha1_sha256  TEXT NOT NULL CHECK (length(ha1_sha256) = 64),
            ha1_md5     TEXT NOT NULL CHECK (length(ha1_md5) = 32),
            set_at      INTEGER NOT NULL
        )
        """,
    ),
)

# several nodes on one catalog (issue 20)
_MIGRATION_NODES = Migration(
    17,
    "the node (recproxy process) that wrote each call and recording: start-up recovery"
    " ends only its own; NULL for rows written before nodes had names",
    (
        "ALTER TABLE calls ADD COLUMN node TEXT",
        "ALTER TABLE recordings ADD COLUMN node TEXT",
        "CREATE INDEX calls_open_by_node ON calls (node, ended_at)",
        "CREATE INDEX recordings_by_node_state ON recordings (node, state)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    _MIGRATION_1,
    _MIGRATION_2,
    _MIGRATION_3,
    _MIGRATION_4,
    _MIGRATION_5,
    _MIGRATION_6,
    _MIGRATION_7,
    _MIGRATION_8,
    _MIGRATION_9,
    _MIGRATION_10,
    _MIGRATION_11,
    _MIGRATION_12,
    _MIGRATION_13,
    _MIGRATION_14,
    _MIGRATION_SIPREC,
    _MIGRATION_SIP_CREDENTIALS,
    _MIGRATION_NODES,
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_SCHEMA_MIGRATIONS = Migration(
    0,
    "the table of migrations applied",
    (
        """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        applied_at  INTEGER NOT NULL
    )
""",
    ),
)


def check_numbering(migrations: Sequence[Migration]) -> tuple[Migration, ...]:
    """The migrations as given, if they are numbered 1, 2, 3... with no gap."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise InvalidFieldError(f"migrations must be numbered 1, 2, 3...; got {versions}")
    return tuple(migrations)


def applied_version(conn: Connection) -> int:
    """The highest migration applied to the database."""
    row = one(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return 0 if row is None else int(row[0])


def migrate(conn: Connection, migrations: Sequence[Migration], now_ms: int, path: object) -> None:
    """Bring the schema of ``conn`` (in autocommit mode) up to the last of ``migrations``."""
    known = {m.version for m in migrations}
    latest = max(known, default=0)
    with transaction(conn):
        for statement in _SCHEMA_MIGRATIONS.statements_for(conn):
            conn.execute(statement)
        applied = {int(r[0]) for r in rows(conn, "SELECT version FROM schema_migrations")}
    unknown = applied - known
    if unknown:
        raise SchemaTooNewError(
            f"{path} has schema version {max(applied)}, but this recproxy knows "
            f"versions up to {latest} only; run a newer recproxy (the catalog was "
            "left untouched)"
        )
    for migration in migrations:
        if migration.version in applied:
            continue
        with transaction(conn):
            # Another process may have applied it while we waited for the lock.
            if one(conn, _IS_APPLIED, (migration.version,)) is None:
                for statement in migration.statements_for(conn):
                    conn.execute(statement)
                conn.execute(_RECORD, (migration.version, migration.name, now_ms))


_IS_APPLIED = "SELECT 1 FROM schema_migrations WHERE version = ?"
_RECORD = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
