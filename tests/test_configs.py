"""Every config in configs/ loads; bad keys, types and overrides are rejected by name."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1e-3", "train.lr must be > 0, got -0.001"),
    ("train.lr=.nan", "train.lr must be finite and > 0, got nan"),
    ("train.max_minutes=.inf", "train.max_minutes must be finite and >= 0"),
    ("model.n_heads=0", "model.n_heads"),
    ("train.batch_size=0", "train.batch_size must be >= 1"),
    ("train.ensemble=0", "train.ensemble must be >= 1"),
    ("data.sources=[]", "data.sources must be a non-empty list"),
    ("data.max_context=0", "data.max_context must be >= 2"),
    ("data.calibration_ratios=[0.2, 1.5]", "data.calibration_ratios must be a non-empty list of ratios in [0, 1)"),
    ("data.p_sweep=1.2", "data.p_sweep must be in [0, 1]"),
    ("data.thin_max=4", "data.thin_max (4) must be >= data.thin_min"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
])
def test_values_a_training_cannot_run_with_are_refused_before_it_starts(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_a_config_that_is_not_yaml_or_is_a_folder_is_a_config_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: [1e-3\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    path.write_bytes(b"\x80\x02binary")  # e.g. a checkpoint given as the config
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"\(with overrides modle.n_layers=2\): unknown section 'modle'"):
        load_config(None, ["modle.n_layers=2"])  # no stray ": :" where the section's name would be
    # a key given twice: PyYAML kept the last, so a second `train:` section silently dropped the first
    path.write_text("train:\n  name: a\n  max_epochs: 2\nmodel:\n  n_layers: 1\ntrain:\n  seed: 3\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML \('train' given twice .* line 6"):
        load_config(path)
    path.write_text("train:\n  seed: 3\n  seed: 4\n")
    with pytest.raises(ConfigError, match=r"'seed' given twice"):
        load_config(path)
    path.write_text("train:\n  <<: {lr: 0.01, seed: 1}\n  name: x\n  seed: 3\n")  # a merge key may be overridden
    merged = load_config(path).train
    assert (merged.name, merged.lr, merged.seed) == ("x", 0.01, 3)
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="a list is not a key"):  # not a TypeError traceback
        load_config(path)


# Exact definitions (config): each test below turns red under one realistic slip (a mutation audit).


def test_an_override_may_be_written_with_leading_dashes():
    """Kills: load_config no longer stripping the leading '--' of an override such as --train.lr=2e-3."""
    cfg = load_config(None, ["--train.lr=2e-3", "--model.n_layers=2"])
    assert cfg.train.lr == 2e-3 and cfg.model.n_layers == 2


def test_a_boolean_is_not_accepted_as_an_integer():
    """Kills: _check accepting true/false for an int field (bool is a subclass of int)."""
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(None, ["train.batch_size=true"])


def test_a_fixed_context_ratio_is_allowed():
    """Kills: Config refusing data.min_ratio == data.max_ratio (< instead of <=)."""
    cfg = load_config(None, ["data.min_ratio=0.2", "data.max_ratio=0.2"])
    assert cfg.data.min_ratio == cfg.data.max_ratio == 0.2
    with pytest.raises(ConfigError, match="min_ratio"):
        load_config(None, ["data.min_ratio=0.3", "data.max_ratio=0.2"])
