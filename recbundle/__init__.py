"""The bundle contract: the only thing `training` (writer) and `service` (reader) share.

stdlib + pydantic only, so both sides can import it without pulling each other's dependencies.
"""

from recbundle.manifest import (
    SCHEMA_VERSION,
    BundleError,
    FileEntry,
    LLMRef,
    Manifest,
    llm_identity,
    load_manifest,
    sha256_file,
    write_manifest,
)
from recbundle.rerank import RankPrompt, RerankSpec

__all__ = [
    "SCHEMA_VERSION",
    "BundleError",
    "FileEntry",
    "LLMRef",
    "Manifest",
    "RankPrompt",
    "RerankSpec",
    "llm_identity",
    "load_manifest",
    "sha256_file",
    "write_manifest",
]
