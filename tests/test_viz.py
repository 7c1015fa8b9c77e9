"""Specification of vdmcourse.viz: one conversion to uint8 frames, and every display built on it."""

import base64
import re
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vdmcourse import viz
from vdmcourse.viz import frame_strip, save_gif, save_mp4, scrubber, show_video, to_uint8_frames


def ramp_video(frames=4, channels=1, height=5, width=6):
    """(T, C, H, W) in [0, 1] whose frames all differ (so no GIF frame is merged)."""
    values = torch.arange(frames * channels * height * width, dtype=torch.float32)
    return (values / values.max()).reshape(frames, channels, height, width)


def gif_frames(data: bytes) -> np.ndarray:
    return iio.imread(data, extension=".gif", index=None, mode="RGB")  # (T, H, W, 3) uint8


# --- to_uint8_frames -------------------------------------------------------------------------


def test_clip_becomes_channels_last_uint8():
    frames = to_uint8_frames(ramp_video(frames=4, channels=3, height=5, width=6))
    assert frames.shape == (4, 5, 6, 3)
    assert frames.dtype == np.uint8


def test_grey_clip_keeps_one_channel():
    assert to_uint8_frames(ramp_video(channels=1)).shape == (4, 5, 6, 1)


def test_unit_range_maps_exactly():
    video = torch.tensor([0.0, 0.2, 0.5, 1.0]).reshape(4, 1, 1, 1)
    assert to_uint8_frames(video, (0, 1)).ravel().tolist() == [0, 51, 128, 255]


def test_model_range_maps_exactly():
    video = torch.tensor([-1.0, -0.6, 0.0, 1.0]).reshape(4, 1, 1, 1)
    assert to_uint8_frames(video, (-1, 1)).ravel().tolist() == [0, 51, 128, 255]


def test_small_overshoot_is_clamped():
    video = torch.tensor([-1.03, 1.04]).reshape(2, 1, 1, 1)
    assert to_uint8_frames(video, (-1, 1)).ravel().tolist() == [0, 255]


def test_accepts_numpy_and_tensors_with_grad():
    video = ramp_video().requires_grad_()
    np.testing.assert_array_equal(to_uint8_frames(video), to_uint8_frames(video.detach().numpy()))


def test_accepts_half_precision():
    video = torch.tensor([0.0, 0.5, 1.0]).reshape(3, 1, 1, 1)
    assert to_uint8_frames(video.to(torch.bfloat16)).ravel().tolist() == [0, 128, 255]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_accepts_gpu_tensors():
    video = ramp_video()
    np.testing.assert_array_equal(to_uint8_frames(video.to("cuda")), to_uint8_frames(video))


def test_scale_repeats_pixels():
    video = ramp_video(height=2, width=3)
    frames = to_uint8_frames(video, scale=3)
    assert frames.shape == (4, 6, 9, 1)
    np.testing.assert_array_equal(frames[:, ::3, ::3], to_uint8_frames(video))


def test_auto_scale_makes_32_pixel_frames_128_wide():
    assert to_uint8_frames(torch.zeros(2, 1, 32, 32), scale=None).shape == (2, 128, 128, 1)


def test_batch_is_a_grid_with_one_pixel_separators():
    batch = torch.stack([torch.full((2, 1, 3, 4), value) for value in (0.0, 0.2, 0.6, 1.0, 0.4)])  # (5, 2, 1, 3, 4)
    frames = to_uint8_frames(batch, columns=3)
    # 2 rows x 3 columns of 3x4 tiles, 1-pixel separators between them.
    assert frames.shape == (2, 2 * 3 + 1, 3 * 4 + 2, 1)
    grid = frames[0, :, :, 0]
    assert (grid[:3, :4] == 0).all() and (grid[:3, 5:9] == 51).all() and (grid[:3, 10:] == 153).all()
    assert (grid[4:, :4] == 255).all() and (grid[4:, 5:9] == 102).all()
    assert (grid[3, :] == viz.SEPARATOR).all() and (grid[:, 4] == viz.SEPARATOR).all()
    assert (grid[4:, 10:] == viz.SEPARATOR).all(), "the empty grid cell is separator-coloured"


def test_batch_of_one_equals_the_clip():
    video = ramp_video()
    np.testing.assert_array_equal(to_uint8_frames(video[None]), to_uint8_frames(video))


def test_default_grid_is_one_row():
    assert to_uint8_frames(torch.zeros(3, 2, 1, 4, 4)).shape == (2, 4, 3 * 4 + 2, 1)


@pytest.mark.parametrize(
    ("values", "value_range", "advice"),
    [
        ([-1.0, 1.0], (0, 1), r"values span \[-1.00, 1.00\] but value_range=\(0, 1\); pass value_range=\(-1, 1\)"),
        ([0.0, 255.0], (0, 1), "divide by 255"),
        ([-3.0, 2.5], (-1, 1), "clamp"),
    ],
)
def test_values_outside_the_stated_range_raise(values, value_range, advice):
    video = torch.tensor(values).reshape(2, 1, 1, 1)
    with pytest.raises(ValueError, match=advice):
        to_uint8_frames(video, value_range)


@pytest.mark.parametrize("value_range", [(0, 255), (-1, 0), "unit", None])
def test_only_the_two_course_ranges_are_accepted(value_range):
    with pytest.raises(ValueError, match="value_range must be"):
        to_uint8_frames(ramp_video(), value_range)


