"""Errors of the embedded store and its query language, caught by meaning in the CLI.

StoreError                  anything the store refuses to do; the message is one sentence
 +-- StoreNotFound          no store at the given path (search before the agent ever ran)
 +-- StoreVersionError      the store has another format (newer, or a pre-release one)
 +-- StoreCorruptError      the index cannot be read (not SQLite, missing tables, ...)
 +-- StoreLockedError       another process is already writing to this store
 +-- StoreLayoutError       a writer's document layout differs from the store's
 +-- StoreFullError         the disk is full: the index cannot be created or opened, or
                            a write found nothing left to evict
QueryError                  the query cannot be used
 +-- QuerySyntaxError       the query does not parse; carries the 1-based `column`

Torn writes and damaged blocks are not errors: the index is the source of truth, bytes
past its end are cut off when a writer opens the store, and a block whose checksum does
not match is skipped and counted (`StoreReader.corrupt_blocks`), never served.
"""

from __future__ import annotations

import errno
import sqlite3

_SQLITE_FULL = 13


class StoreError(Exception):
    """The store cannot do what was asked; the message names the store's path."""


class StoreNotFound(StoreError):
    pass


class StoreVersionError(StoreError):
    pass


class StoreCorruptError(StoreError):
    pass


class StoreLockedError(StoreError):
    pass


class StoreLayoutError(StoreError):
    pass


class StoreFullError(StoreError):
    """The disk is full: a write found no room even after evicting every segment it
    could, or the index could not be created or opened.

    Nothing of the write was kept; writing the same events again later is safe. The
    local sink holds them back (unacknowledged) and retries until space returns."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the filesystem has no room left (for data or for the quota)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == _SQLITE_FULL
    return False


class QueryError(ValueError):
    """The query cannot be evaluated (bad value for a range, ...)."""


class QuerySyntaxError(QueryError):
    """The query does not parse.

    `column` is 1-based and points at the first character that could not be used, so a
    caller can print the query with a ``^`` under it.
    """

    def __init__(self, message: str, query: str, column: int) -> None:
        super().__init__(message)
        self.query = query
        self.column = column

    def caret_lines(self) -> str:
        """The query and a caret under the offending column, for a terminal."""
        return f"{self.query}\n{' ' * (self.column - 1)}^"
