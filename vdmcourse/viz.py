"""Looking at videos: inline animations, frame strips, GIF / MP4 files and a frame scrubber.

Every function takes a video ``(T, C, H, W)`` or a batch ``(B, T, C, H, W)`` (torch
tensor on any device, with or without grad, or NumPy array), C = 1 (grey) or 3 (RGB),
and a *stated* ``value_range``: ``(0, 1)`` for data, ``(-1, 1)`` for model inputs and
outputs. The range is never guessed: values outside it (beyond a small tolerance, which
is clamped) raise a ``ValueError`` that says which range the values look like.

All of them go through :func:`to_uint8_frames`, the one conversion to displayable
``uint8`` frames; a batch becomes a grid of clips, played together.

The layout is never guessed either: a shape ``(..., 1, 3, H, W)`` reads as one RGB
frame *and* as three grey frames written ``(B, C, T, H, W)``, so it is refused unless
``channels=3`` (every function takes it) says it is one RGB frame.
"""

from __future__ import annotations

import base64
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from IPython.display import HTML
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "to_uint8_frames",
    "show_video",
    "frame_strip",
    "save_gif",
    "save_mp4",
    "scrubber",
    "draw_architecture",
]

VALUE_RANGES = ((0.0, 1.0), (-1.0, 1.0))
# Sampler outputs overshoot their range a little; up to this fraction of the range's
# width is clamped silently, anything further is a range mix-up and raises.
RANGE_TOLERANCE = 0.05
# Grey separator between clips in a grid: visible on black and on white frames.
SEPARATOR = 128
# Automatic upscaling makes each clip at least this many pixels on its longer side
# (a 32x32 digit is shown 4x), so small frames are visible on a screen.
MIN_DISPLAY_SIZE = 128
# Browsers slow GIF frames shorter than 20 ms down to 100 ms.
MAX_GIF_FPS = 50


