"""`train(cfg) -> Path`: the whole training run as one function (used by train.py, tune, tests).

Lightning `.ckpt` files go to `runs/<name>/` (gitignored; `last.ckpt` is what `resume` reads);
the result is exported as a slim inference checkpoint `checkpoints/<name>.pt`: a plain dict of
primitives and tensors that loads with `torch.load(..., weights_only=True)` and needs no
Lightning (see `neuneu.neural`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

import neuneu
from neuneu.config import Config, config_to_dict
from neuneu.data import REPO_ROOT, data_fingerprint
from neuneu.features import ACC_SCALE, FEATURES, GAP_SCALE, LOSS_CENTER, LOSS_SCALE
from neuneu.lit import EpisodeDataModule, LitNeuneu, PointsProgressBar, quiet_lightning, validation_episodes

from neuneu.neural import CHECKPOINT_FORMAT  # noqa: E402


def _under_repo(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def train(cfg: Config, *, resume: bool = False, callbacks: list | None = None, points=None, quiet: bool = False) -> Path:
    """Train the configured model and export `<train.out_dir>/<train.name>.pt`.

    Args:
        cfg: the full config (`neuneu.config.load_config`).
        resume: continue from `<train.runs_dir>/<train.name>/last.ckpt` (after an interruption).
        callbacks: extra Lightning callbacks (tests use one to interrupt a run).
        points: a point frame to use instead of loading `cfg.data.sources` (tests).
        quiet: no progress bar and no summary print.

    Returns:
        The path of the exported checkpoint.
    """
    t0 = time.time()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    run_dir = _under_repo(cfg.train.runs_dir) / cfg.train.name
    last = run_dir / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no {last} to resume from")
    if not resume:  # a fresh run must not be confused with a stale one (by --resume or best-v1 names)
        for stale in run_dir.glob("*.ckpt"):
            stale.unlink()
    ref = cfg.model.layout == "ref"
    data = EpisodeDataModule(
        cfg.data, cfg.train.batch_size, cfg.train.steps_per_epoch, cfg.train.seed, cfg.train.val_batch_size,
        points=points, val_max_tokens=2_000 if ref else 20_000,
    )
    max_steps = cfg.train.max_epochs * cfg.train.steps_per_epoch
    module = LitNeuneu(
        config_to_dict(cfg)["model"], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
        warmup_steps=cfg.train.warmup_steps, max_steps=max_steps,
    )
    best = ModelCheckpoint(dirpath=run_dir, filename="best", monitor="val/mae", mode="min", save_last=True)
    trainer_args = config_to_dict(cfg)["trainer"]
    if quiet:
        trainer_args["enable_progress_bar"] = False
    quiet_lightning()  # no adverts, no warnings about choices made on purpose
    trainer = L.Trainer(
        **trainer_args,
        max_epochs=cfg.train.max_epochs,
        max_time={"minutes": cfg.train.max_minutes} if cfg.train.max_minutes > 0 else None,
        gradient_clip_val=cfg.train.grad_clip or None,
        logger=CSVLogger(_under_repo(cfg.train.runs_dir), name=cfg.train.name),
        callbacks=[best, EarlyStopping("val/mae", patience=cfg.train.patience, mode="min"), *(callbacks or []),
                   *([PointsProgressBar()] if trainer_args.get("enable_progress_bar", True) else [])],
        deterministic=True,
        enable_model_summary=False,  # a 14-line table of a 0.1M-parameter model; the summary says what matters
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    fit_seconds = time.time() - t0
    out = _under_repo(cfg.train.out_dir) / f"{cfg.train.name}.pt"
    if not trainer.is_global_zero:
        return out  # multi-process: rank 0 alone evaluates and exports (the others would race on its files)
    if best.best_model_path:
        # This run's own best .ckpt, written moments ago under runs/ (its hyper-parameters are
        # dataclasses, which weights_only=True refuses); user-supplied files never come here.
        module = LitNeuneu.load_from_checkpoint(best.best_model_path, map_location="cpu", weights_only=False)
    figures, calibration = evaluate_validation(module.model, data, cfg)
    figures["name"] = cfg.train.name
    figures["fit_seconds"] = round(fit_seconds, 1)
    figures["epochs"] = int(trainer.current_epoch)
    figures["steps"] = int(trainer.global_step)
    export_checkpoint(module.model, cfg, out, data_fingerprint(data.train_points), figures, calibration.to_dict(),
                      trained_on(data.points))
    (run_dir / "validation.json").write_text(json.dumps(figures, indent=2))
    if not quiet:
        print(summary(figures, out))
        print(f"wrote {out} (use it: neuneu predict RUNS.csv --checkpoint {out}); Lightning's last.ckpt "
              f"(for --resume), the CSV logs (metrics.csv) and validation.json under {run_dir}/")
    return out


def trained_on(points) -> dict:
    """What a checkpoint saw, for `checkpoints/README.md` and the leave-one-family-out guard:
    the sources, families and runs of its train split, and its validation runs."""
    out = {}
    for split in ("train", "validation"):
        part = points[points["split"] == split]
        out[split] = {
            "sources": sorted(map(str, part["source"].unique())),
            "families": sorted(map(str, part["family"].unique())),
            "runs": int(part["run"].nunique()),
            "trajectories": int(part.groupby(["run", "task", "metric"]).ngroups),
        }
    out["sources"] = sorted(set(out["train"]["sources"]) | set(out["validation"]["sources"]))
    return out


def export_checkpoint(model: torch.nn.Module, cfg: Config, path: Path, fingerprint: str, figures: dict,
                      calibration: dict | None = None, seen: dict | None = None) -> None:
    """The slim inference checkpoint: primitives and tensors only (weights_only-loadable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "neuneu_version": neuneu.__version__,
        "config": config_to_dict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "features": {
            "names": list(FEATURES), "acc_scale": ACC_SCALE, "loss_center": LOSS_CENTER,
            "loss_scale": LOSS_SCALE, "gap_scale": GAP_SCALE, "max_context": cfg.data.max_context,
        },
        "calibration": calibration or {},
        "data_fingerprint": fingerprint,
        "trained_on": seen or {"sources": list(cfg.data.sources)},
        "validation": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in figures.items()},
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint behind


