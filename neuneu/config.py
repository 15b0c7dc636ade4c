"""Typed training configs: dataclasses in code, values in YAML (`configs/*.yaml`).

`load_config(path, overrides)` reads YAML with `yaml.safe_load`, rejects unknown keys and wrong
types naming the key and the file, then applies dotted overrides such as `train.lr=1e-3`
(values parsed as YAML scalars, so `1e-3`, `true`, `[a, b]` work).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from neuneu.data import UniqueKeyLoader
from neuneu.model import ModelConfig
from neuneu.sampling import SamplerConfig


@dataclass
class DataConfig(SamplerConfig):
    """What the model learns from, and how training episodes are drawn (see neuneu.sampling)."""

    sources: list[str] = field(default_factory=lambda: ["olmo_ladder"])
    data_dir: str | None = None  # None: --data / $NEUNEU_DATA / ../shared/data
    splits: str | None = None  # a splits YAML (a copy of neuneu/splits.yaml with rules for your own sources); None: that one
    min_points: int = 3  # shorter trajectories cannot be split into context and queries
    val_ratio: float = 0.2  # validation episodes: checkpoint protocol at this ratio, forecast
    pretrain_epochs: int = 0  # the first epochs train on synthetic curves only (neuneu.prior)
    calibration_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.4])  # conformal calibration episodes


@dataclass
class TrainConfig:
    name: str = "neuneu"  # runs/<name>/
    seed: int = 0
    lr: float = 1.0e-3
    weight_decay: float = 0.01
    batch_size: int = 64  # episodes per step
    steps_per_epoch: int = 250  # an "epoch" of sampled episodes = one validation round
    max_epochs: int = 40
    max_minutes: float = 14.0  # wall-clock cap on fitting (Lightning max_time)
    warmup_steps: int = 200
    grad_clip: float = 1.0
    patience: int = 8  # early stopping on val/mae, in epochs
    val_batch_size: int = 128  # episodes per validation batch
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    out_dir: str | None = None  # None: the run's folder <runs_dir>/<name>/ (`--promote` copies it out)
    ensemble: int = 1  # members trained from seeds seed, seed+1, …; their quantiles are averaged
    workers: int = 1  # ensemble members trained at once, one process each
    runs_dir: str = "runs"  # relative: from the working directory
    baselines: list[str] = field(default_factory=lambda: ["persistence", "log_linear", "logistic", "power_law"])


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer as is."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    enable_progress_bar: bool = True
    log_every_n_steps: int = 50


def _finite(lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False):
    """A test that a number lies in the interval (inclusive unless open) and is finite."""
    return lambda v: math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


# Values a training cannot run with, checked when a config is built (so before any training):
# key -> (test, what it must be)
RANGES = {
    "train.lr": (_finite(0, lo_open=True), "> 0"),
    "train.weight_decay": (_finite(0), ">= 0"),
    "train.max_minutes": (_finite(0), ">= 0 (0: no cap)"),
    "train.grad_clip": (_finite(0), ">= 0 (0: no clipping)"),
    **{f"train.{k}": (_finite(1), ">= 1") for k in ("batch_size", "steps_per_epoch", "max_epochs", "patience",
                                                   "val_batch_size", "ensemble", "workers")},
    **{f"train.{k}": (_finite(0), ">= 0") for k in ("warmup_steps", "num_threads")},
    "data.sources": (bool, "a non-empty list of sources"),
    "data.min_points": (_finite(2), ">= 2 (a context point and a query)"),
    "data.max_context": (_finite(2), ">= 2"),
    "data.max_query": (_finite(1), ">= 1"),
    "data.val_ratio": (_finite(0, 1, hi_open=True), "in [0, 1)"),
    "data.pretrain_epochs": (_finite(0), ">= 0"),
    "data.calibration_ratios": (lambda v: bool(v) and all(0 <= r < 1 for r in v), "a non-empty list of ratios in [0, 1)"),
    "data.thin_min": (_finite(2), ">= 2"),
    "data.context_dropout": (_finite(0, 1, hi_open=True), "in [0, 1)"),
    **{f"data.{k}": (_finite(0), ">= 0") for k in ("noise_max", "sibling_shift")},
    **{f"data.{f.name}": (_finite(0, 1), "in [0, 1]") for f in dataclasses.fields(DataConfig) if f.name.startswith("p_")},
    **{f"model.{k}": (_finite(1), ">= 1") for k in ("d_model", "n_layers", "d_ff", "max_context")},  # n_heads: ModelConfig
    "model.dropout": (_finite(0, 1, hi_open=True), "in [0, 1)"),
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self):
        if self.model.layout == "ref" and self.model.max_context < self.data.max_context:
            raise ValueError(
                f"data.max_context ({self.data.max_context}) must be <= model.max_context ({self.model.max_context}), "
                "the ref layout's position table"
            )
        if not 0 < self.data.min_ratio <= self.data.max_ratio < 1:
            raise ValueError("need 0 < data.min_ratio <= data.max_ratio < 1")
        for key, (ok, what) in RANGES.items():
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if not ok(value):
                finite = "finite and " if isinstance(value, float) and not math.isfinite(value) else ""
                raise ValueError(f"{key} must be {finite}{what}, got {value!r}")
        if self.data.thin_max < self.data.thin_min:
            raise ValueError(f"data.thin_max ({self.data.thin_max}) must be >= data.thin_min ({self.data.thin_min})")


class ConfigError(ValueError):
    pass


def _check(value, tp, where: str):
    """Coerce a YAML value to the field type `tp` or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {tp}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and isinstance(value, bool):
        return value
    if tp in (int, str) and isinstance(value, tp) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        what = f"{where}: unknown key" if where else "unknown section"
        raise ConfigError(f"{what} '{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, key)
        else:
            kwargs[name] = _check(value, tp, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None


def config_from_dict(values: dict, source: str = "config") -> Config:
    """Build a validated Config from nested primitives; errors are prefixed with `source`."""
    try:
        return _build(Config, values or {}, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    values: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path) as fh:
                values = yaml.load(fh, Loader=UniqueKeyLoader) or {}  # noqa: S506 (a SafeLoader)
        except IsADirectoryError:
            raise ConfigError(f"{source}: is a folder, not a YAML config") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not a text file, so not a YAML config") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML ({' '.join(str(err).split())})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        parts = key.strip().lstrip("-").split(".")
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(values, source + (f" (with overrides {' '.join(overrides)})" if overrides else ""))


def config_to_dict(cfg: Config) -> dict:
    """Nested primitives (for YAML, logs and checkpoints)."""
    return dataclasses.asdict(cfg)
