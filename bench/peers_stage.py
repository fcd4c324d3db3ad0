"""Stage 11: the race — Stable-Baselines3's PPO against our ``improve`` on every suggested env.

For each env, each seed runs two fresh processes one after another, alternating their order
from seed to seed: ``bench/peers/sb3_race.py --algo ppo --env E`` (RL Baselines3 Zoo's
settings for E, measured on 100 fixed games every few thousand env steps, stopped at the
env's bar or its budget) and ``python -m cartpole_core improve --env E`` with the dashboard's
defaults (nothing tuned per seed). Both are measured on the same 100 games; each reports the
seconds to the bar, or the best mean reached within the budget.

Envs and seeds (:data:`RACES`): CartPole-v1 on seeds 0-9, Acrobot-v1, MountainCar-v0 and
LunarLander-v3 on seeds 0-2. ``CARTPOLE_LAB_RACE_ENVS=CartPole-v1,Acrobot-v1`` races only
those; ``CARTPOLE_LAB_RACE_SEEDS=1`` only each env's first seed(s);
``CARTPOLE_LAB_RACE_PEERS=0`` runs ours alone (PPO on LunarLander takes ~10 minutes a
seed). The defaults of ``improve`` were chosen on seeds 100-109, never on these.

SB3 and a CPU-only torch live in a benchmark-only venv, ``bench/.peers-venv``, built here
from ``bench/peers/requirements.txt`` when missing or when that file changed (a stamp keeps
its hash); the app's requirements never see them. If it cannot be built, PPO is skipped with
the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core import ROOT, Context, Row, StageResult, fmt_s, log, markdown_table, median, stage
from bench.stages import run_child

PEERS = ROOT / "bench" / "peers"
REQUIREMENTS = PEERS / "requirements.txt"
VENV = ROOT / "bench" / ".peers-venv"
STAMP = VENV / "requirements.sha256"
#: Thread settings of the peers' processes (the machine has 2 cores; torch gets 2 threads too).
#: OpenMP's default (spinning) is kept: on a quiet machine it is fastest (PPO seed 0: 3.6 s with
#: 2 threads, 5.2 s with 1, 9.4 s with OMP_WAIT_POLICY=PASSIVE). With any other busy process,
#: spinning threads make PPO 10-40x slower (148 s instead of 3.6 s): run this stage alone.
THREAD_ENV = [f"{v}=2" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")]


@dataclass(frozen=True)
class Race:
    """One env's race."""

    env_id: str
    seeds: tuple[int, ...]
    bar: float
    """The score that counts as solved (CartPole-v1: 475, as stage 7; the others: Gymnasium's)."""
    budget: float
    """Seconds each run may take (ours: ``--max-seconds``; PPO: training seconds)."""
    goal: str
    """The target, in words."""


RACES = (
    Race("CartPole-v1", tuple(range(10)), 475.0, 110.0, "median ≤ half PPO's, slowest ≤ PPO's slowest"),
    Race("Acrobot-v1", (0, 1, 2), -100.0, 180.0, "≥ -100 on every seed, faster than PPO"),
    Race("MountainCar-v0", (0, 1, 2), -110.0, 180.0, "≥ -110 on every seed"),
    Race("LunarLander-v3", (0, 1, 2), 200.0, 600.0, "≥ 0 on every seed within 10 minutes; 200 is the goal"),
)


class PeersUnavailable(RuntimeError):
    """The peers venv could not be built."""


