"""Domain exceptions of the data layer: one base class so callers can catch every data problem at once."""

from __future__ import annotations


class DataError(Exception):
    """A data file is missing, empty, unreadable or too broken to trust; the message names the file."""


class DownloadError(DataError):
    """A download failed after its retries (HTTP error, network error, truncated stream)."""


class ChecksumError(DataError):
    """A file's sha256 differs from the expected one; the message gives both digests."""
