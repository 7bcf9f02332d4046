"""Where jobs live: SQLite (sqlite.py), every statement in one module (queries.py),
transactions as objects."""

from __future__ import annotations

from localcompute.store.base import JobTransaction, Store
from localcompute.store.queries import MIGRATIONS
from localcompute.store.sqlite import JobStore
from localcompute.store.transaction import Transaction

__all__ = ["MIGRATIONS", "JobStore", "JobTransaction", "Store", "Transaction"]
