"""Stroke and ink styles: the data option, the style labels, the model's label rows and the pipelines' style path."""

import pytest
import torch

from vdmcourse.conditioned_training import STYLE_CLASSES, signal_loss, style_batch, style_labels
from vdmcourse.data import MovingMNISTConfig
from vdmcourse.data.conditions import STROKES, restroke, styled_clips
from vdmcourse.nn.conditioning import ConditionedUNet3D, ConditionedUNet3DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pipelines import SignalToVideoPipeline, VideoToVideoPipeline

from helpers import randomise

TINY = dict(image_size=8, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4, frames=4)
CONFIG = MovingMNISTConfig.cpu()


def _seed(n=0):
    return torch.Generator().manual_seed(n)


def _style_model(seed=3):
    return randomise(ConditionedUNet3D(ConditionedUNet3DConfig(**TINY, signal=True, style_classes=STYLE_CLASSES)), seed=seed)


def _clip(seed=0):
    return torch.rand(2, 4, 1, 8, 8, generator=_seed(seed))


def test_strokes_order_ink_mass_for_every_digit():
    clips = styled_clips(12, CONFIG, generator=_seed(), stroke=torch.ones(12, dtype=torch.long), ink=torch.zeros(12, dtype=torch.long))
    digits = clips.digits[:, 0]  # (N, S, S): regular strokes
    mass = {s: restroke(digits, torch.full((12,), i)).sum((1, 2)) for i, s in enumerate(STROKES)}
    assert (mass["thin"] < mass["regular"]).all() and (mass["regular"] < mass["thick"]).all()
    assert torch.equal(mass["regular"], digits.sum((1, 2)))  # regular is the digit unchanged
    assert (mass["thin"] > 0.25 * mass["regular"]).all()  # thinner, not erased


def test_inverted_ink_is_exactly_one_minus_the_normal_clip():
    kept = dict(stroke=torch.tensor([0, 1, 2]))
    normal = styled_clips(3, CONFIG, generator=_seed(4), ink=torch.zeros(3, dtype=torch.long), **kept)
    inverted = styled_clips(3, CONFIG, generator=_seed(4), ink=torch.ones(3, dtype=torch.long), **kept)
    assert torch.equal(inverted.video, 1 - normal.video)
    assert torch.equal(inverted.labels, normal.labels) and torch.equal(inverted.positions, normal.positions)


def test_styled_clips_return_their_style_and_render_it():
    clips = styled_clips(64, CONFIG, generator=_seed(1))
    assert set(clips.stroke.tolist()) == {0, 1, 2} and set(clips.ink.tolist()) == {0, 1}
    background = clips.video.flatten(2).median(-1).values[:, 0]  # (N,): 0 on black, 1 on white
    assert torch.equal(background.round().long(), clips.ink)
    again = styled_clips(64, CONFIG, generator=_seed(1))
    assert torch.equal(again.video, clips.video) and torch.equal(again.stroke, clips.stroke)


def test_a_signal_dims_the_ink_before_it_is_inverted():
    signal = torch.zeros(2, CONFIG.frames)
    clips = styled_clips(2, CONFIG, generator=_seed(2), ink=torch.tensor([0, 1]), signal=signal, stroke=torch.ones(2, dtype=torch.long))
    full = styled_clips(2, CONFIG, generator=_seed(2), ink=torch.tensor([0, 1]), stroke=torch.ones(2, dtype=torch.long))
    torch.testing.assert_close(clips.video[0], 0.3 * full.video[0])
    torch.testing.assert_close(clips.video[1], 1 - 0.3 * (1 - full.video[1]))


@pytest.mark.parametrize("stroke", [torch.tensor([0, 3]), torch.tensor([-1, 0]), torch.tensor([0.0, 1.0]), torch.tensor([1])])
def test_restroke_refuses_bad_strokes(stroke):
    with pytest.raises(ValueError, match="stroke"):
        restroke(torch.rand(2, 16, 16), stroke)


