"""`NeuralPredictor`: the trained network behind the common Predictor interface.

Loads a slim checkpoint (`neuneu.training.export_checkpoint`) lazily with
`torch.load(..., weights_only=True)`: no pickled code runs. A missing, corrupt, truncated or
foreign file raises `neuneu.data.InputError` with a clear message (the CLI exits 2).

Long contexts are subsampled deterministically to the model's `max_context` points (the
reference point of largest compute plus evenly spaced others; `neuneu.features`). Queries are
independent, so episodes are batched and long query lists are cut into chunks freely: the
predictions do not depend on the batch size.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from neuneu.calibration import Calibration
from neuneu.data import REPO_ROOT, InputError
from neuneu.episodes import Context, Query
from neuneu.features import F, Features, featurize, from_target, to_target
from neuneu.model import ModelConfig, build_model
from neuneu.predictor import Predictor

# Package data (pyproject `package-data`), so a plain `pip install .` finds it from any directory.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "neuneu-default.pt"
CALIBRATIONS = ("context", "validation", "none")
CHECKPOINT_FORMAT = "neuneu-checkpoint-v1"
_REQUIRED = ("format", "config", "state_dict", "features")


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """(network in eval mode, checkpoint dict) from a slim checkpoint file.

    Raises:
        InputError: the file is missing, unreadable, truncated, or not a neuneu checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a readable neuneu checkpoint (corrupt or truncated?): {first}") from None
    except Exception as err:  # weights_only refuses pickled objects: a foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a neuneu checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise InputError(f"{path}: not a neuneu checkpoint (expected a dict with keys {', '.join(_REQUIRED)})")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: checkpoint format {payload['format']!r}, this neuneu reads {CHECKPOINT_FORMAT!r}")
    _check_fields(path, payload)
    try:
        model = build_model(ModelConfig(**payload["config"]["model"]))
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError, AssertionError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: checkpoint does not match this neuneu's network: {first}") from None
    model.eval()
    return model, payload


