"""Preset parsing: the P2Rec blocks are typed and unknown keys are rejected everywhere."""

from pathlib import Path

import pytest

from training.config import CONFIG_DIR, load_config
from training.llm.p2rec import P2RecConfig, p2rec_config

P2REC_PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("p2rec-*.yaml"))


@pytest.mark.parametrize("preset", P2REC_PRESETS)
def test_p2rec_presets_load(preset: str) -> None:
    cfg = load_config(preset)
    p2 = p2rec_config(cfg)
    assert isinstance(p2, P2RecConfig)
    assert {s.kind for s in cfg.p2rec_models} == {"sasrec_adapter", "sasrec_init"}
    init = next(s for s in cfg.p2rec_models if s.kind == "sasrec_init")
    assert cfg.teacher.model == "sasrec" and init.params["dim"] == p2.aug_dim
    assert p2.target in p2.variants() and 0.0 <= p2.cold_item_frac < 1.0
    assert cfg.eval.seeds == [0, 1, 2] or preset == "p2rec-tiny"


def test_plain_presets_have_no_p2rec_block() -> None:
    cfg = load_config("ml-100k")
    assert cfg.methods == {} and cfg.p2rec_models == []
    with pytest.raises(ValueError, match="no `p2rec` block"):
        p2rec_config(cfg)


def test_p2rec_model_train_block_overrides_the_global_one(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\ntrain: {epochs: 5, lr: 0.01}\nmodels: {sasrec: {}}\np2rec: {k: 4, aug_dim: 8}\n"
        "p2rec_models: {sasrec_adapter: {model: {dim: 8}, train: {lr: 0.1}}}\n"
    )
    cfg = load_config(str(path))
    p2 = p2rec_config(cfg)
    assert p2.k == 4 and p2.epochs == P2RecConfig().epochs
    spec = cfg.model_spec("sasrec_adapter")
    assert spec.train.lr == 0.1 and spec.train.epochs == 5 and spec.params == {"dim": 8}


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ("p2rec: {k: 4, kay: 3}\np2rec_models: {sasrec_init: {}}\n", "kay"),
        ("p2rec: {k: 4}\n", "p2rec_models"),
        ("p2rec: {}\np2rec_models: {sasrec_init: {modle: {}}}\n", "modle"),
        ("p2rec: {}\np2rec_models: {sasrec_init: {train: {epoch: 3}}}\n", "epoch"),
        ("p2rec: {}\np2rec_models: {sasrec: {}}\n", "both"),
        ("p2rc: {}\n", "p2rc"),
    ],
)
def test_p2rec_blocks_reject_mistakes(tmp_path: Path, body: str, bad: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodels: {sasrec: {}}\n" + body)
    with pytest.raises(ValueError, match=bad):
        p2rec_config(load_config(str(path)))  # the method's own block is parsed by the method


def test_variants_of_one_model_class_are_named_by_their_key(tmp_path: Path) -> None:
    from training.pipeline import model_dir

    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nmodels: {sasrec: {}}\np2rec: {k: 4, aug_dim: 8}\n"
        "p2rec_models:\n  sasrec_adapter: {model: {dim: 8}}\n"
        "  sasrec_adapter_id: {arch: sasrec_adapter, model: {dim: 8, id_embedding: true}}\n"
    )
    cfg = load_config(str(path))
    plain, variant = cfg.model_spec("sasrec_adapter"), cfg.model_spec("sasrec_adapter_id")
    assert (plain.kind, variant.kind) == ("sasrec_adapter", "sasrec_adapter")
    assert model_dir(cfg, plain, 0) != model_dir(cfg, variant, 0)
    assert cfg.model_spec("sasrec").kind == "sasrec"


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("delrec-*.yaml")))
def test_delrec_presets_load_and_their_teacher_prepares_the_same_data(preset: str) -> None:
    from training.llm.delrec.chain import teacher_config
    from training.llm.delrec.config import delrec_config

    cfg = load_config(preset)
    d = delrec_config(cfg)
    assert d.spec().n_candidates == 20 and len(d.spec().labels) == 20
    assert teacher_config(cfg, d).data_hash() == cfg.data_hash()
    assert "p2rec" not in cfg.methods


def test_delrec_block_rejects_unknown_keys(tmp_path: Path) -> None:
    from training.llm.delrec.config import delrec_config

    path = tmp_path / "d.yaml"
    path.write_text("name: d\nmodels: {sasrec: {}}\ndelrec: {n_soft_tokns: 3}\n")
    with pytest.raises(ValueError, match="n_soft_tokns"):
        delrec_config(load_config(str(path)))


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("relrec-*.yaml")))
def test_relrec_presets_load_and_their_teacher_prepares_the_same_data(preset: str) -> None:
    from training.llm.relrec.chain import relrec_teacher_config
    from training.llm.relrec.config import relrec_config

    cfg = load_config(preset)
    r = relrec_config(cfg)
    assert r.spec().n_candidates == 20 and len(r.spec().labels) == 20
    assert relrec_teacher_config(cfg, r).data_hash() == cfg.data_hash()
    assert set(cfg.methods) == {"relrec"}
    if preset in ("relrec-magazine", "relrec-giftcards", "relrec-ml100k"):  # the GPU-sized benchmarks
        assert cfg.eval.seeds == [0, 1, 2] and r.max_users is None and r.eval_users is None
        assert r.teacher_preset is not None and r.base_model == ""
    if preset == "relrec-cpu-magazine":  # REDUCED: one seed, ~50 users
        assert cfg.eval.seeds == [0] and r.max_users is not None and r.max_users <= 64
