"""GIF rendering: an episode's RGB frames -> animated GIF bytes (written with Pillow).

Frames come from :func:`cartpole_core.evaluate.record_episode` (or any list of uint8
(height, width, 3) arrays). Downscaling keeps every ``scale``-th pixel (no smoothing:
smoothing creates colours, and GIF files grow with colours; measured here, antialiased
resizing made files 6x larger), and ``frame_stride`` keeps
every k-th step with a longer frame duration, so playback stays in real time.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cartpole_core.errors import UserError

#: Most colours in a GIF's shared palette.
PALETTE_COLORS = 64
#: Seconds of game time per env step when the env does not say (CartPole: 0.02 s, 50 fps).
DEFAULT_FPS = 50
#: GIF frame durations are stored in hundredths of a second; browsers slow anything
#: shorter than 20 ms, so the fastest real frame is 20 ms.
MIN_FRAME_MS = 20


def gif_stride(steps: int, max_frames: int, smallest: int = 1) -> int:
    """Keep every k-th step (at least ``smallest``) so ``steps`` steps fit in ``max_frames`` frames."""
    return max(smallest, -(-steps // max_frames))


def frame_duration_ms(env_fps: float, frame_stride: int) -> int:
    """Milliseconds each GIF frame is shown so playback runs at the game's own speed."""
    ms = 1000.0 * frame_stride / max(env_fps, 1e-6)
    return int(max(MIN_FRAME_MS, round(ms / 10.0) * 10))


def downscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (h, w, 3) -> (ceil(h/scale), ceil(w/scale), 3), keeping every scale-th pixel.

    Each kept pixel takes the darker of itself and the pixel below it, so one-pixel
    horizontal lines (CartPole's track) survive on a light background.
    """
    if scale <= 1:
        return frame
    kept = frame[::scale, ::scale].copy()
    below = frame[1::scale, ::scale]
    np.minimum(kept[: below.shape[0]], below, out=kept[: below.shape[0]])
    return kept


def frames_to_gif(
    frames: list[np.ndarray], env_fps: float = DEFAULT_FPS, frame_stride: int = 1, scale: int = 2
) -> bytes:
    """Encode frames as an animated GIF that loops forever.

    ``frames`` are uint8 (h, w, 3) arrays taken every ``frame_stride`` steps of a game
    running at ``env_fps`` steps per second; ``scale`` keeps every scale-th pixel.
    One palette (up to :data:`PALETTE_COLORS` colours, chosen from a sample of the frames)
    serves every frame, without dithering: a game's frames share their few colours, and
    building a palette per frame (what a plain ``imageio`` write does) took most of the time.
    """
    if not frames:
        raise UserError("There are no frames to make a GIF of: play a game first.")
    small = [np.ascontiguousarray(downscale(np.asarray(f, dtype=np.uint8), scale)) for f in frames]
    sample = np.concatenate(small[:: max(1, len(small) // 8)], axis=0)
    palette = Image.fromarray(sample).quantize(
        colors=PALETTE_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in small]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=frame_duration_ms(env_fps, frame_stride),
        loop=0,
    )
    return buffer.getvalue()


def label_frames(frames: list[np.ndarray], text: str, size: int = 28) -> list[np.ndarray]:
    """Copies of ``frames`` with ``text`` written in their top-left corner, dark on light,
    ``size`` pixels tall (readable after :func:`frames_to_gif` halves the frames)."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    labelled = []
    for frame in frames:
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        ImageDraw.Draw(image).text((12, 8), text, fill=(20, 20, 20), font=font)
        labelled.append(np.asarray(image))
    return labelled
