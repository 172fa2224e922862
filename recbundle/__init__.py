"""The bundle contract: the only thing `training` (writer) and `service` (reader) share.

stdlib + pydantic only, so both sides can import it without pulling each other's dependencies.
"""

from recbundle.manifest import (
    SCHEMA_VERSION,
    BundleError,
    FileEntry,
    LLMRef,
    Manifest,
    load_manifest,
    sha256_file,
    write_manifest,
)

__all__ = [
    "SCHEMA_VERSION",
    "BundleError",
    "FileEntry",
    "LLMRef",
    "Manifest",
    "load_manifest",
    "sha256_file",
    "write_manifest",
]
