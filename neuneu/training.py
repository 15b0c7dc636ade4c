"""`train(cfg) -> Path`: the whole training run as one function (used by train.py, tune, tests).

Everything goes to `runs/<name>/` (gitignored): Lightning's `last.ckpt` (what `resume` reads),
the CSV logs, `validation.json`, and the slim inference checkpoint `<name>.pt`: a plain dict of
primitives and tensors that loads with `torch.load(..., weights_only=True)` and needs no
Lightning (see `neuneu.neural`).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger

import neuneu
from neuneu.config import Config, config_from_dict, config_to_dict
from neuneu.data import InputError, data_fingerprint
from neuneu.features import ACC_SCALE, FEATURES, GAP_SCALE, LOSS_CENTER, LOSS_SCALE
from neuneu.model import Ensemble
from neuneu.lit import EpisodeDataModule, LitNeuneu, PointsProgressBar, quiet_lightning, validation_episodes

from neuneu.neural import CHECKPOINT_FORMAT  # noqa: E402


def run_dir(cfg: Config) -> Path:
    """`<train.runs_dir>/<train.name>/`: the run's logs, `last.ckpt` and, by default, its checkpoint.
    A relative `runs_dir` (or `out_dir`) is taken from the working directory, as every path given
    on the command line is."""
    return Path(cfg.train.runs_dir).absolute() / cfg.train.name


def output_path(cfg: Config) -> Path:
    """Where `train` exports the slim checkpoint: `<train.out_dir>/<name>.pt`, by default under
    the run's own folder `runs/<name>/` (never a tracked file; `--promote` copies it out)."""
    return (Path(cfg.train.out_dir).absolute() if cfg.train.out_dir else run_dir(cfg)) / f"{cfg.train.name}.pt"


class BestWeights(Callback):
    """Keeps the weights of the best validation epoch in memory (and in `last.ckpt`, as plain
    tensors), so the end of training never reads a checkpoint path back: nothing is unpickled,
    not even a path a crafted `last.ckpt` could point to."""

    def __init__(self, monitor: str = "val/mae"):
        self.monitor, self.best, self.weights = monitor, float("inf"), None

    def on_validation_end(self, trainer, module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        if float(value) < self.best:
            self.best = float(value)
            self.weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def state_dict(self) -> dict:
        return {"best": self.best, "weights": self.weights or {}}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state.get("best", float("inf")))
        self.weights = dict(state.get("weights") or {}) or None


def _member_config(cfg: Config, k: int) -> Config:
    """Member k of an ensemble: seed + k, its own run folder `runs/<name>/member-k`."""
    if cfg.train.ensemble == 1:
        return cfg
    train_cfg = dataclasses.replace(cfg.train, seed=cfg.train.seed + k,
                                    runs_dir=str(run_dir(cfg)), name=f"member-{k}")
    return dataclasses.replace(cfg, train=train_cfg)


