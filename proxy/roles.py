"""The one list of user roles: what a user is, for the access policy (one role a user).

The accounts store (``proxy.storage.catalog.users``) keeps it and the access policy
(``proxy.records.policy``) decides by it; like ``proxy.events`` this module imports
nothing from recproxy, so both layers share it."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"
    MANAGER = "manager"
    RECORDS_OFFICER = "records_officer"
    DPO = "dpo"
    ADMIN = "admin"
    MAINTENANCE = "maintenance"
