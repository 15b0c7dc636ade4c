"""Every config in configs/ loads; bad keys, types and overrides are rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuneu.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_expected_configs_exist():
    assert {"default.yaml", "debug.yaml", "paper.yaml", "ref_layout.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.d_model % cfg.model.n_heads == 0
    assert cfg.train.name  # every config names its checkpoint


def test_paper_config_is_the_published_size_and_ref_layout_matches_default():
    paper = load_config(CONFIGS[0].parent / "paper.yaml").model
    assert (paper.n_layers, paper.d_model, paper.n_heads) == (6, 512, 8)
    default, ref = (load_config(CONFIGS[0].parent / n) for n in ("default.yaml", "ref_layout.yaml"))
    assert ref.model.layout == "ref" and default.model.layout == "neuneu"
    same = ("d_model", "n_layers", "n_heads", "d_ff")
    assert [getattr(ref.model, k) for k in same] == [getattr(default.model, k) for k in same]
    # the issue-4 ablation keeps its own record: the olmo_ladder train split, a 13-minute budget
    assert ref.data.sources == ["olmo_ladder"] and ref.train.max_minutes == 13.0


def test_unknown_key_is_rejected_with_its_name_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_modle: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model.*d_modle"):
        load_config(path)


def test_unknown_section_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optimiser:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="optimiser"):
        load_config(path)


def test_wrong_type_is_rejected_with_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(path)


def test_dotted_overrides_apply_and_are_checked():
    cfg = load_config(None, ["train.lr=1e-3", "model.n_layers=2", "data.sources=[olmo_ladder, pythia]"])
    assert cfg.train.lr == 1e-3 and cfg.model.n_layers == 2 and cfg.data.sources == ["olmo_ladder", "pythia"]
    with pytest.raises(ConfigError, match="n_layer"):
        load_config(None, ["model.n_layer=2"])
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(None, ["train.lr=fast"])


def test_cross_field_checks_name_the_keys():
    with pytest.raises(ConfigError, match="n_heads"):
        load_config(None, ["model.d_model=30", "model.n_heads=4"])
    with pytest.raises(ConfigError, match="max_context"):
        load_config(None, ["model.layout=ref", "data.max_context=128", "model.max_context=64"])