def peers_python() -> Path:
    """The peers venv's Python, built (anew) from :data:`REQUIREMENTS` unless its stamp
    holds the file's current hash. torch goes in first, alone: ``pip install torch==X``
    takes the machine's CPU build, which then satisfies SB3's requirement."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return python
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    torch = next((line for line in lines if line.startswith("torch==")), None)
    if torch is None:
        raise PeersUnavailable(f"{REQUIREMENTS} pins no torch==")
    log(f"  building {VENV} ({torch} first, then {REQUIREMENTS})")
    shutil.rmtree(VENV, ignore_errors=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    for cmd in ([sys.executable, "-m", "venv", str(VENV)], [*pip, torch], [*pip, "-r", str(REQUIREMENTS)]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeersUnavailable(f"`{' '.join(cmd[1:])}` failed: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            why = [x for x in err if x.startswith("ERROR")] or err[-1:]
            raise PeersUnavailable(f"`{' '.join(cmd[1:])}` exited {proc.returncode}: {' '.join(why)[-300:]}")
    STAMP.write_text(digest + "\n")
    return python


def run_json(cmd: list[str], root: Path, timeout: float) -> tuple[dict[str, Any], float]:
    """Run ``cmd`` in a fresh process (:func:`run_child`); its last stdout line as JSON, and its wall time."""
    wall, code, _, stdout, stderr = run_child(cmd, str(root), timeout=timeout)
    if code != 0:
        raise RuntimeError(f"`{' '.join(cmd[-8:])}` exited {code}: {stderr.strip()[-500:]}")
    return json.loads(stdout.strip().splitlines()[-1]), wall


def ours(root: Path, race: Race, seed: int) -> dict[str, Any]:
    """``improve`` with its defaults for the env; seconds to the bar = ``elapsed`` of the first
    generation whose mean (the env's counted player) reaches it."""
    confirm = 1000 if race.env_id == "CartPole-v1" else 100
    cmd = [sys.executable, "-m", "cartpole_core", "improve", "--env", race.env_id, "--seed", str(seed), "--json",
           "--quiet", "--confirm-games", str(confirm), "--max-seconds", str(race.budget),
           "--generations", "1000"]  # fmt: skip
    if race.env_id != "CartPole-v1":  # CartPole goes on to 500 (its default target) once past the bar, as stage 7
        cmd += ["--target", str(race.bar)]
    data, wall = run_json(cmd, root, timeout=race.budget + 600)
    gens = data["generations"]
    good = next((g for g in gens if g["mean"] >= race.bar), None)
    best = max(gens, key=lambda g: g["mean"])
    return {
        "seconds": None if good is None else good["elapsed"],
        "generation": None if good is None else good["generation"],
        # Steps played to collect data (random games, then each generation's games), as for the
        # peers: evaluation games not counted.
        "steps": sum(g["env_steps"] for g in gens[: (good or best)["generation"] + 1]),
        "best_mean": best["mean"],
        "best_at": best["elapsed"],
        "greedy_best": max(g["greedy_mean"] for g in gens),
        "sampled_best": max(g["sampled_mean"] for g in gens),
        "player": data["player"],
        "confirm_mean": data["confirm_mean"],
        "confirm_games": confirm,
        "generations": len(gens) - 1,
        "run_seconds": data["seconds"],
        "wall": wall,
    }


def peer(python: Path, race: Race, seed: int) -> dict[str, Any]:
    """One ``sb3_race.py --algo ppo`` run in the peers venv, with at most 2 threads."""
    cmd = ["env", *THREAD_ENV, str(python), str(PEERS / "sb3_race.py"), "--algo", "ppo", "--env", race.env_id,
           "--seed", str(seed)]  # fmt: skip
    if race.env_id != "CartPole-v1":
        cmd += ["--max-seconds", str(race.budget)]
    data, wall = run_json(cmd, ROOT, timeout=3 * race.budget + 600)
    return dict(data, seconds=data["train_seconds"] if data["reached"] else None, wall=wall)


def at_bar(seconds: float | None) -> float:
    """Seconds to the bar, with never reaching it counting as slower than any time (for medians)."""
    return math.inf if seconds is None else seconds


def fmt_run(r: dict[str, Any] | None, who: str) -> str:
    """When ``who`` reached the bar, or the best it reached."""
    if r is None:
        return "not run"
    if r["seconds"] is None:
        return f"best {r['best_mean']:.1f} (not reached)"
    where = f"generation {r['generation']}" if who == "ours" else f"{r['steps']:,} steps"
    return f"{r['seconds']:.1f} s ({where})"


def fmt_med(seconds: float) -> str:
    return "—" if math.isinf(seconds) else fmt_s(seconds)


def selected_races() -> list[Race]:
    wanted = os.environ.get("CARTPOLE_LAB_RACE_ENVS")
    names = None if not wanted else {w.strip() for w in wanted.split(",")}
    return [r for r in RACES if names is None or r.env_id in names]


@stage(11, "peers", "The race: Stable-Baselines3's PPO against our `improve` on every suggested env")
def peers(ctx: Context) -> StageResult:
    python: Path | None = None
    skipped_peers = ""
    if os.environ.get("CARTPOLE_LAB_RACE_PEERS", "1") != "0":
        try:
            python = peers_python()
        except PeersUnavailable as exc:
            skipped_peers = f"PPO not run: the peers venv could not be built: {exc}"
    else:
        skipped_peers = "PPO not run (CARTPOLE_LAB_RACE_PEERS=0)."
    quick = ctx.settings.quick
    out = StageResult()
    data: dict[str, Any] = {}
    for race in selected_races():
        most = int(os.environ.get("CARTPOLE_LAB_RACE_SEEDS", "0")) or (2 if quick else len(race.seeds))
        seeds = race.seeds[:most]
        per_seed: list[dict[str, Any]] = []
        for i, seed in enumerate(seeds):
            order = ["ppo", "ours"] if i % 2 == 0 else ["ours", "ppo"]
            got: dict[str, Any] = {"seed": seed, "order": order, "ppo": None}
            for who in order:
                if who == "ppo" and python is None:
                    continue
                got[who] = ours(ctx.root, race, seed) if who == "ours" else peer(python, race, seed)  # type: ignore[arg-type]
                run = got[who]
                log(f"  {race.env_id} seed {seed} {who:>4}: {fmt_run(run, who)}, confirm {run['confirm_mean']:.1f}")
            per_seed.append(got)
        data[race.env_id] = {"seeds": per_seed}
        out.details.append(race_table(race, per_seed))
        out.rows += race_rows(race, per_seed)
    out.notes += [
        "PPO: Stable-Baselines3 in `bench/.peers-venv` (`bench/peers/requirements.txt`), torch with 2 threads "
        "(OpenMP's default waiting: this stage must run alone); `bench/peers/sb3_race.py --algo ppo --env E "
        "--seed S` trains with RL Baselines3 Zoo's settings for E (CartPole-v1: 8 envs, its tuned block; "
        "Acrobot-v1 and MountainCar-v0: 16 envs with VecNormalize; LunarLander-v3: the zoo's LunarLander-v2 "
        "block, 16 envs) and plays our 100 evaluation games of that seed (most probable action, the reset "
        "seeds `improve` uses) every 2,560 env steps; it stops at the bar or, except on CartPole, after the "
        "budget of training seconds. Training seconds exclude its evaluations and torch's import.",
        "Ours: `python -m cartpole_core improve --env E --seed S --json --quiet --max-seconds BUDGET "
        "--generations 1000 --target BAR` (CartPole-v1: no `--target`, so it goes on to 500 once past "
        "475, as in stage 7) with every other setting at its default (the env's profile: "
        "LunarLander-v3 counts the sampled player, the others the greedy one; MountainCar-v0 picks games by "
        "score, then the farthest car position); seconds = `elapsed` of the first generation at the bar, "
        "generation 0's random games and first training and every evaluation included, TensorFlow's import "
        "not. Env steps: random games and generations' games, evaluation games not counted, as for PPO.",
        "One fresh process each, alternating the order from seed to seed; wall times on a shared 2-core machine. "
        "Our defaults were chosen on CartPole-v1 seeds 100-109; these seeds were never used to tune.",
    ]
    if skipped_peers:
        out.notes.append(skipped_peers)
    out.data = data
    return out


def race_table(race: Race, per_seed: list[dict[str, Any]]) -> str:
    header = [f"{race.env_id} seed", "PPO: s to the bar (steps) / best", "PPO fresh games",
              "ours: s to the bar (generation) / best", "ours greedy / sampled best", "ours fresh games",
              "ours env steps"]  # fmt: skip
    rows = []
    for p in per_seed:
        o, q = p.get("ours"), p.get("ppo")
        rows.append([
            str(p["seed"]),
            fmt_run(q, "ppo"),
            "—" if q is None else f"{q['confirm_mean']:.1f}",
            fmt_run(o, "ours"),
            "—" if o is None else f"{o['greedy_best']:.1f} / {o['sampled_best']:.1f}",
            "—" if o is None else f"{o['confirm_mean']:.1f} ({o['player']}, {o['confirm_games']:,})",
            "—" if o is None else f"{o['steps']:,}",
        ])  # fmt: skip
    med = {w: median(at_bar((p.get(w) or {}).get("seconds")) for p in per_seed) for w in ("ppo", "ours")}
    rows.append(["median", fmt_med(med["ppo"]), "", fmt_med(med["ours"]), "", "", ""])
    return f"**{race.env_id}** (bar {race.bar:g}, budget {race.budget:g} s a run)\n\n" + markdown_table(header, rows)


def race_rows(race: Race, per_seed: list[dict[str, Any]]) -> list[Row]:
    ours_runs = [p["ours"] for p in per_seed]
    ppo_runs = [p["ppo"] for p in per_seed if p.get("ppo") is not None]
    med = median(at_bar(r["seconds"]) for r in ours_runs)
    worst = max(at_bar(r["seconds"]) for r in ours_runs)
    ppo_med = median(at_bar(r["seconds"]) for r in ppo_runs) if ppo_runs else math.nan
    ppo_worst = max(at_bar(r["seconds"]) for r in ppo_runs) if ppo_runs else math.nan
    reached = sum(r["seconds"] is not None for r in ours_runs)
    bests = ", ".join(f"{r['best_mean']:.1f}" for r in ours_runs)
    rows = [
        Row(f"{race.env_id}: ours reached {race.bar:g} on",
            ours=f"{reached} of {len(ours_runs)} seeds (best means {bests})"),
        Row(f"{race.env_id}: median s to {race.bar:g}, ours vs PPO",
            ours=f"{fmt_med(med)} vs {fmt_med(ppo_med) if ppo_runs else 'not run'}; slowest {fmt_med(worst)} vs "
            f"{fmt_med(ppo_worst) if ppo_runs else 'not run'}"),
    ]  # fmt: skip
    if race.env_id == "CartPole-v1":
        confirms = [r["confirm_mean"] for r in ours_runs]
        met = bool(ppo_runs) and med <= ppo_med / 2 and worst <= ppo_worst and min(confirms) >= 475
        steps = median(r["steps"] for r in ours_runs), median(r["steps"] for r in ppo_runs) if ppo_runs else math.nan
        rows.append(Row("CartPole-v1 target", ours=f"median {fmt_med(med)}, slowest {fmt_med(worst)}, "
                        f"fresh games ≥ {min(confirms):.1f}", target=race.goal, met=met,
                        why=f"ours plays far more of the game: a median {steps[0]:,.0f} env steps to the bar against "
                        f"PPO's {steps[1]:,.0f}, each generation 200 games to pick its best and 2 x 100 to measure "
                        "both players (CartPole's vector env: ~0.3 ms a step for all of them); and the first "
                        "training traces TensorFlow's step (~0.6 s of each fresh process)."))  # fmt: skip
    elif race.env_id == "Acrobot-v1":
        met = reached == len(ours_runs) and (not ppo_runs or med < ppo_med)
        rows.append(Row("Acrobot-v1 target", ours=f"{reached}/{len(ours_runs)}, median {fmt_med(med)}",
                        target=race.goal, met=met and bool(ppo_runs)))  # fmt: skip
    elif race.env_id == "MountainCar-v0":
        rows.append(Row("MountainCar-v0 target", ours=f"{reached}/{len(ours_runs)}", target=race.goal,
                        met=reached == len(ours_runs)))  # fmt: skip
    else:
        positive = sum(r["best_mean"] >= 0 for r in ours_runs)
        rows.append(Row("LunarLander-v3 target", ours=f"≥ 0 on {positive}/{len(ours_runs)}, 200 on {reached}",
                        target=race.goal, met=positive == len(ours_runs)))  # fmt: skip
    return rows
