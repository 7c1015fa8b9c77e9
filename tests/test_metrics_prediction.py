import math

import pytest
import torch

from vdmcourse.metrics.prediction import copy_last_frame, frame_mse, prediction_scores, psnr, ssim


def _videos(seed=0, shape=(2, 3, 1, 16, 16)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def test_mse_conventions_differ_by_the_pixel_count():
    a, b = _videos()
    per_pixel, per_frame = frame_mse(a, b, per="pixel"), frame_mse(a, b, per="frame")
    assert per_pixel.shape == (2, 3)
    torch.testing.assert_close(per_frame, per_pixel * 16 * 16)
    torch.testing.assert_close(per_pixel[0, 0], (a[0, 0] - b[0, 0]).square().mean())


def test_psnr_of_a_known_error_and_of_identical_frames():
    a = torch.zeros(1, 2, 1, 16, 16)
    b = a + 0.1  # per-pixel MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(b, a), torch.full((1, 2), 20.0))
    assert psnr(a, a).max().item() == 100.0 and math.isfinite(psnr(a, a).sum().item())


def test_ssim_is_one_for_identical_frames_and_falls_with_noise():
    a, _ = _videos(shape=(1, 2, 1, 24, 24))
    torch.testing.assert_close(ssim(a, a), torch.ones(1, 2))
    g = torch.Generator().manual_seed(1)
    small = ssim((a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1), a).mean()
    large = ssim((a + 0.3 * torch.randn(a.shape, generator=g)).clamp(0, 1), a).mean()
    assert 1 > small > large


def test_ssim_matches_the_formula_on_constant_frames():
    # Constant frames: no variance, so SSIM = (2 mu_x mu_y + c1) / (mu_x² + mu_y² + c1).
    x, y = torch.full((1, 1, 1, 12, 12), 0.2), torch.full((1, 1, 1, 12, 12), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-4)


def test_prediction_scores_names_both_mse_conventions():
    a, b = _videos()
    scores = prediction_scores(a, b)
    assert set(scores) == {"mse_per_pixel", "mse_per_frame", "psnr_db", "ssim"}
    assert scores["mse_per_frame"] == pytest.approx(scores["mse_per_pixel"] * 256, rel=1e-5)
    assert scores["psnr_db"] == pytest.approx(10 * math.log10(1 / scores["mse_per_pixel"]), rel=1e-6)


def test_copy_last_frame_repeats_the_last_context_frame():
    context, _ = _videos()
    predicted = copy_last_frame(context, 4)
    assert predicted.shape == (2, 4, 1, 16, 16)
    torch.testing.assert_close(predicted[:, 3], context[:, -1])


def test_bad_input_is_refused_clearly():
    a, b = _videos()
    with pytest.raises(ValueError, match="same shape"):
        frame_mse(a, b[:, :2])
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        psnr(a[0], b[0])
    with pytest.raises(ValueError, match="per must be"):
        frame_mse(a, b, per="clip")
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[..., :8, :8], b[..., :8, :8])
    with pytest.raises(ValueError, match="horizon"):
        copy_last_frame(a, 0)
