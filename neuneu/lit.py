"""Lightning wrappers: the training system (LitNeuneu) and the episode DataModule."""

from __future__ import annotations

import logging
import math
import warnings

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, IterableDataset
from torchmetrics import MeanMetric

from neuneu.config import DataConfig
from neuneu.data import InputError
from neuneu.episodes import checkpoint_episodes
from neuneu.features import featurize, from_target
from neuneu.model import ModelConfig, build_model, pinball_loss
from neuneu.neural import feature_batches, to_batch
from neuneu.sampling import TrajectoryBank, sample_batch


class LitNeuneu(L.LightningModule):
    """Pinball-loss training of a neuneu network; logs val/mae and val/coverage80."""

    def __init__(self, model: dict, lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 200,
                 max_steps: int = 10_000):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelConfig(**model))
        self.val_mae = MeanMetric()
        self.val_coverage = MeanMetric()
        self.val_pinball = MeanMetric()

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["context"], batch["context_mask"], batch["query"], batch["query_mask"], batch["anchor"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = pinball_loss(self(batch), batch["target"], batch["query_mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["anchor"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self(batch)  # (B, Q, 5) in target space
        mask = batch["query_mask"]
        acc = from_target(pred, batch["anchor"]).clamp(0, 1)  # (B, Q, 5) accuracy
        truth = batch["accuracy"]
        weight = batch["weight"][mask]
        self.val_mae.update((acc[..., 2] - truth).abs()[mask], weight)
        inside = ((truth >= acc[..., 0]) & (truth <= acc[..., 4])).float()
        self.val_coverage.update(inside[mask], weight)
        # Pinball in target space, per query, weighted per episode like the MAE.
        self.val_pinball.update(pinball_loss(pred, batch["target"], mask), mask.any(1).sum().float())
        self.log("val/mae", self.val_mae, prog_bar=True, batch_size=len(mask))
        self.log("val/coverage80", self.val_coverage, batch_size=len(mask))
        self.log("val/pinball", self.val_pinball, batch_size=len(mask))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warm, total = self.hparams.warmup_steps, max(self.hparams.max_steps, 1)

        def schedule(step: int) -> float:  # linear warmup, then cosine to 10% of lr, by step only
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(total - warm, 1)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class _SampledEpisodes(IterableDataset):
    """`steps` random batches per epoch, seeded by (seed, epoch): reproducible and resumable."""

    def __init__(self, bank: TrajectoryBank, cfg: DataConfig, batch_size: int, steps: int, seed: int, epoch_fn,
                 rank: int = 0, world: int = 1, laws: bool = False):
        # The first cfg.pretrain_epochs epochs draw synthetic curves only (prior pretraining).
        self.bank, self.cfg, self.batch_size, self.steps, self.seed, self.epoch_fn = bank, cfg, batch_size, steps, seed, epoch_fn
        self.rank, self.world = rank, world  # DDP: this process's share of each global batch
        self.laws = laws  # fill the law features (a model trained with model.law_features)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        epoch = self.epoch_fn()
        rng = np.random.default_rng([self.seed, epoch])
        synthetic = epoch < self.cfg.pretrain_epochs
        for _ in range(self.steps):
            episodes = sample_batch(self.bank, self.cfg, self.batch_size, rng, synthetic)
            if self.world > 1:  # every rank draws the same global batch (same seed) and keeps its share
                episodes = episodes.subset(np.arange(self.rank, len(episodes), self.world))
            feats = featurize(vars(episodes.context), vars(episodes.query), self.cfg.max_context, self.laws,
                              index=episodes.index)
            yield to_batch(feats, episodes.target)


def load_points(cfg: DataConfig, report=print) -> pd.DataFrame:
    """All points of the configured sources, with their split labels. Rows a source drops
    (e.g. Pythia's step 0) are reported through `report` (None: silent), never dropped quietly."""
    from neuneu.data import load_source

    frames = [load_source(s, cfg.data_dir, splits=cfg.splits) for s in cfg.sources]
    if report is not None:
        for source, frame in zip(cfg.sources, frames):
            for why, n in (frame.attrs.get("dropped") or {}).items():
                report(f"{source}: dropped {n:,} row{'s' * (n != 1)} ({why})")
    return pd.concat(frames, ignore_index=True)


def validation_episodes(points: pd.DataFrame, cfg: DataConfig, ratio: float | None = None):
    """Fixed validation episodes: checkpoint protocol at `ratio` (default `val_ratio`), forecast,
    validation split of every training source."""
    val = points[points["split"] == "validation"]
    if val.empty:
        raise InputError(f"no validation runs in sources {cfg.sources}: early stopping and the calibration need some; "
                         f"a source's validation runs are named by {cfg.splits or 'neuneu/splits.yaml'} (sources: NAME: "
                         "validation: {runs: [...]}); for a source of your own, copy that file, add a rule and pass "
                         "data.splits=PATH")
    return checkpoint_episodes(val, cfg.val_ratio if ratio is None else ratio, variant="forecast", min_points=cfg.min_points)


class EpisodeDataModule(L.LightningDataModule):
    """Training episodes sampled from the train split; fixed validation episodes (1B runs)."""

    def __init__(self, cfg: DataConfig, batch_size: int, steps_per_epoch: int, seed: int, val_batch_size: int = 128,
                 points: pd.DataFrame | None = None, val_max_tokens: int = 20_000, laws: bool = False):
        super().__init__()
        self.laws = laws
        self.cfg, self.batch_size, self.steps_per_epoch, self.seed = cfg, batch_size, steps_per_epoch, seed
        self.val_batch_size, self.val_max_tokens = val_batch_size, val_max_tokens
        self.points = points

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "bank", None) is not None:
            return
        if self.points is None:
            self.points = load_points(self.cfg)
        points = self.points
        train = points[points["split"] == "train"]
        self.train_points = train
        self.bank = TrajectoryBank(train, self.cfg.min_points)
        self.val_episodes = validation_episodes(points, self.cfg)
        # Validation weights need each episode's full query count, even when chunked.
        feats = featurize(vars(self.val_episodes.context), vars(self.val_episodes.query), self.cfg.max_context, self.laws)
        target = self.val_episodes.target
        n_query = np.maximum((feats.query_mask & np.isfinite(target)).sum(1), 1)  # (E,)
        self.val_batches = []
        for (first, _), sub, tgt in feature_batches(feats, target, self.val_batch_size, self.val_max_tokens):
            batch = to_batch(sub, tgt)
            # Chunks cut long episodes: weigh by the episode's full query count, not the chunk's.
            n = torch.from_numpy(n_query[first : first + len(sub.anchor)].astype(np.float32))[:, None]
            batch["weight"] = batch["query_mask"].float() / n
            self.val_batches.append(batch)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)  # batch_size is the global batch, split over the DDP ranks
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        data = _SampledEpisodes(self.bank, self.cfg, self.batch_size, self.steps_per_epoch, self.seed, self._epoch, rank, world,
                                self.laws)
        return DataLoader(data, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_batches, batch_size=None, num_workers=0, shuffle=False)


class PointsProgressBar(TQDMProgressBar):
    """Lightning's progress bar with the validation MAE in accuracy points ("val MAE 2.71 pts")
    and the pinball loss as "loss"; no logger version number."""

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if "train/loss" in items:
            items["loss"] = items.pop("train/loss")
        if "val/mae" in items:
            items["val MAE"] = f"{100 * float(items.pop('val/mae')):.2f} pts"
        return items


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip")


# Lightning's messages that say nothing about this run: adverts, and warnings about choices made
# on purpose (runs/<name>/ holds the logs, so it is never empty; no data-loader workers, as the
# batches are sampled in-process; an internal deprecation between Lightning and torch).
_SPURIOUS = (
    r"Checkpoint directory .* exists and is not empty",
    r"Your `IterableDataset` has `__len__` defined",
    r"The '\w+_dataloader' does not have many workers",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def quiet_lightning() -> None:
    """Silence Lightning's "💡 Tip" adverts (litlogger, litmodels) and the warnings in `_SPURIOUS`
    for this process; everything else Lightning says is kept. Idempotent."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning_utilities.core.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in log.filters):
            log.addFilter(_NoTips())
    for message in _SPURIOUS:
        warnings.filterwarnings("ignore", message=message)
