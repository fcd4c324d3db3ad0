"""GIF rendering: an episode's RGB frames -> animated GIF bytes.

Frames come from :func:`cartpole_core.evaluate.record_episode` (or any list of uint8
(height, width, 3) arrays). Downscaling keeps every ``scale``-th pixel (no smoothing:
smoothing creates colours, and GIF files grow with colours), and ``frame_stride`` keeps
every k-th step with a longer frame duration, so playback stays in real time.
"""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np

from cartpole_core.errors import UserError

#: Seconds of game time per env step when the env does not say (CartPole: 0.02 s, 50 fps).
DEFAULT_FPS = 50
#: GIF frame durations are stored in hundredths of a second; browsers slow anything
#: shorter than 20 ms, so the fastest real frame is 20 ms.
MIN_FRAME_MS = 20


def frame_duration_ms(env_fps: float, frame_stride: int) -> int:
    """Milliseconds each GIF frame is shown so playback runs at the game's own speed."""
    ms = 1000.0 * frame_stride / max(env_fps, 1e-6)
    return int(max(MIN_FRAME_MS, round(ms / 10.0) * 10))


def downscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (h, w, 3) -> (ceil(h/scale), ceil(w/scale), 3), keeping every scale-th pixel."""
    return frame[::scale, ::scale] if scale > 1 else frame


def frames_to_gif(
    frames: list[np.ndarray], env_fps: float = DEFAULT_FPS, frame_stride: int = 1, scale: int = 2
) -> bytes:
    """Encode frames as an animated GIF that loops forever.

    ``frames`` are uint8 (h, w, 3) arrays taken every ``frame_stride`` steps of a game
    running at ``env_fps`` steps per second; ``scale`` keeps every scale-th pixel.
    """
    if not frames:
        raise UserError("There are no frames to make a GIF of: play a game first.")
    stack = np.stack([downscale(np.asarray(f, dtype=np.uint8), scale) for f in frames])
    buffer = io.BytesIO()
    iio.imwrite(
        buffer,
        stack,
        extension=".gif",
        duration=frame_duration_ms(env_fps, frame_stride),
        loop=0,
    )
    return buffer.getvalue()
