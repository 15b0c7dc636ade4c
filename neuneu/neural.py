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

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from neuneu.calibration import MEDIAN, Calibration
from neuneu.data import REPO_ROOT, InputError
from neuneu.episodes import SIBLING_PROTOCOLS, Context, Query, resplit
from neuneu.features import F, Features, featurize, from_target, to_target
from neuneu.model import Ensemble, ModelConfig, build_model
from neuneu.predictor import Predictor

# Package data (pyproject `package-data`), so a plain `pip install .` finds it from any directory.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "neuneu-default.pt"
CALIBRATIONS = ("context", "validation", "none")
CHECKPOINT_FORMAT = "neuneu-checkpoint-v1"
_REQUIRED = ("format", "config", "state_dict", "features")
OBSOLETE_MODEL_KEYS = ("n_features",)
BACKTEST_RATIOS = (0.25, 0.5)  # pseudo-splits of each context in `backtest_calibration`
# Contexts at which the backtest and the validation factors weigh the same (`BlendedCalibration`):
# fixed a priori (the former all-or-nothing threshold was 50 contexts), never tuned on a family.
BLEND_PRIOR = 50  # knobs of earlier checkpoints that never did anything
# Tokens (context + query points of all its episodes) per forward pass in `predict_quantiles`:
# the network is small, so on a CPU a pass costs the same per token at a few thousand tokens as
# at more, and its activations (~3 MB) stay in cache and in the allocator's heap. At 512 episodes
# of 40 points (~16 MB each) they went back to the OS and were faulted in again at every batch.
# A count of episodes' points, not of what the network runs: the ref layout runs C + 1 tokens per
# query (about 3x more at 48 context points); on a GPU it is only a cap on the pass.
BATCH_TOKENS = 4096


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
    except pickle.UnpicklingError:  # not a torch file, or one holding pickled objects (torch's advice,
        # to load it unrestricted, is not ours to give)
        raise InputError(f"{path}: not a neuneu checkpoint: not a torch file of tensors and plain values "
                         "(neuneu loads checkpoints with weights_only=True and never unpickles objects)") from None
    except Exception as err:  # anything else torch refuses: a foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a neuneu checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise InputError(f"{path}: not a neuneu checkpoint (expected a dict with keys {', '.join(_REQUIRED)})")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: checkpoint format {payload['format']!r}, this neuneu reads {CHECKPOINT_FORMAT!r}")
    _check_fields(path, payload)
    try:
        model_cfg = {k: v for k, v in payload["config"]["model"].items() if k not in OBSOLETE_MODEL_KEYS}
        n_members = int(payload.get("ensemble", 1))
        model = build_model(ModelConfig(**model_cfg))
        if n_members > 1:
            model = Ensemble([model, *(build_model(ModelConfig(**model_cfg)) for _ in range(n_members - 1))])
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


