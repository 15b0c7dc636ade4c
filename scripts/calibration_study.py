"""Which interval calibration transfers to a family the model never saw? Coverage of q10–q90 per
leave-one-family-out row under each candidate, for the 3-seed ensembles of
scripts/make_generalisation.py (runs/ablations/neuneu-without-<F>-ens3.pt: run that with --train first).

    python scripts/calibration_study.py            # → results/calibration-study.md and its block in docs/generalisation.md (about 10 min)

Candidates, all applied to the same raw quantiles of the model that never saw F, on every run of F
(checkpoint protocol, forecast, ratios 0.1 / 0.2 / 0.4):
- raw: the network's quantiles;
- validation: the checkpoint's factors (validation runs of its training families);
- context: what `neuneu predict` does (the back-test on F's own contexts, blended with the
  validation factors by n / (n + 50));
- cross-family: factors fitted on the *other* folds' out-of-family points (the model without G on
  G's runs, every G != F, each family weighing the same), so they measure cross-family error; the
  models without G were trained on F, but no point of F is scored in F's factors;
- context + cross-family: the context back-test blended with the cross-family factors instead;
- context, horizon-matched: the back-test's weight on each query scaled by the share of its
  pseudo-queries at least as far ahead as that query (a back-test speaks for the horizons it tested);
- the same with the cross-family factors in place of the validation ones;
- context, no narrowing beyond the back-test: the context calibration, but at query horizons
  beyond the file's farthest back-test pseudo-query each quantile is the outer of the context-
  and the validation-calibrated one (a back-test may widen intervals where it never looked, not
  narrow them). Pre-registered 2026-12-05 before it was scored, with the rule: adopt it in
  `neuneu predict` only if, for the shipped recipe's models (`--kind sweep-loss-delta-ens3`), it
  puts more rows in the band than `context` and takes none out of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from neuneu.calibration import Calibration
from neuneu.data import load_source
from neuneu.episodes import checkpoint_episodes
from neuneu.metrics import summary_scores
from neuneu.neural import (BLEND_PRIOR, BlendedCalibration, backtest_points, calibration_from_backtest, load_calibration,
                           load_checkpoint, predict_quantiles)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.make_generalisation import checkpoint  # noqa: E402
from scripts.make_results import replace_block, stamp  # noqa: E402

FAMILIES = ("olmo_ladder", "pythia", "bigscience_tr3", "tucano", "lucie")
RATIOS = (0.1, 0.2, 0.4)
BAND = (0.75, 0.85)


def family_points(family: str, kind: str) -> dict:
    """{ratio: (episodes, raw quantiles, horizon, backtest points)} of the model without `family`."""
    model, payload = load_checkpoint(checkpoint(family, kind))
    max_context = int(payload["features"]["max_context"])
    out = {"validation": load_calibration(payload)}
    points = load_source(family)
    for ratio in RATIOS:
        eps = checkpoint_episodes(points, ratio, variant="forecast")
        raw, h = predict_quantiles(model, eps.context, eps.query, max_context, return_horizon=True)
        out[ratio] = (eps, raw, h, backtest_points(model, eps.context, eps.query, max_context))
    return out


def cross_family(points: dict, holdout: str) -> Calibration:
    """Factors fitted on every other family's out-of-family points, each family weighing 1."""
    q, y, h, w = [], [], [], []
    for family, sets in points.items():
        if family == holdout:
            continue
        for ratio in RATIOS:
            eps, raw, horizon, _ = sets[ratio]
            m = eps.query.mask
            per_episode = np.broadcast_to(1.0 / np.maximum(m.sum(1, keepdims=True), 1), m.shape)[m]
            q.append(raw[m]), y.append(eps.target[m]), h.append(horizon[m])
            w.append(per_episode / (len(eps) * len(RATIOS)))
    return Calibration.fit(np.concatenate(q), np.concatenate(y), np.concatenate(h), np.concatenate(w))


def candidates(sets: dict, ratio: float, xfam: Calibration) -> dict:
    eps, raw, h, bt = sets[ratio]
    val = sets["validation"]
    context, n = calibration_from_backtest([bt])
    if context is None:  # no usable context: weight 0 on the back-test, as `neuneu predict` does
        context, n = val, 0
    tested = np.sort(bt["horizon"])
    share = 1 - np.searchsorted(tested, np.nan_to_num(h), side="left") / max(len(tested), 1)
    w = (n / (n + BLEND_PRIOR)) * share[..., None]
    blend = BlendedCalibration(context, val, n).apply(raw, h)
    own, validated, crossed = context.apply(raw, h), val.apply(raw, h), xfam.apply(raw, h)
    beyond = (np.nan_to_num(h) > tested[-1])[..., None] if len(tested) else np.ones(h.shape + (1,), bool)
    outer = np.concatenate([np.minimum(blend, validated)[..., :2], blend[..., 2:3],
                            np.maximum(blend, validated)[..., 3:]], axis=-1)
    return {
        "raw": raw,
        "validation": validated,
        "context": blend,
        "cross-family": crossed,
        "context + cross-family": BlendedCalibration(context, xfam, n).apply(raw, h),
        "context, horizon-matched": w * own + (1 - w) * validated,
        "horizon-matched + cross-family": w * own + (1 - w) * crossed,
        "context, no narrowing beyond the back-test": np.where(beyond, outer, blend),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="ens3", help="which leave-one-family-out models (runs/ablations/…-<kind>.pt)")
    parser.add_argument("-o", "--out", default="results/calibration-study.md")
    parser.add_argument("--no-readme", action="store_true", help="do not paste the table into docs/generalisation.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    points = {f: family_points(f, args.kind) for f in FAMILIES}
    rows, band = [], {}
    for family in FAMILIES:
        xfam = cross_family(points, family)
        for ratio in RATIOS:
            cov = {k: summary_scores(points[family][ratio][0], q)["coverage80"]
                   for k, q in candidates(points[family], ratio, xfam).items()}
            rows.append(f"| {family} | {ratio} | " + " | ".join(f"{c:.2f}" for c in cov.values()) + " |")
            for k, c in cov.items():
                band.setdefault(k, []).append(BAND[0] <= c <= BAND[1])
    names = list(band)
    lines = [f"Coverage of q10–q90 (target {BAND[0]}–{BAND[1]}) of the `{args.kind}` leave-one-family-out models "
             "under each calibration (`python scripts/calibration_study.py`).", "",
             "| family | ratio | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names), *rows,
             "| rows in band (unrounded) | | " + " | ".join(f"{sum(band[k])}/{len(band[k])}" for k in names) + " |", "",
             *stamp()]
    text = "\n".join(lines) + "\n"
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    if not args.no_readme:
        replace_block("calibration-study", text)


if __name__ == "__main__":
    main()
