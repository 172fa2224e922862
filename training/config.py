"""Typed run configuration, read once from a preset YAML (configs/*.yaml).

A preset names the dataset, the models with their hyper-parameters, the training loop, the evaluation
protocols and seeds. Per-model `train:` blocks override the global `train:` block field by field.
LLM-method presets add the method's block (`p2rec:`, `delrec:`, `relrec:`), kept here as a raw mapping: each
method parses its own block with its own config class (`training/llm/<method>/config.py`), so this module
never imports a method. P2Rec presets also name `p2rec_models:`, the SR models trained on its augmented item
table, written like `models:`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")
METHODS = ("p2rec", "delrec", "relrec")  # LLM-method blocks a preset may carry

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"


@dataclass
class DataConfig:
    dataset: str = "ml-100k"
    data_dir: str | None = None  # None: ../shared/data/<folder> when present, else download
    cache_dir: str = "~/.cache/llm-seqrec/data"
    k_core: int = 5
    min_rating: float | None = None
    max_users: int | None = None
    # Cold-start evaluation (training/data/split.py `cold_item_split`): this share of items, drawn with
    # `cold_seed`, is removed from every training and validation sequence and stays only as test targets.
    cold_item_frac: float = 0.0
    cold_seed: int = 0


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20  # validation checks without improvement before stopping
    eval_every: int = 1
    # "last": one window per user (its newest max_len+1 items); "sliding": every max_len-long window
    # of the training sequence, newest-aligned, so long ML histories are not cut to their tail.
    windows: Literal["last", "sliding"] = "sliding"
    grad_clip: float = 5.0
    eval_batch_size: int = 512
    # "auto" = cuda when available, else cpu. Not part of any cache key: where a model trained does not
    # change what it is (results differ only by floating-point noise).
    device: str = "auto"


@dataclass
class ModelSpec:
    name: str  # the key in the preset: how results, reports and bundles name this model
    params: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: str | None = None  # the model class (`build_model` name) when `name` is a variant's own name

    @property
    def kind(self) -> str:
        return self.arch or self.name


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["full", "sampled100", "cand20"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    protocol_seed: int = 2024


@dataclass
class TeacherConfig:
    model: str = "sasrec"
    top_k: int = 20


@dataclass
class RunConfig:
    name: str
    data: DataConfig
    models: list[ModelSpec]
    eval: EvalConfig
    teacher: TeacherConfig
    output_dir: str
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # raw LLM-method blocks, by method
    p2rec_models: list[ModelSpec] = field(default_factory=list)  # SR models on the augmented table

    def data_hash(self) -> str:
        key = asdict(self.data) | {"data_dir": None, "cache_dir": None}
        if not key["cold_item_frac"]:  # the usual split: keep the hashes (and cache folders) it always had
            del key["cold_item_frac"], key["cold_seed"]
        else:  # held-out items are left out of every training loss (Split.unseen_items)
            key["cold_rule"] = "unseen"
        return stable_hash(key)

    def model_spec(self, name: str) -> ModelSpec:
        for spec in [*self.models, *self.p2rec_models]:
            if spec.name == name:
                return spec
        raise KeyError(f"model {name!r} is not in preset {self.name!r}")


def stable_hash(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def dataclass_from(cls: type, raw: dict[str, Any] | None, where: str) -> Any:
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    return cls(**raw)


def resolve_preset(preset: str) -> Path:
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    candidate = CONFIG_DIR / f"{preset}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"no preset {preset!r}: give a YAML path or one of {names}")


MODEL_BLOCK_KEYS = {"arch", "model", "train"}
TOP_LEVEL_KEYS = {"name", "data", "train", "models", "eval", "teacher", "output_dir", "p2rec_models", *METHODS}


def _model_specs(raw: dict[str, Any] | None, base_train: TrainConfig, where: str) -> list[ModelSpec]:
    """`{name: {arch: ..., model: {...}, train: {...}}}` -> specs; `train` overrides the global block field by
    field; `arch` (default: the name) picks the model class, so one preset can compare variants of one."""
    specs = []
    for model_name, spec in (raw or {}).items():
        spec = spec or {}
        unknown = set(spec) - MODEL_BLOCK_KEYS
        if unknown:
            raise ValueError(
                f"{where}.{model_name}: unknown keys {sorted(unknown)}; allowed: {sorted(MODEL_BLOCK_KEYS)}"
            )
        overrides = spec.get("train") or {}
        dataclass_from(TrainConfig, overrides, f"{where}.{model_name}: train")  # rejects unknown keys
        train = replace(base_train, **overrides)
        specs.append(ModelSpec(model_name, spec.get("model") or {}, train, spec.get("arch")))
    return specs


def method_config(cfg: RunConfig, method: str, cls: type[T], hint: str = "") -> T:
    """The preset's `<method>:` block parsed into the method's own config class (unknown keys rejected)."""
    if method not in cfg.methods:
        raise ValueError(f"preset {cfg.name!r} has no `{method}` block{': ' + hint if hint else ''}")
    result: T = dataclass_from(cls, cfg.methods[method], f"{cfg.name}: {method}")
    return result


def load_config(preset: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    path = resolve_preset(preset)
    raw = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():  # "data.data_dir": "..." style overrides
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    name = raw.get("name", path.stem)
    base_train = dataclass_from(TrainConfig, raw.get("train"), f"{path}: train")
    models = _model_specs(raw.get("models"), base_train, f"{path}: models")
    if not models:
        raise ValueError(f"{path}: `models` is empty")
    methods = {m: dict(raw[m] or {}) for m in METHODS if m in raw}
    p2rec_models = _model_specs(raw.get("p2rec_models"), base_train, f"{path}: p2rec_models")
    if "p2rec" in methods and not p2rec_models:
        raise ValueError(f"{path}: a `p2rec` block needs `p2rec_models` (e.g. sasrec_adapter, sasrec_init)")
    if p2rec_models and "p2rec" not in methods:
        raise ValueError(f"{path}: `p2rec_models` needs a `p2rec` block")
    clash = {m.name for m in models} & {m.name for m in p2rec_models}
    if clash:
        raise ValueError(f"{path}: {sorted(clash)} named in both `models` and `p2rec_models`")
    return RunConfig(
        name=name,
        data=dataclass_from(DataConfig, raw.get("data"), f"{path}: data"),
        models=models,
        eval=dataclass_from(EvalConfig, raw.get("eval"), f"{path}: eval"),
        teacher=dataclass_from(TeacherConfig, raw.get("teacher"), f"{path}: teacher"),
        output_dir=raw.get("output_dir", f"runs/{name}"),
        methods=methods,
        p2rec_models=p2rec_models,
    )