def query_chunk(n_query: int, batch_size: int, max_tokens: int) -> int:
    """Queries per pass: about `max_tokens` query tokens over `batch_size` episodes, at least 1."""
    return max(1, min(n_query, max_tokens // max(batch_size, 1)))


def feature_batches(features: Features, target: np.ndarray | None, batch_size: int, max_tokens: int = 200_000,
                    q_chunk: int | None = None):
    """Split features into batches of at most `batch_size` episodes and about `max_tokens`
    query tokens; queries are independent, so long episodes are cut along the query axis, into
    chunks of `q_chunk` queries where given (else `query_chunk`)."""
    E, Q = features.query_mask.shape
    q_chunk = q_chunk or query_chunk(Q, batch_size, max_tokens)
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
    cfg = getattr(model, "cfg", None)
    laws = bool(getattr(cfg, "law_features", False))
    if getattr(model, "cfg", None) is not None and model.cfg.layout == "ref":
        max_tokens = max(1, max_tokens // (max_context + 1))  # one sequence per query there
    E, Q = np.shape(query.mask)
    out = np.full((E, Q, 5), np.nan)
    horizon = np.full((E, Q), np.nan)
    for sel, ctx, qry in width_groups(vars(context), vars(query), max_context):
        feats = featurize(ctx, qry, max_context, laws=laws)
        part = np.full(feats.query_mask.shape + (5,), np.nan)
        # Fewer episodes per pass than batch_size (about BATCH_TOKENS tokens), their queries cut into
        # the chunks of batch_size episodes still: the attention's small products round
        # differently at other query counts. The episode count of a pass can still move the last
        # float32 bit (≤ 1e-7 in accuracy) where a pass has very few rows: the matmul kernels
        # depend on the row count.
        q_chunk = query_chunk(feats.query.shape[1], batch_size, max_tokens)
        per_batch = max(1, min(batch_size, BATCH_TOKENS // (feats.context.shape[1] + q_chunk)))
        for (a, b), sub, _ in feature_batches(feats, None, per_batch, q_chunk=q_chunk):
            batch = {k: v.to(device) for k, v in to_batch(sub).items()}
            pred = model(batch["context"], batch["context_mask"], batch["query"], batch["query_mask"], batch["anchor"])
            acc = from_target(pred.float().cpu().numpy().astype(float), sub.anchor)
            part[a : a + len(sub.anchor), b : b + sub.query.shape[1]] = acc
        part[~feats.query_mask] = np.nan
        width = part.shape[1]
        out[sel, :width] = part
        horizon[sel, :width] = np.where(feats.query_mask, feats.query[..., F["ln_x"]].astype(float), np.nan)
    model.train(was_training)
    if calibration is not None:
        out = calibration.apply(out, horizon)
    return (out, horizon) if return_horizon else out


def _to_width(value: np.ndarray, width: int) -> np.ndarray:
    """(E, C) → (E, width): cut, or padded with NaN / -1 / False as episodes are."""
    have = value.shape[1]
    if have >= width:
        return value[:, :width]
    fill = False if value.dtype == bool else (-1 if np.issubdtype(value.dtype, np.integer) else np.nan)
    return np.concatenate([value, np.full((len(value), width - have), fill, dtype=value.dtype)], axis=1)


def width_groups(ctx: dict, qry: dict, max_context: int):
    """(episode indices, context dict, query dict) groups of episodes with the same number of
    context points n (all n > max_context together: `featurize` subsamples them to
    max_context), their arrays cut to it and the queries to the group's longest. So the widths
    `featurize` works at, its law fits' above all (they round differently at different widths
    and move in a few ill-conditioned episodes), are set by each episode's own length, never by
    the other episodes of the call or by how they are chunked. Arrays must hold real points
    first (as episodes are built); otherwise one group, as given."""
    c_mask, q_mask = np.asarray(ctx["mask"], bool), np.asarray(qry["mask"], bool)
    n, m = c_mask.sum(1), q_mask.sum(1)
    first = lambda mask, k: (mask == (np.arange(mask.shape[1])[None, :] < k[:, None])).all()  # noqa: E731
    if len(n) == 0 or not (first(c_mask, n) and first(q_mask, m)):
        yield np.arange(len(n)), ctx, qry
        return
    key = np.minimum(n, max_context + 1)
    for k in np.unique(key):
        sel = np.flatnonzero(key == k)
        c_width, q_width = int(n[sel].max()), int(m[sel].max())
        yield (sel,
               {k: _to_width(v[sel], c_width) if isinstance(v, np.ndarray) and v.ndim == 2 else v for k, v in ctx.items()},
               {k: _to_width(v[sel], q_width) if isinstance(v, np.ndarray) and v.ndim == 2 else v for k, v in qry.items()})


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
                         ratios: tuple[float, ...] = BACKTEST_RATIOS):
    """A `Calibration` fitted on the user's own contexts, never on a query's truth, and the
    number of contexts it used (None, 0 when none is usable).

    Each context with at least 3 points of its own run is split like a checkpoint episode at each of
    `ratios`: its first floor(ratio·n)+1 points predict its later points, whose accuracies are
    known. Two ratios give pseudo-horizons from short to about half the context's span in log
    tokens, so the horizon bins reach toward the real queries' (farther horizons fall in the last
    bin). The conformal factors fitted on those pseudo-queries carry the noise and shape of the
    family being predicted, which the validation runs of the training families do not: from one
    family to another the raw intervals were 1.5x too wide (olmo_ladder) or too narrow (pythia).
    An episode with sibling runs (ladder, sweep) is backtested on its own run's points, its
    siblings kept in every pseudo-context as they are in the real one; multi-run contexts without
    an own run (scale) are skipped.
    """
    return calibration_from_backtest([backtest_points(model, context, query, max_context, ratios)])


_BACKTEST_KEYS = ("quantiles", "truth", "horizon", "weight", "ratio", "episode")


def backtest_contexts(context: Context) -> np.ndarray:
    """Indices of the episodes with at least 3 points of their own run: those a back-test splits."""
    return np.flatnonzero((np.asarray(context.own, bool) & np.asarray(context.mask, bool)).sum(1) >= 3)


def backtest_splits(context: Context, query: Query, ratios: tuple[float, ...] = BACKTEST_RATIOS):
    """The back-test's pseudo-episodes, one `Episodes` per ratio (none when no context is long
    enough): each of `backtest_contexts` split again by `resplit` (its own-run points split, its
    sibling runs' kept as context), the pseudo-queries seeing a loss only where the real ones do."""
    idx = backtest_contexts(context)
    if not len(idx):
        return
    forecast = ~np.isfinite(np.where(query.mask, query.loss, np.nan)).any(1)[idx]
    for ratio in ratios:
        yield resplit(context, ratio, idx, drop_query_loss=forecast)


def backtest_points(model: torch.nn.Module, context: Context, query: Query, max_context: int,
                    ratios: tuple[float, ...] = BACKTEST_RATIOS) -> dict:
    """The pseudo-queries of `backtest_calibration` for these episodes: raw quantiles (N, 5),
    truth, horizon, weight, ratio index and episode index (N,) of each, and the indices of the
    usable contexts (`contexts`). `calibration_from_backtest` fits them; `neuneu.chunking`
    collects them chunk by chunk (renumbering `episode`) and fits once over all."""
    idx = backtest_contexts(context)
    out = {k: [np.empty((0, 5)) if k == "quantiles" else np.empty(0, int if k in ("ratio", "episode") else float)]
           for k in _BACKTEST_KEYS}
    out["contexts"] = idx
    for i, eps in enumerate(backtest_splits(context, query, ratios)):
        qry_mask = eps.query.mask
        raw, h = predict_quantiles(model, eps.context, eps.query, max_context, return_horizon=True)
        w = np.broadcast_to(1.0 / np.maximum(qry_mask.sum(1, keepdims=True), 1), qry_mask.shape)
        out["quantiles"].append(raw[qry_mask]), out["truth"].append(eps.target[qry_mask])
        out["horizon"].append(h[qry_mask]), out["weight"].append(w[qry_mask])
        out["ratio"].append(np.full(int(qry_mask.sum()), i))
        out["episode"].append(np.broadcast_to(idx[:, None], qry_mask.shape)[qry_mask])
    return {k: v if k == "contexts" else np.concatenate(v) for k, v in out.items()}


def calibration_from_backtest(parts: list[dict]):
    """(Calibration, contexts used) of `backtest_points` results — of one call, or of several
    calls on disjoint episodes numbered apart — fitted on the points in the order one call over
    all of them would give (by ratio, then episode), so chunking does not change it. (None, 0)
    when no context is usable."""
    n = sum(len(p["contexts"]) for p in parts)
    if n == 0:
        return None, 0
    cat = {k: np.concatenate([p[k] for p in parts]) for k in _BACKTEST_KEYS}
    order = np.lexsort((np.arange(len(cat["episode"])), cat["episode"], cat["ratio"]))
    calibration = Calibration.fit(cat["quantiles"][order], cat["truth"][order], cat["horizon"][order],
                                  cat["weight"][order])
    return calibration, n


class BlendedCalibration:
    """Quantiles calibrated by the context backtest and by the checkpoint's validation factors,
    mixed with weight w = n / (n + BLEND_PRIOR) on the backtest (n = contexts it used): with a
    handful of contexts the validation factors dominate, with hundreds the user's own. The
    weight moves by little when one trajectory is added, so no prediction jumps at a threshold.
    A convex mix of two monotone quantile sets with the same median is monotone, median kept."""

    def __init__(self, context: Calibration, validation: Calibration, n: int):
        self.context, self.validation, self.n = context, validation, n
        self.weight = n / (n + BLEND_PRIOR)

    def apply(self, quantiles, horizon) -> np.ndarray:
        out = (self.weight * self.context.apply(quantiles, horizon)
               + (1 - self.weight) * self.validation.apply(quantiles, horizon))
        # w·m + (1 − w)·m is m only up to rounding: the median is the network's, bit for bit,
        # whatever else is in the file (the weight depends on the file)
        mid = np.where(np.isnan(out[..., MEDIAN]), np.nan, np.asarray(quantiles, dtype=float)[..., MEDIAN])
        out[..., MEDIAN] = mid
        out[..., :MEDIAN] = np.minimum(out[..., :MEDIAN], mid[..., None])  # monotone at the last bit too
        out[..., MEDIAN + 1:] = np.maximum(out[..., MEDIAN + 1:], mid[..., None])
        return out

    @property
    def label(self) -> str:
        # not ask.plural: a CSV cell, whose count has no thousands separator (it would be quoted)
        return f"context backtest on {self.n} trajector{'y' if self.n == 1 else 'ies'} (weight {self.weight:.2f}) + validation"


class NeuralPredictor(Predictor):
    """The trained neuneu network. `fit` stores the context (in-context conditioning, no
    gradient steps); `predict` runs the network once over every episode's queries."""

    name = "neuneu"
    variants = ("forecast", "loss-given")

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu", batch_size: int = 512,
                 threads: int | None = 1, calibration: str = "context", name: str | None = None):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_absolute() and not self.checkpoint.exists() and (REPO_ROOT / self.checkpoint).exists():
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

    @property
    def protocols(self) -> tuple[str, ...]:
        """What the checkpoint was trained for: a model that never saw a scale episode
        (`data.p_scale` 0, e.g. the published layout) answers the checkpoint protocol only; one
        that reads which run a point is of (`model.own_run`) answers the protocols with sibling
        runs too (ladder, sweep)."""
        config = self.load().payload_.get("config", {})
        p_scale = config.get("data", {}).get("p_scale", 0.0)
        ladder = SIBLING_PROTOCOLS if config.get("model", {}).get("own_run", False) else ()
        return (("checkpoint", "scale") if p_scale > 0 else ("checkpoint",)) + ladder

    def _fit(self, context: Context) -> None:
        self.load()

    def _predict(self, query: Query) -> np.ndarray:
        previous = torch.get_num_threads()
        if self.threads and self.device == "cpu":
            torch.set_num_threads(self.threads)
        try:
            calibration = self.calibrate(self.context_, query)
            return predict_quantiles(self._model, self.context_, query, self.max_context_, self.batch_size,
                                     device=self.device, calibration=calibration)
        finally:
            torch.set_num_threads(previous)

    def calibrate(self, context: Context, query: Query):
        """The calibration applied to these episodes' quantiles (sets `calibration_label_`, which
        `neuneu predict` reports in its `calibration` column)."""
        self.load()
        if self.calibration == "none" or self.calibration_ is None:
            self.calibration_label_ = "none (raw network quantiles)"
            return None
        if self.calibration == "context":
            fitted, n = self.fixed_backtest_ or backtest_calibration(self._model, context, query, self.max_context_)
            if fitted is not None:
                blend = BlendedCalibration(fitted, self.calibration_, n)
                self.calibration_label_ = blend.label
                return blend
        self.calibration_label_ = "validation (the checkpoint's factors)"
        return self.calibration_

    #: (Calibration or None, contexts) fixed by `fix_calibration`; None: backtest each call's contexts
    fixed_backtest_ = None

    def calibration_points(self, context: Context, query: Query) -> dict | None:
        """`backtest_points` of these episodes where the calibration is backtested on the
        contexts given ("context"), else None. `neuneu.chunking` collects them over every chunk,
        then `fix_calibration` makes each chunk's prediction use the one calibration of all."""
        self.load()
        if self.calibration != "context" or self.calibration_ is None:
            return None
        previous = torch.get_num_threads()
        if self.threads and self.device == "cpu":
            torch.set_num_threads(self.threads)
        try:
            return backtest_points(self._model, context, query, self.max_context_)
        finally:
            torch.set_num_threads(previous)

    def fix_calibration(self, parts: list[dict] | None) -> None:
        """Calibrate every later prediction as one call over all the episodes of `parts` (their
        `calibration_points`, episodes numbered apart) would; None: back to each call's own."""
        self.fixed_backtest_ = None if parts is None else calibration_from_backtest(parts)