def check_resumable(last: Path) -> None:
    """`last.ckpt` loads as plain tensors and primitives (`weights_only=True`): a file holding
    pickled objects is refused with an InputError before Lightning opens it, and nothing in it runs."""
    try:
        torch.load(last, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for pickled code, RuntimeError/EOFError for a broken file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{last}: cannot resume from it: not a plain checkpoint of this training ({first})") from None


def _trainer(trainer_args: dict, cfg: Config, folder: Path, own: list, callbacks: list) -> L.Trainer:
    """The Lightning Trainer of one member: the config's trainer section plus the training's own choices."""
    return L.Trainer(
        **trainer_args,
        max_epochs=cfg.train.max_epochs,
        max_time={"minutes": cfg.train.max_minutes} if cfg.train.max_minutes > 0 else None,
        gradient_clip_val=cfg.train.grad_clip or None,
        logger=CSVLogger(folder.parent, name=cfg.train.name),
        callbacks=[*own, EarlyStopping("val/mae", patience=cfg.train.patience, mode="min"), *callbacks,
                   *([PointsProgressBar()] if trainer_args.get("enable_progress_bar", True) else [])],
        deterministic=True,
        enable_model_summary=False,  # a 14-line table of a 0.1M-parameter model; the summary says what matters
    )


def stop_reason(trainer: L.Trainer, cfg: Config) -> str:
    """Why a member's fit ended: "finished" (every planned step), "early stopping" (train.patience),
    "max_minutes" (the wall-clock cap: the model may be under-trained) or "stopped"."""
    if trainer.global_step >= cfg.train.max_epochs * cfg.train.steps_per_epoch:
        return "finished"
    stopping = trainer.early_stopping_callback
    if stopping is not None and stopping.stopped_epoch > 0:
        return "early stopping"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and (left := timer.time_remaining()) is not None and left <= 0:
        return "max_minutes"
    return "stopped"


def fit_member(cfg: Config, data: EpisodeDataModule, *, resume: bool, callbacks: list | None, quiet: bool):
    """Fit one network; returns (its best-validation weights loaded, trainer)."""
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    folder = run_dir(cfg)
    last = folder / "last.ckpt"
    max_steps = cfg.train.max_epochs * cfg.train.steps_per_epoch
    module = LitNeuneu(
        config_to_dict(cfg)["model"], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
        warmup_steps=cfg.train.warmup_steps, max_steps=max_steps,
    )
    best = BestWeights("val/mae")
    keep_last = ModelCheckpoint(dirpath=folder, filename="last", save_last=False, save_top_k=1, monitor=None,
                                enable_version_counter=False)
    trainer_args = config_to_dict(cfg)["trainer"]
    if quiet:
        trainer_args["enable_progress_bar"] = False
    quiet_lightning()  # no adverts, no warnings about choices made on purpose
    try:
        trainer = _trainer(trainer_args, cfg, folder, [best, keep_last], callbacks or [])
    except (MisconfigurationException, ValueError) as err:  # the trainer section, as Lightning reads it
        raise InputError(f"trainer: {' '.join(str(err).split())}") from None
    if not resume:  # a fresh run must not be confused with a stale one (by --resume); after the
        for stale in folder.glob("*.ckpt"):  # trainer section was accepted, so a typo deletes nothing
            stale.unlink()
            if not quiet:
                print(f"starting afresh: removed {stale} of an earlier run of this name (--resume would have "
                      "continued it)", flush=True)
    resume_from = str(last) if resume and last.is_file() else None
    if resume_from:
        check_resumable(last)
    # weights_only=True explicitly: torch's default can be flipped by TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=True)
    except RuntimeError as err:
        if resume_from and "loading state_dict" in str(err):  # another architecture than the checkpoint's
            raise InputError(f"--resume: {last} holds a model of another shape than this config's (model section "
                             "changed?); resume with the config it was trained with, or train afresh without --resume") from None
        raise
    except SystemExit:  # Lightning answers Ctrl-C with a graceful shutdown and sys.exit(1), SIGINT left ignored
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None  # the callers' (train_cli: "--resume continues", tune: the trial fails)
    except MisconfigurationException as err:  # e.g. a checkpoint already past this config's max_epochs
        if not resume_from:
            raise
        raise InputError(f"--resume: {last}: {' '.join(str(err).split())}; resume with the config it was trained "
                         "with (train.max_epochs), or train afresh without --resume") from None
    if best.weights is not None:
        module.load_state_dict(best.weights)
    return module, trainer


def _fit_member_job(values: dict, k: int, resume: bool) -> str:
    """One ensemble member in a worker process: fit it, save its weights (tensors only) under its
    run folder and return that path (`train.workers` > 1)."""
    from neuneu.config import config_from_dict

    cfg = config_from_dict(values)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    member_cfg = _member_config(cfg, k)
    from neuneu.lit import load_points

    data = EpisodeDataModule(cfg.data, cfg.train.batch_size, cfg.train.steps_per_epoch, member_cfg.train.seed,
                             cfg.train.val_batch_size, points=load_points(cfg.data, report=None),  # reported once, by the parent
                             laws=cfg.model.law_features)
    module, trainer = fit_member(member_cfg, data, resume=resume, callbacks=None, quiet=True)
    path = run_dir(member_cfg) / "weights.pt"
    torch.save({k: v.detach().cpu() for k, v in module.model.state_dict().items()}, path)
    return str(path), int(trainer.global_step), stop_reason(trainer, member_cfg)


def _fit_members_in_parallel(cfg: Config, resume: bool, quiet: bool) -> tuple[list[torch.nn.Module], int, list[str]]:
    """`train.ensemble` members in `train.workers` processes at once (spawned: no shared state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from neuneu.model import ModelConfig, build_model

    values = config_to_dict(cfg)
    workers = min(cfg.train.workers, cfg.train.ensemble)
    if not quiet:
        print(f"training {cfg.train.ensemble} members in {workers} processes (seeds {cfg.train.seed}…"
              f"{cfg.train.seed + cfg.train.ensemble - 1}); logs under {run_dir(cfg)}/",
              flush=True)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_fit_member_job, [values] * cfg.train.ensemble, range(cfg.train.ensemble),
                             [resume] * cfg.train.ensemble))
    members = []
    for path, _, _ in done:
        model = build_model(ModelConfig(**values["model"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        members.append(model)
    return members, sum(steps for _, steps, _ in done), [reason for _, _, reason in done]


def _data_module(cfg: Config, points=None) -> EpisodeDataModule:
    """The training episodes and fixed validation episodes of `cfg` (`points`: instead of loading its sources)."""
    return EpisodeDataModule(
        cfg.data, cfg.train.batch_size, cfg.train.steps_per_epoch, cfg.train.seed, cfg.train.val_batch_size,
        points=points, val_max_tokens=2_000 if cfg.model.layout == "ref" else 20_000, laws=cfg.model.law_features,
    )


def train(cfg: Config, *, resume: bool = False, callbacks: list | None = None, points=None, quiet: bool = False) -> Path:
    """Train the configured model (an ensemble of `train.ensemble` seeds) and export it.

    Args:
        cfg: the full config (`neuneu.config.load_config`).
        resume: continue from `<train.runs_dir>/<train.name>/last.ckpt` (each member's own).
        callbacks: extra Lightning callbacks (tests use one to interrupt a run).
        points: a point frame to use instead of loading `cfg.data.sources` (tests).
        quiet: no progress bar and no summary print.

    Returns:
        The path of the exported checkpoint (`output_path`).
    """
    t0 = time.time()
    from neuneu.registry import PREDICTORS

    if unknown := [name for name in cfg.train.baselines if name not in PREDICTORS]:  # before the fit, not after it
        raise InputError(f"train.baselines: unknown baseline(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(PREDICTORS)}")
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    folder = run_dir(cfg)
    first_last = run_dir(_member_config(cfg, 0)) / "last.ckpt"
    if resume and not first_last.is_file():
        raise FileNotFoundError(f"--resume: no {first_last} to resume from")
    data = _data_module(cfg, points)
    members, trainer, stopped = [], None, []
    parallel = cfg.train.workers > 1 and cfg.train.ensemble > 1 and points is None and not callbacks
    if parallel:
        members, member_steps, stopped = _fit_members_in_parallel(cfg, resume, quiet)
        data.setup()
    for k in range(0 if parallel else cfg.train.ensemble):
        if not quiet and cfg.train.ensemble > 1:
            print(f"training member {k + 1} of {cfg.train.ensemble} (seed {cfg.train.seed + k})", flush=True)
        member_cfg = _member_config(cfg, k)
        data.seed = member_cfg.train.seed
        module, trainer = fit_member(member_cfg, data, resume=resume, callbacks=callbacks, quiet=quiet)
        members.append(module.model)
        stopped.append(stop_reason(trainer, member_cfg))
    fit_seconds = time.time() - t0
    out = output_path(cfg)
    if trainer is not None and not trainer.is_global_zero:
        return out  # multi-process: rank 0 alone evaluates and exports (the others would race on its files)
    model = members[0] if len(members) == 1 else Ensemble(members)
    if not quiet:
        print(f"calibrating and scoring on the validation runs (ratios {', '.join(map(str, cfg.data.calibration_ratios))})...",
              flush=True)
    figures, calibration = evaluate_validation(model, data, cfg)
    figures["name"] = cfg.train.name
    figures["fit_seconds"] = round(fit_seconds, 1)
    if trainer is not None:  # (members trained in worker processes report in their own logs)
        figures["epochs"] = int(trainer.current_epoch)
        figures["steps"] = int(trainer.global_step)
    else:
        figures["steps"] = member_steps  # summed over the members
    figures["ensemble"] = len(members)
    figures["stopped"] = stopped  # per member: finished, early stopping, max_minutes or stopped
    figures["planned_steps"] = cfg.train.max_epochs * cfg.train.steps_per_epoch  # per member
    export_checkpoint(model, cfg, out, data_fingerprint(data.train_points), figures, calibration.to_dict(),
                      trained_on(data.points))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "validation.json").write_text(json.dumps(figures, indent=2))
    if not quiet:
        print(summary(figures, out))
        where = f"{folder}/member-<k>/" if cfg.train.ensemble > 1 else f"{folder}/"
        print(f"wrote {out} (use it: neuneu predict RUNS.csv --checkpoint {out}); validation.json under {folder}/, "
              f"Lightning's last.ckpt (for --resume) and the CSV logs (metrics.csv) under {where}")
    return out


#: train.* keys that do not change what is learnt: the seed, names, paths and machine-level knobs
NOT_RECIPE = ("seed", "name", "out_dir", "runs_dir", "workers", "num_threads", "max_minutes")


def recipe(config: dict) -> dict:
    """A config dict with its defaults filled, less `NOT_RECIPE`, the trainer section and
    `data.data_dir` (where a machine keeps the data; the data fingerprints say whether it is the same)."""
    cfg = config_to_dict(config_from_dict(config, "checkpoint config"))
    for key in NOT_RECIPE:
        cfg["train"].pop(key, None)
    cfg.pop("trainer", None)
    cfg["data"].pop("data_dir", None)
    return cfg


#: what may differ between the members of an ensemble assembled `across_recipes`: how training episodes
#: are drawn and regularised, never what the network reads or how it is built (model.*, data.sources,
#: max_context, ... must agree) — every member answers the same inputs, only trained differently
AUGMENTATION = {
    "data": {"p_scale", "p_ladder", "p_ladder_same_size", "p_sweep", "sibling_shift", "p_context_dropout",
             "context_dropout", "p_loss_given", "p_drop_context_loss", "p_thin", "thin_min", "thin_max", "thin_modes",
             "p_truncate", "p_noise", "noise_max", "p_warp", "warp_max", "p_ywarp", "ywarp_max", "p_synthetic",
             "p_schedule_prior", "prior_schedule_kinds", "p_drop_lr", "balance_sources", "pretrain_epochs",
             "min_ratio", "max_ratio"},
    "model": {"dropout"},
}


def recipe_diff(a: dict, b: dict) -> list[str]:
    """The `section.key`s where the recipes of config dicts a and b differ (sorted; [] if none)."""
    want, have = recipe(a), recipe(b)
    return sorted(f"{sec}.{k}" for sec in want for k in set(want[sec]) | set(have.get(sec, {}))
                  if want[sec].get(k) != have.get(sec, {}).get(k))


def assemble(paths: list[str | Path], out: str | Path, *, points=None, quiet: bool = False,
             across_recipes: bool = False) -> Path:
    """One ensemble checkpoint from checkpoints trained apart (e.g. `train.seed=0,1,2` of one
    recipe, in parallel jobs): the members' weights, calibrated again as one model on the
    validation runs (`evaluate_validation`), exactly as `train` does with `train.ensemble`.

    The members must share their config but for `train.seed` / `train.name` and their training
    data (`data_fingerprint`); otherwise InputError. With `across_recipes` they may also differ in
    the `train` section and the `AUGMENTATION` keys (members trained with other episode mixes or
    regularisation); the differences are recorded in the checkpoint (`validation.recipes_differ`),
    and its config is the first member's. `points`: as in `train` (tests).
    """
    from neuneu.neural import load_checkpoint

    if len(paths) < 2:
        raise InputError(f"assemble: needs at least two checkpoints, got {len(paths)}")
    loaded = [load_checkpoint(path) for path in paths]
    members = [m for model, _ in loaded for m in (model.members if isinstance(model, Ensemble) else [model])]
    first, differ = loaded[0][1], set()
    for path, (_, payload) in zip(paths[1:], loaded[1:]):
        diff = recipe_diff(first["config"], payload["config"])
        if across_recipes:
            differ.update(diff)
            diff = [k for k in diff if not (k.startswith("train.") or k.split(".")[1] in AUGMENTATION.get(k.split(".")[0], ()))]
        if diff:
            how = "" if across_recipes else " (across recipes, the train section and how episodes are drawn may differ)"
            raise InputError(f"{path}: its recipe differs from {paths[0]}'s in {', '.join(diff)}{how}")
        if payload["data_fingerprint"] != first["data_fingerprint"]:
            raise InputError(f"{path}: trained on other data than {paths[0]} (data_fingerprint differs)")
    cfg = config_from_dict(first["config"], f"{paths[0]}: config")
    data = _data_module(cfg, points)
    data.setup()
    if data_fingerprint(data.train_points) != first["data_fingerprint"]:
        raise InputError(f"{paths[0]}: the data here is not the data it was trained on (data_fingerprint differs)")
    model = Ensemble(members).eval()
    if not quiet:
        print(f"calibrating the {len(members)}-member ensemble on the validation runs...", flush=True)
    figures, calibration = evaluate_validation(model, data, cfg)
    figures["name"] = Path(out).stem
    for key in ("fit_seconds", "steps"):  # summed over the members, as `train` reports an ensemble
        figures[key] = sum((payload.get("validation") or {}).get(key, 0) for _, payload in loaded)
    figures["ensemble"] = len(members)
    figures["assembled_from"] = [str(p) for p in paths]
    if differ:
        figures["recipes_differ"] = sorted(differ)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ensemble=len(members), name=Path(out).stem))
    out = Path(out)
    export_checkpoint(model, cfg, out, first["data_fingerprint"], figures, calibration.to_dict(), first.get("trained_on"))
    if not quiet:
        print(summary(figures, out))
        print(f"wrote {out}")
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
        "ensemble": len(model.members) if isinstance(model, Ensemble) else 1,
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
    """{mae, coverage80} of (E, Q, 5) quantiles on `episodes`: `neuneu.metrics.summary_scores`."""
    from neuneu.metrics import summary_scores

    scores = summary_scores(episodes, quantiles)
    return {"mae": scores["mae"], "coverage80": scores["coverage80"]}


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
    if cut := [k + 1 for k, why in enumerate(figures.get("stopped", [])) if why == "max_minutes"]:
        which = "" if len(figures["stopped"]) == 1 else f" (member{'s' * (len(cut) > 1)} {', '.join(map(str, cut))})"
        lines.append(f"  note: the train.max_minutes cap ended the fit{which} before its {figures['planned_steps']:,} "
                     "steps or early stopping: the model may be under-trained (raise train.max_minutes)")
    return "\n".join(lines)
