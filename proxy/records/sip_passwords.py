"""SIP passwords (issue 18): what a call taker's phone registers with, apart from the
console password, set by ``recproxy users sip-password``.

The rules live here: a SIP password follows the console password's policy
(:func:`~proxy.records.accounts.check_password`); it is kept only as the HA1 values
the registrar checks digest answers against (SHA-256 and MD5, RFC 8760), for the
configured ``[registrar] realm``; the digest user name is the login name, and the
user's address of record is ``sip:NAME@realm`` (:func:`address_of_record`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.digest import Algorithm, ha1
from ..storage.catalog import (
    NotFoundError,
    SipCredentialRepository,
    SipCredentials,
    UserRepository,
    UserStateError,
)
from .accounts import AccountError, UnknownUser, check_password


def address_of_record(user: str, realm: str) -> str:
    """The AOR a user's phones register: ``sip:NAME@realm``."""
    return f"sip:{user}@{realm}"


@dataclass(frozen=True, slots=True)
class PasswordSet:
    """A SIP password set, and the users whose SIP passwords were set for another realm
    (they no longer work under this one: each must be set again)."""

    credentials: SipCredentials
    other_realms: dict[str, list[str]]


class SipPasswords:
    """SIP passwords of ``users``, stored in ``credentials``, for ``realm``."""

    def __init__(
        self, users: UserRepository, credentials: SipCredentialRepository, realm: str
    ) -> None:
        if not realm:
            raise AccountError(
                "registrar.realm is not set in the configuration: a SIP password is "
                "stored as a digest for that realm, so set it first"
            )
        self._users = users
        self._credentials = credentials
        self.realm = realm

    async def set(self, name: str, password: str, *, by: str) -> PasswordSet:
        """Set ``name``'s SIP password; ``UnknownUser``, or ``AccountError`` for a
        password the policy refuses or a disabled user."""
        user = await self._users.get(name)
        if user is None:
            raise UnknownUser(f"user {name} does not exist")
        check_password(user.name, password)
        try:
            stored = await self._credentials.set(
                user.name,
                realm=self.realm,
                ha1_sha256=ha1(Algorithm.SHA256, user.name, self.realm, password),
                ha1_md5=ha1(Algorithm.MD5, user.name, self.realm, password),
                by=by,
            )
        except NotFoundError as exc:
            raise UnknownUser(str(exc)) from None
        except UserStateError as exc:
            raise AccountError(str(exc)) from None
        others = await self._credentials.realms()
        others.pop(self.realm, None)
        return PasswordSet(stored, others)

    async def remove(self, name: str, *, by: str) -> bool:
        """Remove ``name``'s SIP password (its phones can no longer register); False when
        it had none.  ``UnknownUser`` for no such user."""
        try:
            return await self._credentials.remove(name, by=by)
        except NotFoundError as exc:
            raise UnknownUser(str(exc)) from None
