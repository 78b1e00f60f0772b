"""Who is acting, for the access log: the operating system's account, not the environment.

``LOGNAME`` and ``USER`` are whatever the caller sets, so they name nobody; the real uid's
account does.  ``--by`` lets a shared service account say on whose behalf it acts, and
both are kept: ``records (by dr_smith)``.
"""

from __future__ import annotations

import os
import pwd


def os_account() -> str:
    """The real uid's account name (``uid N`` when it has no passwd entry)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def actor_name(on_behalf_of: str | None = None) -> str:
    """The account, plus the named person it acts for, if any."""
    return acting(os_account(), on_behalf_of)


def acting(account: str, on_behalf_of: str | None) -> str:
    """``account``, or ``account (by person)`` when it acts for a named person."""
    person = by_name(on_behalf_of)
    return account if person is None else f"{account} (by {person})"


def by_name(on_behalf_of: str | None) -> str | None:
    """The person ``--by`` names, its spaces tidied; ValueError when it names nobody."""
    if on_behalf_of is None:
        return None
    person = " ".join(on_behalf_of.split())
    if not person:
        raise ValueError("--by must name the person the export is for")
    return person