def test_nan_is_refused():
    video = ramp_video()
    video[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        to_uint8_frames(video)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 1, 8, 5, 5), r"\(B, C, T, H, W\)"),  # channels before time
        ((1, 8, 5, 5), r"looks like \(C, T, H, W\)"),
        ((8, 5, 5, 3), "channels-last"),
        ((8, 5, 5), r"video\[:, None\]"),
        ((2, 8, 4, 5, 5), "C = 4 is not 1 or 3"),
        ((0, 1, 5, 5), "empty"),
    ],
)
def test_wrong_layout_names_the_expected_layout(shape, message):
    with pytest.raises(ValueError, match=r"\(T, C, H, W\) or \(B, T, C, H, W\)") as error:
        to_uint8_frames(torch.zeros(shape))
    assert re.search(message, str(error.value))


def test_lists_are_refused_with_a_type_error():
    with pytest.raises(TypeError, match="video must be"):
        to_uint8_frames([[[[0.0]]]])


# --- show_video --------------------------------------------------------------------------------


def test_show_video_embeds_an_animated_gif_in_html():
    shown = show_video(ramp_video(frames=5, height=8, width=8), fps=10)
    html = shown._repr_html_()
    match = re.fullmatch(r'<img src="data:image/gif;base64,([A-Za-z0-9+/=]+)" width="128" height="128" .*>', html)
    assert match, html[:120]
    frames = gif_frames(base64.b64decode(match.group(1)))
    assert frames.shape == (5, 128, 128, 3), "8x8 frames are upscaled 16x"
    assert iio.immeta(base64.b64decode(match.group(1)), extension=".gif")["duration"] == 100
    assert "<script" not in html


def test_show_video_plays_a_batch_as_one_grid():
    html = show_video(torch.rand(3, 4, 1, 32, 32) * 2 - 1, value_range=(-1, 1), scale=1)._repr_html_()
    data = base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1))
    assert gif_frames(data).shape == (4, 32, 3 * 32 + 2, 3)


def test_show_video_refuses_a_mismatched_range():
    with pytest.raises(ValueError, match=r"pass value_range=\(-1, 1\)"):
        show_video(torch.rand(4, 1, 8, 8) * 2 - 1)


def test_gif_fps_above_browser_limit_is_refused():
    with pytest.raises(ValueError, match="fps"):
        show_video(ramp_video(), fps=100)


# --- frame_strip -------------------------------------------------------------------------------


def test_frame_strip_labels_frames_and_clips():
    batch = torch.rand(2, 6, 1, 8, 8)
    figure = frame_strip(batch, every=2, titles=["data", "sample"])
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0", "2", "4"]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["data", "sample"]
    strip = ax.images[0].get_array()
    assert strip.shape == (2 * 8 + 1, 3 * 8 + 2)
    expected = to_uint8_frames(batch[1:, 4:5])[0, :, :, 0]
    np.testing.assert_array_equal(strip[9:, 18:], expected)


def test_frame_strip_draws_into_a_given_axes():
    figure = Figure()
    ax = figure.add_subplot()
    assert frame_strip(ramp_video(channels=3), ax=ax) is figure
    assert ax.images[0].get_array().shape == (5, 4 * 6 + 3, 3)


def test_frame_strip_needs_one_title_per_clip():
    with pytest.raises(ValueError, match="titles"):
        frame_strip(torch.rand(2, 3, 1, 4, 4), titles=["only one"])


# --- files -------------------------------------------------------------------------------------


def test_gif_round_trip(tmp_path):
    video = ramp_video(frames=5, channels=1, height=5, width=6)
    path = save_gif(video, tmp_path / "clip.gif", fps=4, scale=2)
    assert path == tmp_path / "clip.gif"
    frames = gif_frames(path.read_bytes())
    assert frames.shape == (5, 10, 12, 3)
    expected = to_uint8_frames(video, scale=2)  # (5, 10, 12, 1): grey GIFs are exact
    np.testing.assert_array_equal(frames, np.repeat(expected, 3, axis=-1))
    assert iio.immeta(path, extension=".gif")["duration"] == 250
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "clip.gif"
    path.write_bytes(b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(viz.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_gif(ramp_video(), path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_gif(ramp_video(), tmp_path / "no" / "clip.gif")


def test_gif_path_must_end_in_gif(tmp_path):
    with pytest.raises(ValueError, match=r"\.gif"):
        save_gif(ramp_video(), tmp_path / "clip.mp4")


def test_mp4_without_encoder_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import now raises ImportError
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        save_mp4(ramp_video(), tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_mp4_round_trip_when_an_encoder_is_installed(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    video = ramp_video(frames=6, channels=1, height=16, width=16)
    path = save_mp4(video, tmp_path / "clip.mp4", fps=6, scale=2)
    frames = iio.imread(path, plugin="FFMPEG", index=None)  # (T, H, W, 3)
    assert frames.shape == (6, 32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


# --- scrubber ----------------------------------------------------------------------------------


def test_scrubber_slider_runs_over_frames_and_changes_the_image():
    widget = scrubber(ramp_video(frames=5), fps=5)
    (controls, image) = widget.children
    play, slider = controls.children
    assert (slider.min, slider.max) == (0, 4)
    assert (play.max, play.interval) == (4, 200)
    first = image.value
    slider.value = 3
    assert image.value != first
    shown = iio.imread(image.value, extension=".png")
    np.testing.assert_array_equal(shown, to_uint8_frames(ramp_video(frames=5), scale=None)[3, :, :, 0])


def test_scrubber_shows_a_batch_grid():
    widget = scrubber(torch.rand(2, 3, 1, 4, 4), scale=1)
    (controls, image) = widget.children
    assert controls.children[1].max == 2
    assert iio.imread(image.value, extension=".png").shape == (4, 9)
