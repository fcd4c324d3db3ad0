"""Stage 11: peers — Stable-Baselines3's PPO and DQN against our ``improve`` on CartPole-v1.

Each seed (0-4; ``--quick``: 0-1, PPO only) runs three fresh processes one after another,
rotating their order from seed to seed: ``bench/peers/sb3_race.py --algo ppo``, the same with
``--algo dqn`` (RL Baselines3 Zoo's tuned settings, measured on 100 fixed games every few
thousand env steps, stopped at a mean of 475) and ``python -m cartpole_core improve`` as in
stage 7. All are measured on the same 100 games (argmax) and confirmed on the same 1,000
fresh games.

SB3 and a CPU-only torch live in a benchmark-only venv, ``bench/.peers-venv``, built here
from ``bench/peers/requirements.txt`` when missing or when that file changed (a stamp keeps
its hash); the app's requirements never see them. If it cannot be built, the stage is
skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.core import ROOT, Context, Row, StageResult, fmt_s, log, markdown_table, median, stage
from bench.generations import GOOD, first_reaching
from bench.stages import run_child

SEEDS = (0, 1, 2, 3, 4)
PEERS = ROOT / "bench" / "peers"
REQUIREMENTS = PEERS / "requirements.txt"
VENV = ROOT / "bench" / ".peers-venv"
STAMP = VENV / "requirements.sha256"
#: Thread settings of the peers' processes (the machine has 2 cores; torch gets 2 threads too).
#: OpenMP's default (spinning) is kept: on a quiet machine it is fastest (PPO seed 0: 3.6 s with
#: 2 threads, 5.2 s with 1, 9.4 s with OMP_WAIT_POLICY=PASSIVE). With any other busy process,
#: spinning threads make PPO 10-40x slower (148 s instead of 3.6 s): run this stage alone.
THREAD_ENV = [f"{v}=2" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")]
NAMES = {"ppo": "PPO", "dqn": "DQN", "ours": "ours"}


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


def run_json(cmd: list[str], root: Path) -> tuple[dict[str, Any], float]:
    """Run ``cmd`` in a fresh process (:func:`run_child`); its last stdout line as JSON, and its wall time."""
    wall, code, _, stdout, stderr = run_child(cmd, str(root), timeout=1800)
    if code != 0:
        raise RuntimeError(f"`{' '.join(cmd[-8:])}` exited {code}: {stderr.strip()[-500:]}")
    return json.loads(stdout.strip().splitlines()[-1]), wall


def ours(root: Path, seed: int) -> dict[str, Any]:
    """Stage 7's ``improve`` run; seconds to the bar = ``elapsed`` of the first generation ≥ 475."""
    cmd = [sys.executable, "-m", "cartpole_core", "improve", "--seed", str(seed), "--json", "--quiet",
           "--confirm-games", "1000", "--max-seconds", "110"]  # fmt: skip
    data, wall = run_json(cmd, root)
    good = first_reaching(data["generations"], GOOD)
    return {
        "seconds": None if good is None else good["elapsed"],
        "generation": None if good is None else good["generation"],
        "eval_mean": None if good is None else good["mean"],
        # Steps played to collect data (random games, then each generation's games), as for the
        # peers: evaluation games not counted.
        "steps": None if good is None else sum(g["env_steps"] for g in data["generations"][: good["generation"] + 1]),
        "confirm_mean": data["confirm_mean"],
        "best_mean": data["best_mean"],
        "run_seconds": data["seconds"],
        "wall": wall,
    }


def peer(python: Path, algo: str, seed: int) -> dict[str, Any]:
    """One ``sb3_race.py`` run in the peers venv (the zoo's budget), with at most 2 threads."""
    cmd = ["env", *THREAD_ENV, str(python), str(PEERS / "sb3_race.py"), "--algo", algo, "--seed", str(seed)]
    data, wall = run_json(cmd, ROOT)
    return dict(data, seconds=data["train_seconds"] if data["reached"] else None, wall=wall)


