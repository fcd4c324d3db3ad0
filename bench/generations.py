"""Stage 7: generations — from the notebook's defaults to mastering CartPole-v1, per seed.

Runs ``python -m cartpole_core improve --seed S --json`` in a fresh process for each seed and
reads the time at which the evaluation mean (100 fixed games, argmax) first reached 475,
whether the model it stopped with holds on 1,000 fresh games, and whether it is perfect.
There is no notebook way to race: the notebook never improves its first network.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.core import Context, Row, StageResult, fmt_s, log, markdown_table, stage
from bench.stages import run_child

SEEDS = (0, 1, 2, 3, 4)
GOOD, PERFECT = 475.0, 500.0


def first_reaching(generations: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    return next((g for g in generations if g["mean"] >= level), None)


@stage(7, "generations", "Generations: mastering CartPole-v1 with improve's defaults")
def generations(ctx: Context) -> StageResult:
    out = StageResult()
    seeds = SEEDS[:2] if ctx.settings.quick else SEEDS
    rows, per_seed = [], []
    for seed in seeds:
        cmd = [sys.executable, "-m", "cartpole_core", "improve", "--seed", str(seed), "--json", "--quiet",
               "--max-seconds", "110", "--confirm-games", "1000"]  # fmt: skip
        wall, code, peak, stdout, stderr = run_child(cmd, str(ctx.root), timeout=900)
        if code != 0:
            raise RuntimeError(f"`{' '.join(cmd[1:])}` exited {code}: {stderr.strip()[-500:]}")
        data = json.loads(stdout.strip().splitlines()[-1])
        gens = data["generations"]
        good, perfect = first_reaching(gens, GOOD), first_reaching(gens, PERFECT)
        confirm = data["confirm_mean"]
        log(f"  seed {seed}: best {data['best_mean']:.1f}, confirm {confirm:.2f}, {fmt_s(wall)} wall")
        per_seed.append(
            {
                "seed": seed,
                "good_seconds": None if good is None else good["elapsed"],
                "good_generation": None if good is None else good["generation"],
                "perfect_seconds": None if perfect is None else perfect["elapsed"],
                "best_mean": data["best_mean"],
                "confirm_mean": confirm,
                "generations": len(gens) - 1,
                "run_seconds": data["seconds"],
                "wall": wall,
                "peak_rss": peak,
            }
        )
        rows.append(
            [
                str(seed),
                "—" if good is None else f"{good['generation']} ({good['elapsed']:.1f} s)",
                "—" if perfect is None else f"{perfect['generation']} ({perfect['elapsed']:.1f} s)",
                f"{data['best_mean']:.1f}",
                f"{confirm:.2f}",
                str(len(gens) - 1),
                f"{data['seconds']:.1f} s",
                fmt_s(wall),
            ]
        )
    n = len(per_seed)
    good_fast = sum(1 for p in per_seed if p["good_seconds"] is not None and p["good_seconds"] <= 45)
    holds = sum(1 for p in per_seed if p["confirm_mean"] >= GOOD)
    perfect = sum(1 for p in per_seed if p["confirm_mean"] >= PERFECT and p["wall"] <= 120)
    out.rows += [
        Row(f"mean ≥ {GOOD:g} over 100 games within 45 s", ours=f"{good_fast} of {n} seeds",
            target=f"{n} of {n}", met=good_fast == n),
        Row(f"final model ≥ {GOOD:g} on 1,000 fresh games", ours=f"{holds} of {n} seeds",
            target=f"{n} of {n}", met=holds == n),
        Row("perfect 500.0 on 1,000 fresh games, whole run ≤ 2 min", ours=f"{perfect} of {n} seeds",
            target=f"≥ {min(3, n)} of {n}", met=perfect >= min(3, n)),
    ]  # fmt: skip
    out.details.append(
        markdown_table(
            [
                "seed",
                f"first ≥ {GOOD:g}: generation (elapsed)",
                "first 500.0: generation (elapsed)",
                "best mean (100 games)",
                "mean on 1,000 fresh games",
                "generations",
                "improve's own time",
                "wall (import included)",
            ],
            rows,
        )  # fmt: skip
    )
    out.notes.append(
        "`python -m cartpole_core improve --seed S --json --max-seconds 110 --confirm-games 1000`, one fresh "
        "process per seed, with improve's defaults: generation 0 is a 64-64 network trained on the kept "
        "games (score ≥ 50) of 2,000 random games for 1 epoch; each generation plays 200 games sampling from "
        "its own probabilities, learns from the best 20 % of a generation's games among the best games so far "
        "(2 epochs at batch 128), falls back to the best network when clearly worse, and is measured on the "
        "same 100 games by both players (greedy counts on CartPole). Elapsed times count "
        "from the start of `improve` (generation 0's data and training included, TensorFlow's import not)."
    )
    out.data = {"seeds": per_seed}
    return out