def test_styled_clips_refuse_bad_ink():
    with pytest.raises(ValueError, match="ink"):
        styled_clips(2, CONFIG, generator=_seed(), ink=torch.tensor([0, 2]))


@pytest.mark.parametrize("stroke", [[1, 1], torch.ones(3, dtype=torch.long)])
def test_styled_clips_refuse_a_stroke_of_the_wrong_kind_or_length(stroke):
    with pytest.raises(ValueError, match=r"styled_clips: stroke must be an int tensor \(N,\) = \(2,\)"):
        styled_clips(2, CONFIG, generator=_seed(), stroke=stroke)


def test_style_labels_follow_the_digits_rows():
    labels = style_labels(torch.tensor([7, 0]), torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert labels.tolist() == [[7, 10, 14], [0, 12, 13]]
    batch = style_batch(_seed(), batch_size=16, data=CONFIG)
    assert batch["labels"].shape == (16, 3) and batch["signal"].shape == (16, CONFIG.frames)
    assert (batch["labels"][:, 1] >= 10).all() and (batch["labels"][:, 1] <= 12).all()
    assert (batch["labels"][:, 2] >= 13).all() and (batch["labels"][:, 2] <= 14).all()


def test_a_style_model_starts_as_its_source_and_its_style_rows_matter_once_trained():
    source = randomise(UNet3D(UNet3DConfig(**TINY)), seed=5).eval()
    model = ConditionedUNet3D.from_image_model(source, signal=True, style_classes=STYLE_CLASSES).eval()
    assert model.label_embed.null_label == 10 + STYLE_CLASSES
    x, t, signal = torch.randn(2, 4, 1, 8, 8, generator=_seed()), torch.tensor([0.3, 0.7]), torch.rand(2, 4)
    digits = torch.tensor([3, 8])
    styled = style_labels(digits, torch.tensor([0, 2]), torch.tensor([1, 0]))
    torch.testing.assert_close(model(x, t, styled, signal=signal), source(x, t, digits))  # style rows start at zero
    torch.testing.assert_close(model(x, t, torch.full((2,), model.label_embed.null_label), signal=signal), source(x, t, torch.full((2,), 10)))
    trained = _style_model().eval()
    a = trained(x, t, styled, signal=signal)
    b = trained(x, t, style_labels(digits, torch.tensor([2, 0]), torch.tensor([0, 1])), signal=signal)
    assert (a - b).abs().max() > 1e-3


def test_style_classes_need_labels():
    with pytest.raises(ValueError, match="style_classes"):
        ConditionedUNet3DConfig(**TINY, num_classes=None, style_classes=5)
    with pytest.raises(ValueError, match="style_classes"):
        ConditionedUNet3DConfig(**TINY, style_classes=-1)


def test_signal_loss_drops_style_labels_to_the_models_null_label(monkeypatch):
    import vdmcourse.conditioned_training as ct

    seen = {}
    monkeypatch.setattr(ct, "training_loss", lambda *a, **k: seen.update(k) or torch.tensor(0.0))
    signal_loss(_style_model(), {"video": torch.rand(2, 4, 1, 8, 8), "labels": torch.zeros(2, 3, dtype=torch.long), "signal": torch.rand(2, 4)}, _seed())
    assert seen["null_label"] == 10 + STYLE_CLASSES


def test_v2v_style_is_the_style_labels_with_full_ink_by_default():
    model, clip = _style_model(), _clip()
    pipe = VideoToVideoPipeline(model)
    out = pipe(clip, strength=0.6, labels=torch.tensor([3, 5]), stroke=["thin", "thick"], ink="inverted", num_inference_steps=3, generator=_seed()).frames
    seen = []
    original = model.forward
    model.forward = lambda x, t, cond=None, **k: seen.append((cond, k["signal"])) or original(x, t, cond, **k)
    again = pipe(clip, strength=0.6, labels=torch.tensor([3, 5]), stroke=["thin", "thick"], ink="inverted", num_inference_steps=3, generator=_seed()).frames
    assert torch.equal(out, again)
    cond, signal = seen[0]
    assert cond.tolist() == [[3, 10, 14], [5, 12, 14], [15, 15, 15], [15, 15, 15]]  # guided: styles, then the null label
    assert torch.equal(signal, torch.ones(4, 4))
    regular = pipe(clip, strength=0.6, labels=torch.tensor([3, 5]), num_inference_steps=3, generator=_seed()).frames
    assert (regular - out).abs().max() > 1e-3
    near = pipe(clip, strength=1e-4, labels=torch.tensor([3, 5]), stroke="thick", generator=_seed()).frames
    torch.testing.assert_close(near, clip, atol=5e-3, rtol=0)


def test_signal_pipeline_draws_a_style_model_in_the_regular_style_by_default():
    model = _style_model()
    seen = []
    original = model.forward
    model.forward = lambda x, t, cond=None, **k: seen.append(cond) or original(x, t, cond, **k)
    SignalToVideoPipeline(model)(torch.rand(4), labels=torch.tensor([6]), num_inference_steps=1, generator=_seed())
    assert seen[0].tolist() == [[6, 11, 13], [15, 15, 15]]
    SignalToVideoPipeline(model)(torch.rand(4), labels=torch.tensor([6]), ink="inverted", num_inference_steps=1, generator=_seed())
    assert seen[-1].tolist() == [[6, 11, 14], [15, 15, 15]]


@pytest.mark.parametrize(
    "call, match",
    [
        ({"labels": torch.tensor([1, 2]), "stroke": "bold"}, "stroke"),
        ({"labels": torch.tensor([1, 2]), "stroke": ["thin"]}, "stroke"),
        ({"labels": torch.tensor([1, 2]), "ink": "white"}, "ink"),
        ({"labels": torch.tensor([1, 2]), "ink": 1}, "ink"),
        ({"stroke": "thin"}, "labels"),
        ({"labels": torch.tensor([[1, 2], [3, 4]]), "stroke": "thin"}, "labels"),
    ],
)
def test_v2v_refuses_bad_style_values(call, match):
    with pytest.raises(ValueError, match=match):
        VideoToVideoPipeline(_style_model())(_clip(), strength=0.5, **call)


def test_a_model_without_styles_refuses_stroke_and_ink():
    plain = randomise(UNet3D(UNet3DConfig(**TINY)), seed=1)
    with pytest.raises(ValueError, match="stroke and ink need a model trained on styles"):
        VideoToVideoPipeline(plain)(_clip(), strength=0.5, labels=torch.tensor([1, 2]), ink="inverted")
    sync = randomise(ConditionedUNet3D(ConditionedUNet3DConfig(**TINY, signal=True)), seed=2)
    with pytest.raises(ValueError, match="stroke and ink need a model trained on styles"):
        SignalToVideoPipeline(sync)(torch.rand(4), labels=torch.tensor([1]), stroke="thin")


def test_the_style_preset_starts_from_a_video_model_trained_from_scratch():
    from vdmcourse.presets import get_preset

    preset = get_preset("style-sync-cpu")
    assert preset.init_from == "video-scratch-cpu" and get_preset(preset.init_from).init_from is None  # no image pretraining
    batch = preset.batches()(_seed())
    assert batch["labels"].shape == (preset.batch_size, 3) and batch["signal"].shape == (preset.batch_size, preset.data.frames)
    assert preset.model_config.style_classes == STYLE_CLASSES and preset.model_config.signal


def test_the_style_preset_trains_at_every_time_up_to_pure_noise(monkeypatch):
    """The ink is decided from noise: logit-normal times almost never reach t > 0.97, uniform ones do."""
    import vdmcourse.conditioned_training as ct
    from vdmcourse.presets import get_preset

    seen = {}
    monkeypatch.setattr(ct, "training_loss", lambda *a, **k: seen.update(k) or torch.tensor(0.0))
    batch = {"video": torch.rand(2, 4, 1, 8, 8), "labels": torch.zeros(2, 3, dtype=torch.long), "signal": torch.rand(2, 4)}
    get_preset("style-sync-cpu").loss(_style_model(), batch, _seed())
    assert seen["t_distribution"] == "uniform"
