"""Video-to-video (SDEdit) under a caption (a text model) or a new signal (a sync model)."""

import pytest
import torch

from vdmcourse.nn.conditioning import ConditionedUNet3D, ConditionedUNet3DConfig
from vdmcourse.nn.text import TextEncoderConfig, TextVideoConfig, TextVideoUNet
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pipelines import SignalToVideoPipeline, TextToVideoPipeline, VideoToVideoPipeline

from helpers import randomise as _randomise

TINY = dict(image_size=8, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4, frames=4)
TINY_TEXT = TextVideoConfig(
    unet=UNet3DConfig(**TINY, temporal_attention_levels=(1,), context_dim=16, cross_attention_levels=(1,), pooled_context=True),
    text=TextEncoderConfig(dim=16, depth=1, heads=2, max_length=48),
)
CAPTIONS = ["a 3 moves quickly up", "the digit 7 drifts slowly to the left"]


def _text_model():
    return _randomise(TextVideoUNet(TINY_TEXT), seed=1)


def _sync_model():
    return _randomise(ConditionedUNet3D(ConditionedUNet3DConfig(**TINY, signal=True)), seed=2)


def _clip(seed=0):
    return torch.rand(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _seed(n=5):
    return torch.Generator().manual_seed(n)


def test_a_text_model_takes_captions_with_the_text_scale():
    pipe = VideoToVideoPipeline(_text_model())
    assert pipe.condition == "captions" and pipe.guidance_scale == TextToVideoPipeline(_text_model()).text_scale
    assert VideoToVideoPipeline(_sync_model()).condition == "signal"
    assert VideoToVideoPipeline(_randomise(UNet3D(UNet3DConfig(**TINY)))).condition == "labels"


def test_caption_sdedit_at_strength_one_is_text_to_video_sampling():
    model = _text_model()
    out = VideoToVideoPipeline(model, sampler="heun")(_clip(), strength=1.0, captions=CAPTIONS, num_inference_steps=3, generator=_seed()).frames
    plain = TextToVideoPipeline(model, sampler="heun", steps=3)(CAPTIONS, generator=_seed()).frames
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)


def test_caption_sdedit_near_zero_returns_the_input_and_the_caption_matters():
    pipe, clip = VideoToVideoPipeline(_text_model()), _clip()
    near = pipe(clip, strength=1e-4, captions=CAPTIONS, generator=_seed()).frames
    torch.testing.assert_close(near, clip, atol=5e-3, rtol=0)
    a = pipe(clip, strength=0.6, num_inference_steps=4, captions=CAPTIONS, generator=_seed()).frames
    b = pipe(clip, strength=0.6, num_inference_steps=4, captions=CAPTIONS, generator=_seed()).frames
    other = pipe(clip, strength=0.6, num_inference_steps=4, captions=CAPTIONS[::-1], generator=_seed()).frames
    unguided = pipe(clip, strength=0.6, num_inference_steps=4, captions=CAPTIONS, guidance_scale=1.0, generator=_seed()).frames
    assert torch.equal(a, b)
    assert (a - other).abs().max() > 1e-3 and (a - unguided).abs().max() > 1e-3


def test_signal_sdedit_at_strength_one_is_sync_sampling():
    model, signal, labels = _sync_model(), torch.tensor([[0.0, 1.0, 0.5, 0.2], [1.0, 0.2, 0.0, 0.7]]), torch.tensor([1, 2])
    out = VideoToVideoPipeline(model, sampler="euler")(_clip(), strength=1.0, signal=signal, labels=labels, num_inference_steps=3,
                                                      generator=_seed()).frames
    plain = SignalToVideoPipeline(model, sampler="euler")(signal, labels=labels, num_inference_steps=3, generator=_seed()).frames
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)


def test_signal_sdedit_near_zero_returns_the_input_and_the_signal_matters():
    pipe, clip, signal = VideoToVideoPipeline(_sync_model()), _clip(), torch.tensor([0.0, 1.0, 0.5, 0.2])
    near = pipe(clip, strength=1e-4, signal=signal, generator=_seed()).frames
    torch.testing.assert_close(near, clip, atol=5e-3, rtol=0)
    a = pipe(clip, strength=0.6, num_inference_steps=4, signal=signal, generator=_seed()).frames
    shared = pipe(clip, strength=0.6, num_inference_steps=4, signal=signal[None].repeat(2, 1), generator=_seed()).frames
    flipped = pipe(clip, strength=0.6, num_inference_steps=4, signal=signal.flip(0), generator=_seed()).frames
    assert torch.equal(a, shared)  # (T,) is one signal for every clip
    assert (a - flipped).abs().max() > 1e-3


@pytest.mark.parametrize(
    "which, kwargs, argument",
    [
        ("labels", {"captions": CAPTIONS}, "captions"),
        ("labels", {"signal": torch.rand(4)}, "signal"),
        ("text", {"labels": torch.tensor([3, 7])}, "labels"),
        ("text", {"captions": CAPTIONS[:1]}, "captions"),
        ("text", {"captions": [3, 7]}, "captions"),
        ("text", {"signal": torch.rand(4)}, "signal"),
        ("sync", {}, "signal"),
        ("sync", {"captions": CAPTIONS}, "captions"),
        ("sync", {"signal": torch.rand(5)}, "signal"),
        ("sync", {"signal": torch.rand(3, 4)}, "signal"),
        ("sync", {"signal": torch.rand(4) + 1}, "signal"),
        ("sync", {"signal": torch.ones(4, dtype=torch.long)}, "signal"),
        ("sync", {"signal": torch.rand(4), "labels": torch.tensor([3])}, "labels"),
        ("text", {"captions": CAPTIONS, "strength": 0.0}, "strength"),
    ],
)
def test_video_to_video_refuses_a_condition_its_model_does_not_take(which, kwargs, argument):
    model = {"labels": lambda: _randomise(UNet3D(UNet3DConfig(**TINY))), "text": _text_model, "sync": _sync_model}[which]()
    with pytest.raises(ValueError, match=argument):
        VideoToVideoPipeline(model)(_clip(), **kwargs)

