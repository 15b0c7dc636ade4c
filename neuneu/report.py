"""The HTML report: provenance, one leaderboard table per group, and the figures as PNG files
saved next to the page (relative links, so the folder can be moved or committed as is)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.prov { font-size: 13px; color: #444; } code { background: #f6f6f6; padding: 1px 4px; }
.note { font-size: 13px; color: #8a4b00; }
"""


@dataclass
class Section:
    """One leaderboard group: a title, its table, notes, and its figures (name → Figure)."""

    title: str
    table: pd.DataFrame
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """A file-name-safe version of a title."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]


def write_report(
    path: str | Path,
    sections: list[Section],
    provenance: dict,
    title: str = "neuneu benchmark",
    intro: str = "",
    notes=(),
) -> Path:
    """Write `path` (HTML) and each section's figures as PNG files beside it (`fig_NN_*.png`; those
    of an earlier page there, which this one replaces, are removed first); closes nothing global
    (figures are pyplot-free). Returns the page's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("fig_[0-9][0-9]_*.png"):
        stale.unlink()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<ul class="prov">',
        *(f"<li><b>{html.escape(str(k))}</b>: <code>{html.escape(str(v))}</code></li>" for k, v in provenance.items()),
        "</ul>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        f"<p>{html.escape(intro)}</p>" if intro else "",
    ]
    for i, section in enumerate(sections):
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
        parts.append(section.table.to_html(index=False, border=0, na_rep="–", escape=True))
        for name, fig in section.figures.items():
            file = f"fig_{i:02d}_{slug(name)}.png"
            fig.savefig(path.parent / file)
            parts.append(f'<p><img src="{html.escape(file)}" alt="{html.escape(name)}"></p>')
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path




# ----------------------------------------------------------------------------- tables

LEADERBOARD_NOTE = (
    "MAE, CI and pinball in accuracy points (×100). MAE: plain mean over trajectories [bootstrap 95% CI]; "
    "NeuNeu agg.: mean over the trajectories (task × metric) of each run, then over runs. Skill: 1 − MAE / MAE(persistence) on the "
    "same trajectories. Coverage: each trajectory's share of truths inside q10–q90, averaged over trajectories (80% is calibrated). Ranking: pairs of runs "
    "on one task whose final-checkpoint order the q50 gets right; by current ckpt: the same pairs ranked by each "
    "run's last context checkpoint, the bar a forecast must clear (DataDecide: about 80% at a single scale). Fallback: trajectories whose fit fell back "
    "to persistence. Seconds: wall time of prepare + fit + predict."
)


def pretty_table(board: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard rows of one group as display strings (the Markdown and HTML tables)."""

    def pts(v):
        return "–" if pd.isna(v) else f"{100 * v:.2f}"

    def pct(v):
        return "–" if pd.isna(v) else f"{100 * v:.0f}%"

    return pd.DataFrame(
        {
            "method": board["method"].to_numpy(),
            "MAE": [pts(v) for v in board["mae"]],
            "95% CI": [f"[{pts(a)}, {pts(b)}]" for a, b in zip(board["mae_lo"], board["mae_hi"])],
            "MAE NeuNeu agg.": [f"{pts(v)} [{pts(a)}, {pts(b)}]" for v, a, b in zip(board["mae_neuneu"], board["mae_neuneu_lo"], board["mae_neuneu_hi"])],
            "skill vs persistence": ["–" if pd.isna(v) else f"{v:+.2f}" for v in board["skill"]],
            "coverage80": [pct(v) for v in board["coverage80"]],
            "pinball": [pts(v) for v in board["pinball"]],
            "ranking": [f"{pct(v)} of {n}" for v, n in zip(board["ranking_accuracy"], board["n_pairs"])],
            "ranking by current ckpt": [pct(v) for v in board.get("ranking_accuracy_current", pd.Series(float("nan"), index=board.index))],
            "fallback": [pct(v) for v in board["fallback_rate"]],
            "seconds": [f"{v:.1f}" for v in board["seconds"]],
        }
    )


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table from a frame of strings (no tabulate dependency)."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join(["---"] + ["---:"] * (table.shape[1] - 1)) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.to_numpy()]
    return "\n".join(lines)


def markdown_leaderboard(board: pd.DataFrame, provenance: dict, notes=(), title: str = "neuneu benchmark") -> str:
    """leaderboard.md: a provenance header, then one table per group (protocol, variant, ratio,
    source), methods sorted by MAE."""
    from neuneu.metrics import GROUP_KEYS

    out = [f"# {title}", ""]
    out += [f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in provenance.items()]
    out += [f"- note: {n}" for n in notes]
    out += ["", LEADERBOARD_NOTE, ""]
    groups = [k for k in GROUP_KEYS if k in board]
    for key, g in board.groupby(groups, sort=False, dropna=False):
        key = dict(zip(groups, key))
        ratio = "" if pd.isna(key.get("ratio")) else f", ratio {key['ratio']:g}"
        n = int(g["n_trajectories"].max())
        out += [f"## {key['protocol']} protocol, {key['variant']}{ratio}, {key['source']} ({n} trajectories)", ""]
        out += [markdown_table(pretty_table(g)), ""]
    return "\n".join(out)


__all__ = ["Section", "write_report", "slug", "pretty_table", "markdown_table", "markdown_leaderboard"]