def fit_calibration(model: torch.nn.Module, data: EpisodeDataModule, cfg: Config):
    """Conformal calibration of the quantiles (`neuneu.calibration`) on the validation runs:
    checkpoint episodes at every `cfg.data.calibration_ratios`, each episode weighing 1.
    Returns (calibration, {ratio: (episodes, raw quantiles, horizon)})."""
    from neuneu.calibration import Calibration
    from neuneu.neural import predict_quantiles

    passes, quantiles, truth, horizon, weight = {}, [], [], [], []
    for ratio in cfg.data.calibration_ratios:
        eps = data.val_episodes if ratio == cfg.data.val_ratio else validation_episodes(data.points, cfg.data, ratio)
        raw, h = predict_quantiles(model, eps.context, eps.query, cfg.data.max_context, return_horizon=True)
        passes[ratio] = (eps, raw, h)
        ok = eps.query.mask & np.isfinite(eps.target)
        w = np.broadcast_to(1.0 / np.maximum(ok.sum(1, keepdims=True), 1), ok.shape)
        quantiles.append(raw[ok]), truth.append(eps.target[ok]), horizon.append(h[ok]), weight.append(w[ok])
    calibration = Calibration.fit(np.concatenate(quantiles), np.concatenate(truth), np.concatenate(horizon),
                                  np.concatenate(weight))
    return calibration, passes


