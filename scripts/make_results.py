"""Regenerate every leaderboard (and example score) the README shows, then paste them into README.md.

    python scripts/make_results.py [--only NAME ...] [--no-readme]

Each entry below is one `neuneu benchmark` run writing `results/<name>/`; the README block
between `<!-- results:<name> -->` and `<!-- /results:<name> -->` is replaced by that run's
leaderboard table and provenance. No number in the README's Results section is typed by hand.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name → `neuneu benchmark` arguments (the README names these commands)
RUNS = {
    "checkpoint-olmo-test": "--protocol checkpoint --ratio 0.2 --variant forecast --sources olmo_ladder --split test",
    # the same test runs with every other run of the source at the same stage (the sweep protocol)
    "sweep-olmo-test": "--protocol sweep --ratio 0.2 --variant forecast --sources olmo_ladder --split test",
    "checkpoint-olmo-heldout-tasks": "--protocol checkpoint --ratio 0.2 --variant forecast --sources olmo_ladder --split heldout_tasks",
    "scale-olmo-loss-given": "--protocol scale --variant loss-given --sources olmo_ladder --split test",
    "scale-olmo-forecast": "--protocol scale --variant forecast --sources olmo_ladder --split test",
    # Gadre et al. 2024: fit on the <= 412M models, predict the 1.4B / 6.9B models' accuracy from their loss
    "scale-gadre-loss-given": "--protocol scale --variant loss-given --sources gadre --split test",
}

# name → a `neuneu predict … --truth` command on a bundled example; its score table is the block
EXAMPLES = {
    "sweep-demo": "neuneu predict neuneu/examples/demo_runs.csv --episode family "
                  "--method neuneu,power_law,ladder_power_law,persistence --truth neuneu/examples/demo_truth.csv "
                  "-o runs/demo_sweep.csv",
}


def stamp() -> list[str]:
    """The provenance lines (date, commit, machine) under every table a script writes."""
    from neuneu.benchmark import git_commit, machine, utc_now

    return [f"- date: {utc_now()}", f"- commit: {git_commit()}", f"- machine: {machine()}"]


def run_example(name: str) -> None:
    """Run EXAMPLES[name], keep the score table it prints, with provenance, in results/NAME.md."""
    done = subprocess.run(shlex.split(EXAMPLES[name]), cwd=ROOT, check=True, capture_output=True, text=True)
    lines = done.stderr.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("truth ")):]
    body = "\n".join([f"`{EXAMPLES[name]}`:", "", "```", *table, "```", "", *stamp()])
    (ROOT / "results" / f"{name}.md").write_text(body + "\n", encoding="utf-8")


def run(name: str, extra: list[str]) -> None:
    out = ROOT / "results" / name
    cmd = ["neuneu", "benchmark", *shlex.split(RUNS[name]), "--out", f"results/{name}", "--no-progress", *extra]
    print("$", shlex.join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    assert (out / "leaderboard.md").is_file()


def block(name: str) -> str:
    """The README block for one run: its provenance lines and its table(s)."""
    if name in EXAMPLES:
        return (ROOT / "results" / f"{name}.md").read_text(encoding="utf-8")
    text = (ROOT / "results" / name / "leaderboard.md").read_text(encoding="utf-8")
    keep = []
    for line in text.splitlines():
        if line.startswith(("- date:", "- commit:", "- machine:", "- data:", "- command:", "- note:")):
            keep.append(line)
        elif line.startswith(("|", "## ")):
            keep.append(line if line.startswith("|") else "\n**" + line[3:] + "**\n")
    return "\n".join(keep)


def block_file(name: str) -> Path | None:
    """The page holding the block `<!-- results:NAME -->`: README.md, else one of docs/*.md."""
    for page in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        if f"<!-- results:{name} -->\n" in page.read_text(encoding="utf-8"):
            return page
    return None


def replace_block(name: str, body: str) -> None:
    """Put `body` between `<!-- results:NAME -->` and `<!-- /results:NAME -->` on the page that
    has them (`block_file`)."""
    page = block_file(name)
    if page is None:
        print(f"neither README.md nor docs/ has a block for {name}; skipped", file=sys.stderr)
        return
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n).*?(<!-- /results:{re.escape(name)} -->)", re.S)
    page.write_text(pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text), encoding="utf-8")


def publish(name: str, body: str, readme: bool = True) -> None:
    """Write `body` to results/NAME.md, print it and (with `readme`) paste it into its block (README.md or docs/)."""
    (ROOT / "results" / f"{name}.md").write_text(body, encoding="utf-8")
    print(body)
    if readme:
        replace_block(name, body)


def update_readme(names: list[str]) -> None:
    for name in names:
        replace_block(name, block(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted({**RUNS, **EXAMPLES}), help="regenerate only these")
    parser.add_argument("--no-readme", action="store_true", help="do not paste into README.md or docs/")
    parser.add_argument("--no-run", action="store_true", help="only paste existing results into README.md and docs/")
    args, extra = parser.parse_known_args()
    names = args.only or [*RUNS, *EXAMPLES]
    if not args.no_run:
        for name in names:
            run_example(name) if name in EXAMPLES else run(name, extra)
    if not args.no_readme:
        update_readme(names)


if __name__ == "__main__":
    main()