def to_uint8_frames(
    video,
    value_range: Sequence[float] = (0, 1),
    *,
    scale: int | None = 1,
    columns: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    """Convert a video or a batch of videos to displayable frames.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)``, C = 1 or 3, torch tensor or
            NumPy array, values in ``value_range``.
        value_range: ``(0, 1)`` (data) or ``(-1, 1)`` (model range): the range the values
            are in, mapped to 0..255.
        scale: integer nearest-neighbour upscaling of every frame; ``None``: the smallest
            factor that makes each clip at least 128 pixels on its longer side (4 for 32x32).
        columns: clips per grid row for a batch (default: all clips in one row, at most 8).

    Returns:
        ``(T, H', W', C)`` uint8 NumPy array, C = 1 or 3. A single clip gives
        ``H' = scale * H``, ``W' = scale * W``; a batch is laid out as a grid of
        ``columns`` clips per row with a 1-pixel grey separator between clips (empty
        grid cells are grey too).
    """
    clips = _uint8_clips(video, value_range, channels)  # (B, T, H, W, C)
    if scale is None:
        scale = max(1, MIN_DISPLAY_SIZE // max(clips.shape[2:4]))
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be a positive int or None; got {scale!r}")
    clips = clips.repeat(scale, axis=2).repeat(scale, axis=3)  # (B, T, sH, sW, C)
    batch = clips.shape[0]
    if columns is None:
        columns = min(batch, 8)
    if not isinstance(columns, int) or isinstance(columns, bool) or columns < 1:
        raise ValueError(f"columns must be a positive int; got {columns!r}")
    return _tile(clips, columns=min(columns, batch))  # (T, H', W', C)


def show_video(
    video,
    *,
    value_range: Sequence[float] = (0, 1),
    fps: float = 8,
    scale: int | None = None,
    columns: int | None = None,
    channels: int | None = None,
) -> HTML:
    """Show a video, or a batch as a grid of clips playing together, inline in a notebook.

    The result is an animated GIF embedded in HTML as ``<img src="data:image/gif;base64,...">``.
    This one output plays everywhere a notebook is read: JupyterLab, nbviewer and
    GitHub, which keep sanitised ``text/html`` with ``data:`` images but strip
    JavaScript (so matplotlib's ``FuncAnimation`` HTML shows nothing there) and drop
    ``<video>`` tags; a bare ``image/gif`` output is not rendered by nbconvert (nbviewer).
    Put it last in a cell, or pass it to ``IPython.display.display``.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in ``value_range``, C = 1 or 3.
        value_range: ``(0, 1)`` for data, ``(-1, 1)`` for model outputs.
        fps: frames per second, at most 50.
        scale: nearest-neighbour upscaling; default: enough for each clip to be at least
            128 pixels on its longer side.
        columns: clips per grid row for a batch (default: up to 8 in one row).

    Returns:
        ``IPython.display.HTML`` holding the GIF; it loops forever. Pillow merges
        identical consecutive frames into one longer frame, so a still video plays as one frame.
    """
    frames = to_uint8_frames(video, value_range, scale=scale, columns=columns, channels=channels)  # (T, H', W', C)
    gif = _encode_gif(frames, fps)
    data = base64.b64encode(gif).decode("ascii")
    height, width = frames.shape[1:3]
    return HTML(
        f'<img src="data:image/gif;base64,{data}" width="{width}" height="{height}" '
        f'alt="video, {len(frames)} frames at {fps:g} fps">'
    )


def frame_strip(
    video,
    *,
    value_range: Sequence[float] = (0, 1),
    every: int = 1,
    titles: Sequence[str] | None = None,
    ax: Axes | None = None,
    channels: int | None = None,
) -> Figure:
    """Draw frames side by side, left to right, one row per clip, labelled with frame indices.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in ``value_range``, C = 1 or 3.
        value_range: ``(0, 1)`` for data, ``(-1, 1)`` for model outputs.
        every: show frames 0, every, 2 * every, ...
        titles: one label per clip (row), e.g. ``["data", "sample"]``.
        ax: draw into this matplotlib Axes; default: a new figure sized to the strip.

    Returns:
        The matplotlib ``Figure``. A new figure is closed in pyplot, so a notebook shows
        it once when it ends a cell (``display(fig)`` elsewhere); save it with
        ``fig.savefig(path)``.
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every must be a positive int; got {every!r}")
    clips = _uint8_clips(video, value_range, channels)[:, ::every]  # (B, T', H, W, C)
    batch, frames, height, width = clips.shape[:4]
    if titles is not None and len(titles) != batch:
        raise ValueError(f"titles must have one label per clip ({batch}); got {len(titles)}")
    strip = _tile(rearrange(clips, "b t h w c -> (b t) h w c"), columns=frames)  # (B(H+1)-1, T'(W+1)-1, C)

    if ax is None:
        figure = plt.figure(figsize=(1.0 + 0.9 * frames, 0.4 + 0.9 * batch), layout="constrained")
        # Closed, so a notebook shows it once: as the cell's value, not again at the cell's end.
        plt.close(figure)
        ax = figure.add_subplot()
    ax.imshow(_without_grey_axis(strip), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    frame_indices = range(0, frames * every, every)
    ax.set_xticks([i * (width + 1) + (width - 1) / 2 for i in range(frames)], [str(i) for i in frame_indices])
    ax.set_xlabel("frame")
    labels = list(titles) if titles is not None else [""] * batch
    ax.set_yticks([i * (height + 1) + (height - 1) / 2 for i in range(batch)], labels)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax.figure


def save_gif(
    video,
    path,
    *,
    value_range: Sequence[float] = (0, 1),
    fps: float = 8,
    scale: int = 1,
    columns: int | None = None,
    channels: int | None = None,
) -> Path:
    """Write a video (or a batch, as a grid) to an animated GIF that loops forever.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in ``value_range``, C = 1 or 3.
        path: file ending in ``.gif``; its folder must exist. Written atomically: an
            existing file is replaced only once the new one is complete.
        value_range: ``(0, 1)`` for data, ``(-1, 1)`` for model outputs.
        fps: frames per second, at most 50.
        scale: nearest-neighbour upscaling (e.g. 4 for 32x32 clips).
        columns: clips per grid row for a batch.

    Returns:
        The path written. GIF holds 256 colours per frame: grey videos are exact, RGB
        videos with more colours are quantised.
    """
    path = _checked_path(path, ".gif", "save_gif")
    frames = to_uint8_frames(video, value_range, scale=scale, columns=columns, channels=channels)  # (T, H', W', C)
    gif = _encode_gif(frames, fps)
    _write_atomically(path, lambda temporary: temporary.write_bytes(gif))
    return path


def save_mp4(
    video,
    path,
    *,
    value_range: Sequence[float] = (0, 1),
    fps: float = 8,
    scale: int = 1,
    columns: int | None = None,
    channels: int | None = None,
) -> Path:
    """Write a video (or a batch, as a grid) to an H.264 MP4 file.

    Needs an ffmpeg encoder through the optional package ``imageio-ffmpeg``
    (``pip install imageio-ffmpeg``); without it a ``RuntimeError`` says so. GIFs
    (:func:`save_gif`) need nothing extra.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` in ``value_range``, C = 1 or 3.
        path: file ending in ``.mp4``; its folder must exist. Written atomically.
        value_range: ``(0, 1)`` for data, ``(-1, 1)`` for model outputs.
        fps: frames per second.
        scale: nearest-neighbour upscaling (e.g. 4 for 32x32 clips).
        columns: clips per grid row for a batch.

    Returns:
        The path written. Frames are padded with black at the bottom and right to a
        multiple of 16 pixels (what H.264 players expect); colours are lossy-compressed.
    """
    path = _checked_path(path, ".mp4", "save_mp4")
    _check_fps(fps, maximum=None)
    frames = to_uint8_frames(video, value_range, scale=scale, columns=columns, channels=channels)  # (T, H', W', C)
    _require_ffmpeg()
    height, width = frames.shape[1:3]
    pad = ((0, 0), (0, -height % 16), (0, -width % 16), (0, 0))
    rgb = np.pad(frames, pad).repeat(3 // frames.shape[-1], axis=-1)  # (T, H16, W16, 3)

    def write(temporary: Path) -> None:
        options = dict(fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16)
        iio.imwrite(temporary, rgb, plugin="FFMPEG", **options)

    _write_atomically(path, write)
    return path


def scrubber(
    video,
    *,
    value_range: Sequence[float] = (0, 1),
    fps: float = 8,
    scale: int | None = None,
    columns: int | None = None,
    channels: int | None = None,
):
    """An ipywidgets frame scrubber: a Play button and a frame slider above the frame.

    Needs a live kernel (JupyterLab); a saved notebook on GitHub shows only its text
    form, so use :func:`show_video` for output meant to be read there.

    Args:
        video: ``(T, C, H, W)`` or ``(B, T, C, H, W)`` (a grid, scrubbed together) in
            ``value_range``, C = 1 or 3.
        value_range: ``(0, 1)`` for data, ``(-1, 1)`` for model outputs.
        fps: playback speed of the Play button.
        scale: nearest-neighbour upscaling; default as in :func:`show_video`.
        columns: clips per grid row for a batch.

    Returns:
        ``ipywidgets.VBox([HBox([Play, IntSlider]), Image])``: the slider runs over frames
        0..T-1, the Play button is linked to it in the browser, and moving the slider
        shows that frame (PNG) in the Image.
    """
    import ipywidgets as widgets

    _check_fps(fps, maximum=None)
    frames = to_uint8_frames(video, value_range, scale=scale, columns=columns, channels=channels)  # (T, H', W', C)
    pngs = [iio.imwrite("<bytes>", frame, extension=".png") for frame in _without_grey_axis(frames)]
    last = len(frames) - 1
    play = widgets.Play(value=0, min=0, max=last, interval=max(1, round(1000 / fps)), description="play")
    slider = widgets.IntSlider(value=0, min=0, max=last, description="frame")
    widgets.jslink((play, "value"), (slider, "value"))
    image = widgets.Image(value=pngs[0], format="png", width=frames.shape[2], height=frames.shape[1])

    def show_frame(change) -> None:
        image.value = pngs[change["new"]]

    slider.observe(show_frame, names="value")
    return widgets.VBox([widgets.HBox([play, slider]), image])


def _uint8_clips(video, value_range, channels: int | None = None) -> np.ndarray:
    """Validate a video or batch and map it to uint8: ``(B, T, H, W, C)`` (B = 1 for one clip)."""
    if isinstance(video, torch.Tensor):
        array = video.detach().to(device="cpu", dtype=torch.float32).numpy()
    elif isinstance(video, np.ndarray):
        array = video.astype(np.float32)
    else:
        raise TypeError(f"video must be a torch.Tensor or numpy.ndarray; got {type(video).__name__}")
    _check_layout(array.shape, channels)
    if array.ndim == 4:
        array = array[None]  # (1, T, C, H, W)

    low, high = _checked_value_range(value_range)
    if not np.isfinite(array).all():
        raise ValueError("video contains NaN or infinite values")
    tolerance = RANGE_TOLERANCE * (high - low)
    found_low, found_high = float(array.min()), float(array.max())
    if found_low < low - tolerance or found_high > high + tolerance:
        raise ValueError(
            f"video values span [{found_low:.2f}, {found_high:.2f}] but value_range=({low:g}, {high:g}); "
            + _range_advice(found_low, found_high, (low, high))
        )
    unit = np.clip((array - low) / (high - low), 0.0, 1.0)
    pixels = np.round(unit * 255).astype(np.uint8)
    return rearrange(pixels, "b t c h w -> b t h w c")


def _check_layout(shape: tuple[int, ...], channels: int | None = None) -> None:
    expected = "video must be (T, C, H, W) or (B, T, C, H, W) with C = 1 or 3"
    if channels is not None and (channels not in (1, 3) or len(shape) not in (4, 5) or shape[-3] != channels):
        raise ValueError(f"channels={channels!r} but the video's C axis (shape[-3]) is {shape[-3] if len(shape) >= 3 else None}; {expected}")
    if channels is None and len(shape) in (4, 5) and shape[-4:-2] == (1, 3):
        raise ValueError(
            f"video of shape {tuple(shape)} is ambiguous: one RGB frame (T = 1, C = 3), or three grey frames in "
            "(B, C, T, H, W) order? For one RGB frame pass channels=3; for grey frames rearrange to "
            "(B, T, C, H, W): rearrange(video, 'b c t h w -> b t c h w')"
        )
    if len(shape) not in (4, 5):
        hint = ""
        if len(shape) == 3:
            hint = "; for grey frames (T, H, W) add a channel axis: video[:, None]"
        raise ValueError(f"{expected}; got shape {tuple(shape)}{hint}")
    if min(shape) == 0:
        raise ValueError(f"{expected}; got shape {tuple(shape)} with an empty axis")
    channels = shape[-3]
    if channels in (1, 3):
        return
    if shape[-1] in (1, 3):
        hint = "it looks channels-last: rearrange(video, '... h w c -> ... c h w')"
    elif shape[-4] in (1, 3) and len(shape) == 5:
        hint = "it looks like (B, C, T, H, W): rearrange(video, 'b c t h w -> b t c h w')"
    elif shape[-4] in (1, 3):
        hint = "it looks like (C, T, H, W): rearrange(video, 'c t h w -> t c h w')"
    else:
        hint = f"C = {channels} is not 1 or 3"
    raise ValueError(f"{expected}; got shape {tuple(shape)}: {hint}")


def _checked_value_range(value_range) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in value_range)
    except (TypeError, ValueError):
        pair = None
    if pair not in VALUE_RANGES:
        raise ValueError(f"value_range must be (0, 1) for data or (-1, 1) for model outputs; got {value_range!r}")
    return pair


def _range_advice(found_low: float, found_high: float, value_range: tuple[float, float]) -> str:
    if found_low >= 0 and found_high > 2:
        return "the values look like 0..255 pixels: divide by 255 and pass value_range=(0, 1)"
    model_range_slack = RANGE_TOLERANCE * 2
    if value_range == (0.0, 1.0) and -1 - model_range_slack <= found_low and found_high <= 1 + model_range_slack:
        return "pass value_range=(-1, 1) for model outputs"
    return "clamp the video first (video.clamp(-1, 1)) if values beyond the range are expected, e.g. noisy x_t"


def _tile(tiles: np.ndarray, columns: int) -> np.ndarray:
    """Lay tiles ``(N, ..., H, W, C)`` out as a grid ``(..., rows(H+1)-1, columns(W+1)-1, C)``
    with a 1-pixel separator between tiles; missing cells of the last row are separator-coloured."""
    rows = math.ceil(tiles.shape[0] / columns)
    blank = np.full((rows * columns - tiles.shape[0], *tiles.shape[1:]), SEPARATOR, dtype=np.uint8)
    tiles = np.concatenate([tiles, blank])  # (rows * columns, ..., H, W, C)
    # A separator below and right of every tile; the outer ones are cropped after the rearrange.
    border = [(0, 0)] * (tiles.ndim - 3) + [(0, 1), (0, 1), (0, 0)]
    tiles = np.pad(tiles, border, constant_values=SEPARATOR)  # (rows * columns, ..., H+1, W+1, C)
    grid = rearrange(tiles, "(r k) ... h w c -> ... (r h) (k w) c", k=columns)
    return grid[..., :-1, :-1, :]


def _check_fps(fps, maximum: float | None) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    if maximum is not None and fps > maximum:
        raise ValueError(f"fps must be at most {maximum} for a GIF (browsers slow shorter frames down); got {fps!r}")


def _encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """GIF bytes for uint8 frames ``(T, H, W, C)``, looping forever."""
    _check_fps(fps, maximum=MAX_GIF_FPS)
    return iio.imwrite("<bytes>", _without_grey_axis(frames), extension=".gif", duration=1000 / fps, loop=0)


def _without_grey_axis(pixels: np.ndarray) -> np.ndarray:
    """``(..., H, W, 1)`` -> ``(..., H, W)``; RGB ``(..., H, W, 3)`` unchanged. Image writers
    and ``imshow`` take grey images without a channel axis."""
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def _require_ffmpeg() -> None:
    advice = (
        "save_mp4 needs an ffmpeg encoder: pip install imageio-ffmpeg "
        "(or conda install -c conda-forge imageio-ffmpeg; save_gif needs nothing extra)"
    )
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RuntimeError(f"{advice}; imageio-ffmpeg is not installed") from None
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        raise RuntimeError(f"{advice}; imageio-ffmpeg found no ffmpeg executable ({error})") from None


def _checked_path(path, suffix: str, function: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{function}: path must be a str or Path; got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{function}: path must end in {suffix}; got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"{function}: folder {str(path.parent)!r} does not exist; create it first, "
            f"e.g. Path({str(path.parent)!r}).mkdir(parents=True)"
        )
    return path


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write`` on a temporary file beside ``path``, then rename it onto ``path``:
    a failure leaves any earlier file untouched and no temporary file behind."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=f".tmp{path.suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def draw_architecture(model: torch.nn.Module, inputs: tuple | None = None, *, ax: Axes | None = None) -> Figure:
    """Draw ``model`` as the modules its forward pass really calls, so the picture cannot
    drift from the code.

    The model runs once on ``inputs`` (default for course models with a ``config``: one
    clip of zeros ``(1, T, C, H, W)``, ``t = 0.5`` and label 0 when conditional) with a
    hook on every submodule; the outermost modules it calls (those whose parent module
    was not itself called) become boxes, left to right
    in call order and placed lower the smaller its output's spatial size, so a U-Net
    draws as a U; it shows the module's name, class and output shape, coloured by
    what it contains (temporal layers, attention, neither). For a U-Net whose ``down``
    and ``up`` levels pair up, dashed arrows show the skip connections.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"draw_architecture: model must be an nn.Module; got {type(model).__name__}")
    inputs = inputs if inputs is not None else _default_inputs(model)
    calls, hooks = [], []

    def record(name: str, module: torch.nn.Module):
        def hook(_module, _args, output):
            output = output[0] if isinstance(output, (tuple, list)) else output
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            calls.append((name, module, shape))
        return hook

    for name, module in model.named_modules():
        if name and not isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Identity)):
            hooks.append(module.register_forward_hook(record(name, module)))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in hooks:
            handle.remove()
    # Keep the outermost calls: a module whose parent was itself called is drawn inside it.
    called = {name for name, _, _ in calls}
    boxes = [call for call in calls
             if not any(".".join(call[0].split(".")[:i]) in called for i in range(1, call[0].count(".") + 1))]
    if not boxes:
        raise ValueError(f"draw_architecture: {type(model).__name__}'s forward pass called none of its child modules")

    sizes = [shape[-2] for _, _, shape in boxes if len(shape) >= 4]
    top = max(sizes) if sizes else 1
    figure = ax.figure if ax is not None else plt.figure(figsize=(max(6.0, 1.25 * len(boxes)), 4.2))
    ax = ax if ax is not None else figure.add_subplot()
    colours = {"temporal": "#f4b183", "attention": "#c5b0d5", "embedding": "#d9d9d9", "other": "#9dc3e6"}
    centres = {}
    for index, (name, module, shape) in enumerate(boxes):
        level = math.log2(top / shape[-2]) if len(shape) >= 4 and shape[-2] > 0 else -0.8
        kind = _module_kind(module, shape)
        ax.text(index, -level, f"{name}\n{type(module).__name__}\n{shape[1:]}", ha="center", va="center", fontsize=6.5,
                bbox=dict(boxstyle="round,pad=0.3", facecolor=colours[kind], edgecolor="#555555"))
        if index:
            ax.annotate("", xy=(index - 0.42, -level), xytext=(index - 0.58, centres[boxes[index - 1][0]]),
                        arrowprops=dict(arrowstyle="->", color="#555555", lw=0.8))
        centres[name] = -level
    low = min(centres.values())
    notes = ["modules in call order"] + (["lower = smaller frames"] if low < 0 else [])
    downs = [i for i, (name, _, _) in enumerate(boxes) if name.startswith("down.") and "sample" not in name]
    ups = [i for i, (name, _, _) in enumerate(boxes) if name.startswith("up.") and "sample" not in name]
    if downs and len(downs) == len(ups):
        notes.append("dashed = skip connections")
        for source, target in zip(downs, reversed(ups)):  # last in, first out
            ax.annotate("", xy=(target, centres[boxes[target][0]] + 0.25), xytext=(source, centres[boxes[source][0]] + 0.25),
                        arrowprops=dict(arrowstyle="->", ls="--", color="#2e75b6", connectionstyle="arc3,rad=-0.15"))
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#555555") for c in colours.values()]
    ax.legend(handles, ["has temporal layers", "attention (space)", "embedding", "per-frame / other"], fontsize=7,
              loc="lower right")
    ax.set_xlim(-0.8, len(boxes) - 0.2)
    ax.set_ylim(low - 0.8, 1.8)
    ax.axis("off")
    ax.set_title(f"{type(model).__name__}: {'; '.join(notes)}", fontsize=9)
    return figure


def _default_inputs(model: torch.nn.Module) -> tuple:
    config = getattr(model, "config", None)
    needed = ("image_size", "channels")
    if config is None or not all(hasattr(config, field) for field in needed):
        raise ValueError(
            f"draw_architecture: pass inputs=(...) for {type(model).__name__}: it has no config with "
            "image_size and channels to build an example clip from"
        )
    size, frames = config.image_size, getattr(config, "frames", 1)
    device = next(model.parameters()).device
    x = torch.zeros(1, frames, config.channels, size, size, device=device)
    t = torch.full((1,), 0.5, device=device)
    labels = torch.zeros(1, dtype=torch.long, device=device) if getattr(config, "num_classes", None) else None
    return (x, t, labels)


def _module_kind(module: torch.nn.Module, shape: tuple) -> str:
    names = [name.lower() for name, _ in module.named_modules()] + [type(m).__name__.lower() for m in module.modules()]
    if any("temporal" in name for name in names):
        return "temporal"
    if any("attention" in name for name in names):
        return "attention"
    if len(shape) <= 2:
        return "embedding"
    return "other"
