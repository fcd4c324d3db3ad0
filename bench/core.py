"""The benchmark's frame: settings, the stage registry, timing helpers and result rows.

A stage is one function ``fn(ctx: Context) -> StageResult`` decorated with :func:`stage`;
the decorator appends it to :data:`STAGES`, and ``python -m bench`` runs them in the order
of their ``number``. To add a stage, write the function in :mod:`bench.stages` (or in a new
module listed in :data:`STAGE_MODULES`) and decorate it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import keras

    from cartpole_core.dataset import Dataset

T = TypeVar("T")

#: Modules whose import registers stages (in addition to this one).
STAGE_MODULES = (
    "bench.stages",
    "bench.dashboard",
    "bench.generations",
    "bench.server_stages",
    "bench.ray_stage",
    "bench.peers_stage",
    "bench.deploy_stage",
)

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (where app.py and BENCHMARKS.md live)."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of one benchmark run (full or ``--quick``)."""

    quick: bool = False
    reps: int = 3
    """Repetitions of every timed measurement (the median is reported)."""
    gen_sizes: tuple[int, ...] = (10_000, 100_000)
    """Random games per generation run; the first one is the notebook's (target size)."""
    gen_threshold: float = 50.0
    train_games: int = 10_000
    """Games generated for the training dataset (the notebook's 10,000 -> about 22k rows)."""
    train_epochs: int = 4
    train_batch: int = 64
    play_games: int = 100
    predict_frames: int = 300
    """Frames the per-frame ``model.predict`` reference plays (then extrapolated)."""
    gif_steps: int = 500
    gif_stride: int = 2
    """Our GIF settings: every ``gif_stride``-th frame, every ``gif_scale``-th pixel
    (the CLI's ``--gif-stride`` default and :func:`frames_to_gif`'s default)."""
    gif_scale: int = 2
    run_args: tuple[str, ...] = ()
    """Extra arguments of ``python -m cartpole_core run`` (none: the notebook's defaults)."""
    dashboard_timeout: float = 120.0
    switch_page: str | None = None
    streamlit_args: tuple[str, ...] = ()
    """Extra arguments of ``streamlit run`` (e.g. ``--server.fileWatcherType=none``, for diagnosis)."""
    """Dashboard page to switch to (a label or URL part); None: the first page without TensorFlow."""

    @classmethod
    def full(cls, reps: int = 3) -> Settings:
        return cls(reps=reps)

    @classmethod
    def quick_mode(cls, reps: int = 1) -> Settings:
        return cls(
            quick=True,
            reps=reps,
            gen_sizes=(1_000, 4_000),
            train_games=2_000,
            train_epochs=1,
            play_games=10,
            predict_frames=30,
            run_args=("--games", "2000", "--eval-games", "3"),
            dashboard_timeout=90.0,
        )


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the summary table."""

    measure: str
    reference: str = "—"
    """The notebook's way, formatted."""
    ours: str = "—"
    ratio: float | None = None
    """reference / ours (higher is better for us), when both were timed."""
    target: str = ""
    met: bool | None = None
    """None: no target for this row (or not measurable in this run)."""
    why: str = ""
    """Why the target may be missed, shown under "Targets not met" when it is."""


@dataclass
class StageResult:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Bullet points shown under the stage's heading in the details."""
    details: list[str] = field(default_factory=list)
    """Extra Markdown blocks (side-by-side tables...)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Raw figures (for ``--json`` and for later stages)."""
    skipped: str | None = None
    """Why the stage did not run (then rows may be empty)."""
    seconds: float = 0.0
    """Wall time of the whole stage."""


@dataclass(frozen=True)
class StageSpec:
    number: int
    key: str
    title: str
    fn: Callable[[Context], StageResult]


STAGES: list[StageSpec] = []


def stage(number: int, key: str, title: str) -> Callable[[Callable[[Context], StageResult]], Callable]:
    """Register ``fn`` as stage ``number`` (``key`` selects it on the command line)."""

    def register(fn: Callable[[Context], StageResult]) -> Callable[[Context], StageResult]:
        if any(s.key == key for s in STAGES):
            raise ValueError(f"stage {key!r} is registered twice")
        STAGES.append(StageSpec(number, key, title, fn))
        STAGES.sort(key=lambda s: s.number)
        return fn

    return register


# ---------------------------------------------------------------- context


@dataclass
class Context:
    """What a stage gets: the settings, shared lazily-built inputs, earlier stages' results."""

    settings: Settings
    root: Path = ROOT
    results: dict[str, StageResult] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def dataset(self) -> Dataset:
        """The default dataset (``train_games`` random games, seed 0), generated once."""
        if "dataset" not in self.cache:
            from cartpole_core.generate import GenerationConfig, generate

            log(f"  generating the training dataset ({self.settings.train_games:,} games)")
            result = generate(GenerationConfig(games=self.settings.train_games, seed=0))
            self.cache["dataset"] = result.require_accepted()
        return self.cache["dataset"]

    def trained_model(self) -> keras.Model:
        """A model trained our way on :meth:`dataset` (stage 2 leaves one here)."""
        if "model" not in self.cache:
            from cartpole_core.model import ModelConfig, build_model
            from cartpole_core.training import TrainingConfig, train

            ds = self.dataset()
            log("  training a model for the later stages")
            model = build_model(ds.obs_dim, ds.n_actions, ModelConfig(), seed=0)
            train(model, ds, TrainingConfig(epochs=self.settings.train_epochs, batch_size=self.settings.train_batch))
            self.cache["model"] = model
        return self.cache["model"]


# ---------------------------------------------------------------- timing


def log(message: str) -> None:
    """Progress on stderr (stdout stays for the report)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def alternate(
    reps: int, reference: Callable[[int], T], ours: Callable[[int], Any], label: str = ""
) -> tuple[list[float], list[T], list[float], list[Any]]:
    """Time ``reference(rep)`` and ``ours(rep)`` ``reps`` times each, swapping which goes
    first on every repetition (so neither always runs on a warmer or busier machine).

    Returns (reference seconds, reference results, our seconds, our results).
    """
    ref_s: list[float] = []
    ref_r: list[T] = []
    our_s: list[float] = []
    our_r: list[Any] = []
    for rep in range(reps):
        order = ("ref", "ours") if rep % 2 == 0 else ("ours", "ref")
        for who in order:
            if who == "ref":
                s, r = timed(lambda rep=rep: reference(rep))
                ref_s.append(s)
                ref_r.append(r)
            else:
                s, r = timed(lambda rep=rep: ours(rep))
                our_s.append(s)
                our_r.append(r)
            log(f"  {label} rep {rep + 1}/{reps} {who:>4}: {fmt_s(s)}")
    return ref_s, ref_r, our_s, our_r


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# ---------------------------------------------------------------- formatting


def fmt_s(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits: 12.3 s, 45.6 ms, 7.89 µs."""
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_times(values: list[float], scale: float = 1.0) -> str:
    """Median of ``values`` (each divided by ``scale``) and, with several, the range."""
    vals = [v / scale for v in values]
    text = fmt_s(median(vals))
    if len(vals) > 1:
        text += f" ({fmt_s(min(vals))}–{fmt_s(max(vals))})"
    return text


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.3g}×"


def fmt_bytes(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} KB"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
