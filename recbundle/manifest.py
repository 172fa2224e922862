"""manifest.json: what a bundle holds, with checksums, dims and the model references.

Layout of a bundle directory (paths relative to it; every file is listed in `files` with sha256 + size):

    manifest.json          this model, serialised
    items.jsonl            catalogue, one JSON object per item: item_id (dense, 1..n_items), raw_id (the
                           catalogue's own id, what clients send; unique), title, description, categories
                           (list), brand. A row with item_id null is in the catalogue and not in the model
                           (a cold-start row): `cold_items` says how histories holding it are served
    encoder.pt2            torch.export program: (B, max_len) int64 left-padded item ids, 0 = padding
                           -> (B, dim) float32 user vectors (inner product with item embeddings = score)
    encoder.json           the SR encoder's config (architecture hyper-parameters), for humans and audits
    item_embeddings.npy    (n_items + 1, dim) float32; row 0 is padding (zeros)
    index.faiss            FAISS inner-product index over rows 1..n_items, FAISS id = dense item id
    llm/...                optional: LoRA adapter folders (explain, rerank), soft-prompt tensor; the rerank
                           stage's prompt, labels and blend weight are `llm.rerank` (recbundle/rerank.py);
                           item pseudo-labels (`llm.item_labels`, ReLRec)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recbundle.rerank import RerankSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class BundleError(RuntimeError):
    """A bundle is missing, tampered with or incompatible; the message says which file and why."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    size: int


class EncoderRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str  # "sasrec" | "gru4rec" | ... (informational; the program is self-contained)
    variant: str = "plain"  # which embedding variant trained it ("plain", "augmented-adapter", ...)
    path: str = "encoder.pt2"
    config_path: str = "encoder.json"
    max_len: int
    dim: int


class IndexRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "index.faiss"
    type: str  # FAISS factory string actually built, e.g. "Flat", "HNSW32" or "IVF4096,Flat"
    metric: Literal["inner_product"] = "inner_product"
    embeddings_path: str = "item_embeddings.npy"
    n_items: int
    dim: int
    # search-time parameters the service sets after loading, by FAISS ParameterSpace name ("efSearch" for
    # HNSW, "nprobe" for IVF); empty for exact search. Bundles written before these fields load unchanged.
    params: dict[str, int | float] = Field(default_factory=dict)
    # build-time parameters, for audits ("efConstruction", "nlist", "m", ...): the index file already holds them
    build_params: dict[str, int | float] = Field(default_factory=dict)
    reason: str | None = None  # why this type was chosen (catalogue size, device, measured recall)


class LLMRef(BaseModel):
    """Which LLM explains / reranks. `base` is an HF model folder or name; the rest live in the bundle."""

    model_config = ConfigDict(extra="forbid")
    base: str | None = None  # None: the service falls back to its configured default base model
    lora_adapters: dict[str, str] = Field(default_factory=dict)  # adapter name -> folder in the bundle
    soft_prompt: str | None = None  # path in the bundle of a (n_tokens, hidden) tensor, or None
    rerank: RerankSpec | None = None  # how the LLM reranks retrieved candidates (DELRec); None: it does not
    # path in the bundle of the item pseudo-labels the explain adapter learned to reconstruct (ReLRec):
    # JSON {"source": "reviews" | "metadata", "items": {dense item id: label}}; None: the bundle has none
    item_labels: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    bundle_id: str  # "<dataset>-<teacher>-<short hash>"
    created_at: str  # ISO-8601 UTC
    dataset: str
    n_items: int
    catalogue_path: str = "items.jsonl"
    # a history item the catalogue knows and the model does not: "skip" it (the answer lists it under
    # ignored_items) or "reject" the request (422, like an unknown id)
    cold_items: Literal["skip", "reject"] = "skip"
    encoder: EncoderRef
    index: IndexRef
    llm: LLMRef = Field(default_factory=LLMRef)
    metrics: dict[str, Any] = Field(default_factory=dict)  # evaluation results of the exported model
    files: dict[str, FileEntry] = Field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _bundle_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def llm_identity(manifest: Manifest) -> str:
    """A short hash of what writes a bundle's LLM text: the `llm` reference and the checksums of its files
    (adapters, soft prompt, labels). Bundle ids hash the retrieval model only, so two bundles with the same
    encoder and different adapters share an id; caches of generated text key on this as well."""
    llm = manifest.llm
    # every file the `llm` reference points at, wherever it lives (adapter folders such as "lora/explain",
    # a soft prompt at the bundle root), not only under llm/: two bundles whose adapters differ in weights
    # but not in path must not share an identity
    roots = ["llm/", *(p.rstrip("/") + "/" for p in llm.lora_adapters.values())]
    exact = {p for p in (llm.soft_prompt, llm.item_labels) if p}
    files = {k: v.sha256 for k, v in manifest.files.items() if k in exact or k.startswith(tuple(roots))}
    body = json.dumps({"llm": llm.model_dump(mode="json"), "files": files}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Checksum every file under `root` into the manifest and write manifest.json."""
    files = {
        p.relative_to(root).as_posix(): FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
        for p in _bundle_files(root)
    }
    manifest = manifest.model_copy(update={"files": files})
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def load_manifest(root: Path, verify: bool = True) -> Manifest:
    """Read and check a bundle: schema version, every listed file present with its size and sha256,
    and no unlisted file. Raises BundleError with the first problem found."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle: {MANIFEST_NAME} is missing")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from e
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"bundle schema version {version!r} is not supported (this build reads version {SCHEMA_VERSION}); "
            "re-export the bundle with a matching `python -m training export`"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValueError as e:
        raise BundleError(f"{path} does not match the manifest schema: {e}") from e
    if verify:
        verify_files(root, manifest)
    return manifest


def verify_files(root: Path, manifest: Manifest) -> None:
    for rel, entry in manifest.files.items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"bundle file {rel} is listed in the manifest but missing")
        if p.stat().st_size != entry.size:
            raise BundleError(f"bundle file {rel} has size {p.stat().st_size}, manifest says {entry.size}")
        if sha256_file(p) != entry.sha256:
            raise BundleError(f"bundle file {rel} fails its sha256 check: it was modified after export")
    listed = set(manifest.files)
    extra = [p.relative_to(root).as_posix() for p in _bundle_files(root)]
    unlisted = [rel for rel in extra if rel not in listed]
    if unlisted:
        raise BundleError(f"bundle holds files the manifest does not list: {unlisted[:5]}")
    required = [manifest.catalogue_path, manifest.encoder.path, manifest.index.path, manifest.index.embeddings_path]
    missing = [r for r in required if r not in listed]
    if missing:
        raise BundleError(f"manifest does not list required files: {missing}")
