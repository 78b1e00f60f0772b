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
    account = os_account()
    if on_behalf_of is None:
        return account
    person = " ".join(on_behalf_of.split())
    if not person:
        raise ValueError("--by must name the person the export is for")
    return f"{account} (by {person})"