def at_bar(seconds: float | None) -> float:
    """Seconds to the bar, with never reaching it counting as slower than any time (for medians)."""
    return math.inf if seconds is None else seconds


def fmt_reach(r: dict[str, Any], who: str) -> str:
    """When ``who`` reached the bar: seconds and env steps (peers) or generation (ours)."""
    if r["seconds"] is None:
        return "not reached" + ("" if who == "ours" else f" in {r['steps_done']:,} steps")
    if who == "ours":
        return f"{r['seconds']:.1f} s (generation {r['generation']})"
    return f"{r['seconds']:.1f} s ({r['steps']:,} steps)"


def fmt_med(seconds: float) -> str:
    return "—" if math.isinf(seconds) else fmt_s(seconds)


@stage(11, "peers", "Peers: Stable-Baselines3's PPO and DQN against our `improve` on CartPole-v1")
def peers(ctx: Context) -> StageResult:
    try:
        python = peers_python()
    except PeersUnavailable as exc:
        return StageResult(skipped=f"the peers venv could not be built: {exc}")
    quick = ctx.settings.quick
    seeds, algos = (SEEDS[:2], ("ppo",)) if quick else (SEEDS, ("ppo", "dqn"))
    everyone = (*algos, "ours")
    per_seed: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        k = i % len(everyone)
        got: dict[str, Any] = {"seed": seed, "order": [NAMES[w] for w in everyone[k:] + everyone[:k]]}
        for who in everyone[k:] + everyone[:k]:
            got[who] = ours(ctx.root, seed) if who == "ours" else peer(python, who, seed)
            log(f"  seed {seed} {NAMES[who]:>4}: {fmt_reach(got[who], who)}, confirm {got[who]['confirm_mean']:.2f}")
        per_seed.append(got)

    med = {w: median(at_bar(p[w]["seconds"]) for p in per_seed) for w in everyone}
    med_eval = {w: median(p[w]["seconds_with_evaluations"] for p in per_seed) for w in algos}
    med_steps = {w: median(p[w]["steps"] if p[w]["reached"] else math.inf for p in per_seed) for w in algos}
    med_steps["ours"] = median(math.inf if p["ours"]["steps"] is None else p["ours"]["steps"] for p in per_seed)
    med_confirm = {w: median(p[w]["confirm_mean"] for p in per_seed) for w in everyone}
    versions = per_seed[0]["ppo"]["versions"]

    def cell(p: dict[str, Any], w: str) -> str:
        text = f"{NAMES[w]} {fmt_reach(p[w], w)}"
        return (
            text
            + ("" if w == "ours" else f" / {p[w]['seconds_with_evaluations']:.1f} s")
            + f", {p[w]['confirm_mean']:.2f}"
        )

    out = StageResult()
    out.rows += [
        Row(f"seed {p['seed']}: s to ≥ {GOOD:g} (steps) / with evaluations, 1,000-game mean",
            ours=" · ".join(cell(p, w) for w in everyone))
        for p in per_seed
    ]  # fmt: skip
    out.rows += [
        Row(f"median s to ≥ {GOOD:g}: training only (with evaluations)",
            ours=" · ".join(f"{NAMES[w]} {fmt_med(med[w])} ({fmt_s(med_eval[w])})" for w in algos)
            + f" · ours {fmt_med(med['ours'])} (evaluations included)"),
        Row(f"median env steps to ≥ {GOOD:g}",
            ours=" · ".join(f"{NAMES[w]} {'—' if math.isinf(s) else f'{s:,.0f}'}" for w, s in med_steps.items())),
        Row("median mean on 1,000 fresh games", ours=" · ".join(f"{NAMES[w]} {m:.2f}" for w, m in med_confirm.items())),
        Row(f"our median s to ≥ {GOOD:g} ≤ PPO's median training s",
            ours=f"{fmt_med(med['ours'])} vs {fmt_med(med['ppo'])}", target="≤ PPO's",
            met=med["ours"] <= med["ppo"] and not math.isinf(med["ours"]),
            why=f"PPO with the zoo's tuned settings needs fewer env steps ({med_steps['ppo']:,.0f} against our "
            f"{med_steps['ours']:,.0f}, median) and its evaluations are not in its time, while ours are: every "
            "generation plays its 100 evaluation games through Gymnasium's CartPole one env and one step at a "
            "time (0.5-1.4 s per generation on this machine). Counting its evaluations, PPO "
            f"took {fmt_s(med_eval['ppo'])}."),
    ]  # fmt: skip

    header = ["seed", "order"]
    header += [f"{NAMES[w]} {h}" for w in algos for h in ("training s (steps)", "with evaluations", "1,000 games")]
    header += ["ours s (generation)", "ours 1,000 games", "ours env steps"]
    table = []
    for p in per_seed:
        row = [str(p["seed"]), " → ".join(p["order"])]
        for w in algos:
            row += [fmt_reach(p[w], w), f"{p[w]['seconds_with_evaluations']:.1f} s", f"{p[w]['confirm_mean']:.2f}"]
        steps = p["ours"]["steps"]
        table.append(row + [fmt_reach(p["ours"], "ours"), f"{p['ours']['confirm_mean']:.2f}",
                            "—" if steps is None else f"{steps:,}"])  # fmt: skip
    table.append(["median", ""]
                 + [x for w in algos for x in (fmt_med(med[w]), fmt_s(med_eval[w]), f"{med_confirm[w]:.2f}")]
                 + [fmt_med(med["ours"]), f"{med_confirm['ours']:.2f}",
                    "—" if math.isinf(med_steps["ours"]) else f"{med_steps['ours']:,.0f}"])  # fmt: skip
    out.details.append(markdown_table(header, table))
    out.notes += [
        f"Peers: Stable-Baselines3 {versions['stable_baselines3']}, torch {versions['torch']} (2 threads, "
        "OpenMP's default waiting: this stage must run alone, as other busy processes slow spinning threads "
        "10-40x), in "
        "`bench/.peers-venv` (`bench/peers/requirements.txt`); `bench/peers/sb3_race.py --algo A --seed S` "
        "trains with RL Baselines3 Zoo's tuned CartPole-v1 settings and budgets (PPO: 8 envs, 100,000 env "
        "steps; DQN: 1 env, 50,000)"
        + (" — PPO only with `--quick`" if quick else "")
        + ". Every 2,560 env steps (PPO, just after the update on each 10th rollout) or 2,500 (DQN) the model "
        "plays our 100 evaluation games of that seed (argmax, the reset seeds `improve` uses); training stops "
        "once their mean is ≥ 475, and the model it stopped with plays the same 1,000 fresh games as ours. "
        "Training seconds = `learn`'s wall time less the evaluations' time; torch's import and the model's "
        "construction are not counted.",
        "Ours: stage 7's `python -m cartpole_core improve --seed S --json --quiet --confirm-games 1000 "
        "--max-seconds 110`; seconds = `elapsed` of the first generation whose mean is ≥ 475 (generation 0's "
        "random games and first training, and every evaluation, included). Its 1,000-game mean is that of its "
        "best network, after it went on to 500 when it could. Its env steps are those of the random games and "
        "of the games each generation played to collect data (evaluation games not counted, as for the peers).",
        "One fresh process each, one after another per seed, rotating the order; wall times on a shared "
        "2-core machine.",
    ]
    medians = {"seconds": med, "with_evaluations": med_eval, "steps": med_steps, "confirm_mean": med_confirm}
    out.data = {
        "seeds": per_seed,
        "medians": {k: {w: None if math.isinf(v) else v for w, v in d.items()} for k, d in medians.items()},
        "versions": versions,
    }
    return out
