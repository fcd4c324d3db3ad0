"""Stage 9, second part, in a fresh process: what a dashboard job costs on Ray.

1. A warm training job through ``cluster.run_job`` against the same ``jobs.train_job`` called
   in this process (TensorFlow imported and the trainer traced in both before timing),
   alternating, 5 times each, for the load flow's 32-32 network and the notebook's network.
2. 20 training jobs one after another (the notebook's network, 1 epoch): after each, the
   resident memory of every Ray worker process, with the trainer pool (as shipped) and
   without it (a pool that keeps nothing, so each job builds and traces a fresh trainer).

Prints one JSON object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def train_without_pool(*args: Any, progress: Any = None) -> Any:
    """``train_job`` in a worker whose trainer pool keeps nothing."""
    from cartpole_core import training
    from cartpole_core.jobs import train_job

    training.TRAINERS = training.TrainerPool(architectures=0)
    return train_job(*args, progress=progress)


def _worker_rss() -> dict[int, int]:
    """pid -> private resident bytes (``RssAnon``) of every Ray task worker (process title
    ``ray::…``, not the hub). ``VmRSS`` would also count the object store's shared pages a
    worker has mapped (each job's dataset), which belong to Ray's store, not to the worker."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            if not title.startswith(b"ray::") or b"JobBook" in title:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    found[int(proc.name)] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return found


def main() -> None:
    from cartpole_core.cluster import JOB_MAX_CALLS, ensure_ray, run_job
    from cartpole_core.generate import GenerationConfig, generate
    from cartpole_core.jobs import train_job
    from cartpole_core.model import ModelConfig
    from cartpole_core.training import TrainingConfig

    data = generate(GenerationConfig(games=2000, seed=0)).require_accepted()
    config = TrainingConfig(epochs=1, seed=0)
    ensure_ray()
    out: dict[str, Any] = {"rows": len(data), "max_calls": JOB_MAX_CALLS, "timing": {}, "memory": {}}
    for name, model in (("32-32", ModelConfig(hidden=(32, 32))), ("notebook", ModelConfig())):
        args = (data, model, config, 0)
        for _ in range(3):  # warm: TensorFlow imported, trainer traced, here and in the worker
            train_job(*args)
            run_job(train_job, *args)
        here, there = [], []
        for _ in range(5):
            t = time.perf_counter()
            train_job(*args)
            here.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_job(train_job, *args)
            there.append(time.perf_counter() - t)
        out["timing"][name] = {"in_process": here, "ray_job": there}
    for mode, fn in (("pool", train_job), ("no pool", train_without_pool)):
        seen = []
        for _ in range(20):
            run_job(fn, data, ModelConfig(), config, 0)
            seen.append(_worker_rss())
        out["memory"][mode] = seen
    print(json.dumps(out))


if __name__ == "__main__":
    main()
