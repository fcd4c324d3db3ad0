"""GIF rendering: an episode's frames -> animated GIF bytes that loop forever."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from cartpole_core.errors import UserError
from cartpole_core.evaluate import EvaluationConfig, record_episode
from cartpole_core.gif import MIN_FRAME_MS, downscale, frame_duration_ms, frames_to_gif
from cartpole_core.policies import RandomPolicy

#: Few flat colours, so the GIF palette holds them exactly.
COLOURS = np.array([[255, 255, 255], [0, 0, 0], [200, 30, 30], [30, 30, 200]], dtype=np.uint8)


def striped_frames(n: int, height: int = 40, width: int = 60) -> list[np.ndarray]:
    """Frame k: white with a black bar at column 5k and a red block in the top-left corner."""
    frames = []
    for k in range(n):
        frame = np.full((height, width, 3), COLOURS[0], dtype=np.uint8)
        frame[:, 5 * k : 5 * k + 4] = COLOURS[1]
        frame[:10, :10] = COLOURS[2]
        frames.append(frame)
    return frames


@pytest.mark.parametrize(("scale", "shape"), [(1, (40, 60)), (2, (20, 30)), (3, (14, 20))])
def test_gif_decodes_to_the_frames_downscaled(scale, shape):
    frames = striped_frames(7)
    data = frames_to_gif(frames, scale=scale)
    assert data.startswith(b"GIF89a")
    decoded = iio.imread(data, index=None)
    assert decoded.shape[:3] == (7, *shape)
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(decoded[k][..., :3], downscale(frame, scale))


def test_gif_loops_forever_at_the_games_speed():
    data = frames_to_gif(striped_frames(4), env_fps=50, frame_stride=3)
    image = Image.open(io.BytesIO(data))
    assert image.info["loop"] == 0  # 0 = forever
    assert image.n_frames == 4
    durations = []
    for k in range(image.n_frames):
        image.seek(k)
        durations.append(image.info["duration"])
    assert durations == [60] * 4  # every 3rd step of a 50-steps-per-second game


@pytest.mark.parametrize(
    ("fps", "stride", "ms"),
    [(50, 1, 20), (50, 2, 40), (50, 3, 60), (30, 1, 30), (15, 1, 70), (1000, 1, MIN_FRAME_MS), (50, 10, 200)],
)
def test_frame_duration(fps, stride, ms):
    assert frame_duration_ms(fps, stride) == ms


def test_downscale_keeps_every_scale_th_pixel():
    frame = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    small = downscale(frame, 2)
    assert small.shape == (3, 4, 3)
    np.testing.assert_array_equal(small, frame[::2, ::2])
    assert downscale(frame, 1) is frame


def test_no_frames_is_a_user_error():
    with pytest.raises(UserError, match="no frames"):
        frames_to_gif([])


def test_gif_of_a_played_game_plays_in_real_time():
    """Pillow merges identical consecutive frames (adding up their durations), so the frame count
    may shrink, but the GIF still lasts exactly as long as the recorded steps."""
    episode = record_episode(RandomPolicy(2), EvaluationConfig(games=1, seed=0), frame_stride=2)
    data = frames_to_gif(episode.frames, frame_stride=2)
    decoded = iio.imread(data, index=None)
    assert decoded.shape[1:3] == (200, 300)
    assert 2 <= decoded.shape[0] <= len(episode.frames)
    image = Image.open(io.BytesIO(data))
    total_ms = 0
    for k in range(image.n_frames):
        image.seek(k)
        total_ms += image.info["duration"]
    assert total_ms == 40 * len(episode.frames)  # 2 steps of 20 ms per recorded frame
    assert len(data) < 200_000


def test_label_frames_writes_on_copies() -> None:
    from cartpole_core.gif import label_frames

    frames = [np.full((40, 120, 3), 255, dtype=np.uint8)]
    labelled = label_frames(frames, "generation 3: score 500")
    assert (frames[0] == 255).all(), "the original frame is untouched"
    assert labelled[0].shape == frames[0].shape and (labelled[0] < 255).any(), "text was drawn"