def evaluate_validation(model: torch.nn.Module, data: EpisodeDataModule, cfg: Config) -> tuple[dict, object]:
    """Fit the interval calibration, then score the model (raw and calibrated) and the
    baselines on the validation episodes (ratio `val_ratio`). Returns (figures, calibration)."""
    from neuneu.neural import predict_quantiles

    calibration, passes = fit_calibration(model, data, cfg)
    episodes = data.val_episodes
    if cfg.data.val_ratio in passes:
        _, raw, horizon = passes[cfg.data.val_ratio]
    else:
        raw, horizon = predict_quantiles(model, episodes.context, episodes.query, cfg.data.max_context, return_horizon=True)
    scores = episode_scores(episodes, np.clip(calibration.apply(raw, horizon), 0, 1))
    figures = {"n_episodes": len(episodes), "val_ratio": cfg.data.val_ratio, **{f"neuneu_{k}": v for k, v in scores.items()},
               "neuneu_coverage80_uncalibrated": episode_scores(episodes, np.clip(raw, 0, 1))["coverage80"],
               "validation_runs": int(data.points.loc[data.points["split"] == "validation", "run"].nunique())}
    figures["baselines"] = baseline_scores(episodes, cfg.train.baselines)
    return figures, calibration


def baseline_scores(episodes, names: list[str]) -> dict:
    """{name: {mae, coverage80}} of registered baselines on `episodes`; missing ones are noted."""
    try:
        from neuneu.registry import get_predictor
    except ImportError as err:
        print(f"(baselines unavailable: neuneu.registry cannot be imported: {err})")
        return {}
    out = {}
    for name in names:
        try:
            method = get_predictor(name)
            quantiles = method.fit(episodes.context).predict(episodes.query)
        except Exception as err:  # one broken baseline must not lose a finished training run
            print(f"(baseline {name} failed on the validation episodes: {type(err).__name__}: {err})")
            continue
        out[name] = episode_scores(episodes, quantiles)
    return out


def episode_scores(episodes, quantiles: np.ndarray) -> dict:
    """MAE of q50 (mean over episodes of the mean over its queries) and q10–q90 coverage
    (same weighting), in accuracy units. quantiles (E, Q, 5)."""
    truth = episodes.target
    valid = episodes.query.mask & np.isfinite(truth)
    n = np.maximum(valid.sum(1), 1)
    err = np.where(valid, np.abs(quantiles[..., 2] - truth), 0.0).sum(1) / n
    inside = np.where(valid, (truth >= quantiles[..., 0]) & (truth <= quantiles[..., 4]), 0.0).sum(1) / n
    has = valid.any(1)
    return {"mae": float(err[has].mean()), "coverage80": float(inside[has].mean())}


def summary(figures: dict, path: Path) -> str:
    base = figures.get("baselines", {})
    lines = [
        f"checkpoint: {path}",
        f"validation ({figures['n_episodes']} episodes of {figures.get('validation_runs', '?')} runs: checkpoint protocol, "
        f"ratio {figures.get('val_ratio', 0.2):g}, forecast; coverage after conformal calibration, "
        f"{figures.get('neuneu_coverage80_uncalibrated', float('nan')):.3f} before)",
        f"  {'method':<16} {'MAE (acc pts)':>13} {'coverage80':>10}",
        f"  {figures.get('name', 'neuneu'):<16} {100 * figures['neuneu_mae']:>13.3f} {figures['neuneu_coverage80']:>10.3f}",
    ]
    for name, s in sorted(base.items(), key=lambda kv: kv[1]["mae"]):
        lines.append(f"  {name:<16} {100 * s['mae']:>13.3f} {s['coverage80']:>10.3f}")
    if base:
        best = min(base, key=lambda n: base[n]["mae"])
        lines.append(f"  neuneu / best baseline ({best}) = {figures['neuneu_mae'] / base[best]['mae']:.3f}")
    lines.append(f"  training time: {figures['fit_seconds']:.0f} s, {figures['steps']} steps")
    return "\n".join(lines)