def _check_fields(path: Path, payload: dict) -> None:
    """The fields a checkpoint is read by have the right types, its weights are finite and its
    calibration parses: otherwise an InputError naming the file (never a traceback later)."""

    def malformed(what: str):
        return InputError(f"{path}: malformed neuneu checkpoint: {what}")

    if not isinstance(payload["config"], dict) or not isinstance(payload["config"].get("model"), dict):
        raise malformed("'config' must be a dict holding a 'model' dict")
    weights = payload["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise malformed("'state_dict' must map parameter names to tensors")
    features = payload["features"]
    max_context = features.get("max_context") if isinstance(features, dict) else None
    if not isinstance(max_context, int) or isinstance(max_context, bool) or max_context < 1:
        raise malformed(f"'features' must be a dict with a positive integer 'max_context', got {max_context!r}")
    if payload.get("calibration") is not None and not isinstance(payload["calibration"], dict):
        raise malformed(f"'calibration' must be a dict, got {type(payload['calibration']).__name__}")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{path}: weight {name!r} holds NaN or infinite values (a diverged or corrupted training run)")
    try:
        load_calibration(payload)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None


def to_batch(features: Features, target: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Features (+ accuracy target (E, Q)) → the tensor dict the networks and steps read."""
    batch = {
        "context": torch.from_numpy(features.context),
        "context_mask": torch.from_numpy(features.context_mask),
        "query": torch.from_numpy(features.query),
        "query_mask": torch.from_numpy(features.query_mask),
        "anchor": torch.from_numpy(features.anchor.astype(np.float32)),
    }
    if target is not None:
        mask = features.query_mask & np.isfinite(target)
        batch["query_mask"] = torch.from_numpy(mask)
        batch["accuracy"] = torch.from_numpy(np.nan_to_num(target).astype(np.float32))
        batch["target"] = torch.from_numpy(np.nan_to_num(to_target(target, features.anchor)).astype(np.float32))
        # Each query weighs 1 / (its episode's query count): metrics are means over episodes.
        n = mask.sum(1, keepdims=True)
        batch["weight"] = torch.from_numpy((mask / np.maximum(n, 1)).astype(np.float32))
    return batch


def feature_batches(features: Features, target: np.ndarray | None, batch_size: int, max_tokens: int = 200_000):
    """Split features into batches of at most `batch_size` episodes and about `max_tokens`
    query tokens; queries are independent, so long episodes are cut along the query axis."""
    E, Q = features.query_mask.shape
    q_chunk = max(1, min(Q, max_tokens // max(batch_size, 1)))
    for a in range(0, E, batch_size):
        for b in range(0, Q, q_chunk):
            sub = Features(
                context=features.context[a : a + batch_size],
                context_mask=features.context_mask[a : a + batch_size],
                query=features.query[a : a + batch_size, b : b + q_chunk],
                query_mask=features.query_mask[a : a + batch_size, b : b + q_chunk],
                anchor=features.anchor[a : a + batch_size],
            )
            if not sub.query_mask.any():
                continue
            yield (a, b), sub, None if target is None else target[a : a + batch_size, b : b + q_chunk]


@torch.no_grad()
def predict_quantiles(model: torch.nn.Module, context: Context, query: Query, max_context: int,
                      batch_size: int = 512, max_tokens: int = 100_000, device: str = "cpu",
                      calibration=None, return_horizon: bool = False):
    """Accuracy quantiles (E, Q, 5) of `model` (unclipped; NaN at padding).

    `calibration`: a `neuneu.calibration.Calibration` (the one fitted on validation runs at the
    end of training and stored in the checkpoint) applied to the raw quantiles; None: raw.
    `return_horizon`: also return each query's horizon (E, Q), ln(x_query / x_reference), the
    coordinate the calibration is binned on.
    """
    was_training = model.training
    model.eval()
    feats = featurize(vars(context), vars(query), max_context)
    E, Q = feats.query_mask.shape
    out = np.full((E, Q, 5), np.nan)
    if getattr(model, "cfg", None) is not None and model.cfg.layout == "ref":
        max_tokens = max(1, max_tokens // (max_context + 1))  # one sequence per query there
    for (a, b), sub, _ in feature_batches(feats, None, batch_size, max_tokens):
        batch = {k: v.to(device) for k, v in to_batch(sub).items()}
        pred = model(batch["context"], batch["context_mask"], batch["query"], batch["query_mask"], batch["anchor"])
        acc = from_target(pred.float().cpu().numpy().astype(float), sub.anchor)
        out[a : a + len(sub.anchor), b : b + sub.query.shape[1]] = acc
    out[~feats.query_mask] = np.nan
    model.train(was_training)
    horizon = np.where(feats.query_mask, feats.query[..., F["ln_x"]].astype(float), np.nan)
    if calibration is not None:
        out = calibration.apply(out, horizon)
    return (out, horizon) if return_horizon else out


def load_calibration(payload: dict):
    """The checkpoint's `Calibration` (identity for a checkpoint without one)."""
    stored = payload.get("calibration") or {}
    try:
        if "factors" not in stored:  # checkpoints of neuneu < 0.3 stored one widening factor
            scale = float(stored.get("interval_scale", 1.0))
            return Calibration(edges=[], factors=[[scale, scale, 1.0, scale, scale]], n=0, method="interval-scale")
        return Calibration.from_dict(stored)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise InputError(f"checkpoint calibration is malformed: {err}") from None


def backtest_calibration(model: torch.nn.Module, context: Context, query: Query, max_context: int,
                         ratio: float = 0.5, min_episodes: int = 50):
    """A `Calibration` fitted on the user's own contexts, never on a query's truth (or None).

    Each single-run context of at least 3 points is split like a checkpoint episode: its first
    floor(ratio·n)+1 points predict its later points, whose accuracies are known. The conformal
    factors fitted on those pseudo-queries carry the noise and shape of the family being
    predicted, which the validation runs of the training families do not: from one family to
    another the raw intervals were 1.5x too wide (olmo_ladder) or too narrow (pythia).
    Multi-run (scale) contexts are skipped; with fewer than `min_episodes` usable contexts the
    caller keeps the checkpoint's validation calibration.
    """
    mask = np.asarray(context.mask, bool)
    n = mask.sum(1)
    run = np.asarray(context.run)
    one_run = ((run == run[:, :1]) | ~mask).all(1)  # real points come first, so column 0 is real
    usable = (n >= 3) & one_run
    if usable.sum() < min_episodes:
        return None
    idx = np.flatnonzero(usable)
    pos = np.cumsum(mask[idx], axis=1) - 1  # rank of each real point in its context (sorted by x)
    k = np.floor(ratio * n[idx]).astype(int) + 1  # pseudo-context size, leaves >= 1 pseudo-query
    k = np.minimum(k, n[idx] - 1)
    ctx_mask = mask[idx] & (pos < k[:, None])
    qry_mask = mask[idx] & (pos >= k[:, None])
    fields = {f: np.asarray(getattr(context, f))[idx] for f in ("x", "params", "flops", "loss", "accuracy")}
    pseudo_ctx = SimpleNamespace(**fields, mask=ctx_mask)
    q_loss = fields["loss"].copy()
    forecast = ~np.isfinite(np.where(query.mask, query.loss, np.nan)).any(1)[idx]
    q_loss[forecast] = np.nan  # the pseudo-queries see a loss only where the real ones do
    pseudo_qry = SimpleNamespace(**{f: fields[f] for f in ("x", "params", "flops")}, loss=q_loss, mask=qry_mask)
    raw, horizon = predict_quantiles(model, pseudo_ctx, pseudo_qry, max_context, return_horizon=True)
    truth = np.where(qry_mask, fields["accuracy"], np.nan)
    weight = np.broadcast_to(1.0 / np.maximum(qry_mask.sum(1, keepdims=True), 1), qry_mask.shape)
    return Calibration.fit(raw[qry_mask], truth[qry_mask], horizon[qry_mask], weight[qry_mask])


class NeuralPredictor(Predictor):
    """The trained neuneu network. `fit` stores the context (in-context conditioning, no
    gradient steps); `predict` runs the network once over every episode's queries."""

    name = "neuneu"
    variants = ("forecast", "loss-given")

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu", batch_size: int = 512,
                 threads: int | None = 1, calibration: str = "context", name: str | None = None):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_absolute() and not self.checkpoint.exists():
            self.checkpoint = REPO_ROOT / self.checkpoint  # relative to the repository, like the default
        self.device = device
        self.batch_size = batch_size
        # The network is tiny (~0.1M parameters): intra-op threads gain little and, on a busy
        # CPU, oversubscription made a 10,000-episode prediction 5x slower (36.8 s with 2
        # threads vs 6.8 s with 1 on the shared 2-core machine). None keeps torch's setting.
        self.threads = threads
        if self.checkpoint.stem.startswith("neuneu-ref-layout"):
            self.name = "neuneu-ref-layout"  # the ablation reads the same class, its own checkpoint
        # "context": conformal factors backtested on the contexts being predicted (`backtest_calibration`),
        # else the checkpoint's; "validation": the checkpoint's (fitted on its validation runs);
        # "none": the network's raw quantiles (the "before" of the calibration tables)
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
        self.calibration = calibration
        if name is not None:
            self.name = name
        self._model = None

    def load(self) -> "NeuralPredictor":
        """Load the checkpoint now (otherwise the first `fit` does)."""
        if self._model is None:
            model, payload = load_checkpoint(self.checkpoint)
            self._model = model.to(self.device)
            self.payload_ = {k: v for k, v in payload.items() if k != "state_dict"}
            self.max_context_ = int(payload["features"]["max_context"])
            self.calibration_ = load_calibration(payload) if self.calibration != "none" else None
        return self

    def _fit(self, context: Context) -> None:
        self.load()

    def _predict(self, query: Query) -> np.ndarray:
        previous = torch.get_num_threads()
        if self.threads and self.device == "cpu":
            torch.set_num_threads(self.threads)
        try:
            calibration = self.calibration_
            if self.calibration == "context":
                calibration = backtest_calibration(self._model, self.context_, query, self.max_context_) or calibration
            return predict_quantiles(self._model, self.context_, query, self.max_context_, self.batch_size,
                                     device=self.device, calibration=calibration)
        finally:
            torch.set_num_threads(previous)
