from collections import Counter

import pytest
import torch

from vdmcourse.nn.unet2d import UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pipelines import LongVideoPipeline, autoregressive_plan, hierarchical_plan, sliding_windows

IMAGE = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)
VIDEO = UNet3DConfig.from_image_config(IMAGE, frames=7, temporal_attention_levels=(1,))


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny_pipeline(**settings):
    torch.manual_seed(2)
    model = UNet3D(VIDEO)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(std=0.1)
    return LongVideoPipeline(model, **{"sampler": "euler", "steps": 2, **settings})


class Constant(torch.nn.Module):
    """A stand-in video model predicting the velocity 0.5 everywhere."""

    def __init__(self):
        super().__init__()
        self.config = VIDEO
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        return torch.full_like(x, 0.5)


# --- window bookkeeping -----------------------------------------------------------------------

COMBINATIONS = [(n, w, k) for n in (7, 8, 10, 13, 20, 31, 64, 128) for w in (2, 4, 7, 10) for k in (1, 2, 3, 6, 9) if k < w <= n]


@pytest.mark.parametrize("num_frames, window, context", COMBINATIONS)
def test_autoregressive_plan_generates_every_frame_exactly_once_after_its_context(num_frames, window, context):
    plan = autoregressive_plan(num_frames, window, context)
    counts = Counter(f for w in plan for f in w.generated)
    assert all(counts[f] == 1 for f in range(num_frames)), "every frame below num_frames exactly once"
    assert all(c == 1 for c in counts.values())
    done = set()
    for w in plan:
        assert len(w.frames) == window and w.frames == tuple(range(w.frames[0], w.frames[0] + window))
        given = [f for f, c in zip(w.frames, w.context) if c]
        assert set(given) <= done, "a window's context was generated before it"
        assert len(given) == (context if w is not plan[0] else 0)
        assert given == list(w.frames[: len(given)]), "the context comes first, with no gap"
        done |= set(w.generated)
    assert max(done) < num_frames + window - context, "the last window runs past the end by less than one window"


@pytest.mark.parametrize("num_frames, window, context", [(n, w, k) for n, w, k in COMBINATIONS if w in (4, 7, 10)])
@pytest.mark.parametrize("keyframe_stride", [1, 3])
def test_hierarchical_plan_generates_every_frame_exactly_once(num_frames, window, context, keyframe_stride):
    if (window - 1) % keyframe_stride:
        pytest.skip("the stride must divide window - 1")
    plan = hierarchical_plan(num_frames, window, keyframe_stride, context)
    counts = Counter(f for w in plan for f in w.generated)
    length = 1 + -(-(num_frames - 1) // (window - 1)) * (window - 1)  # whole interpolation windows
    assert all(counts[f] == 1 for f in range(length))
    assert all(c == 1 for c in counts.values()), "a keyframe window running past the end adds frames once, never twice"
    done = set()
    for w in plan:
        assert len(w.frames) == window
        assert {f for f, c in zip(w.frames, w.context) if c} <= done
        done |= set(w.generated)
    interpolation = plan[-((length - 1) // (window - 1) - 1) :] if length > window else []
    for w in interpolation:
        assert w.context[0] and w.context[-1], "an interpolation window is given both ends"


@pytest.mark.parametrize("num_frames, window", [(7, 7), (8, 7), (13, 4), (20, 10), (128, 10), (31, 2)])
@pytest.mark.parametrize("stride", [1, 2, 3, 5, 9])
def test_sliding_windows_cover_every_frame_and_overlap(num_frames, window, stride):
    if stride >= window:
        pytest.skip("stride below window")
    windows = sliding_windows(num_frames, window, stride)
    covered = Counter(f for w in windows for f in w)
    assert set(covered) == set(range(num_frames))
    assert all(len(w) == window for w in windows)
    assert windows[0].start == 0 and windows[-1].stop == num_frames
    assert all(b.start - a.start <= stride for a, b in zip(windows, windows[1:])), "no frame skipped between windows"


# --- the pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["autoregressive", "sliding", "hierarchical"])
def test_pipeline_makes_the_requested_length_reproducibly(strategy):
    pipe = tiny_pipeline()
    a = pipe(17, strategy=strategy, context_frames=2, batch_size=2, generator=seeded(1), progress=False)
    b = pipe(17, strategy=strategy, context_frames=2, batch_size=2, generator=seeded(1), progress=False)
    c = pipe(17, strategy=strategy, context_frames=2, batch_size=2, generator=seeded(2), progress=False)
    assert a.frames.shape == (2, 17, 1, 16, 16)
    assert a.frames.min() >= 0 and a.frames.max() <= 1
    assert torch.equal(a.frames, b.frames)
    assert not torch.equal(a.frames, c.frames)
    assert a.model_calls == 2 * len(a.windows)


def test_autoregressive_rollout_carries_each_windows_context_over():
    pipe = tiny_pipeline()
    out = pipe(12, strategy="autoregressive", context_frames=3, generator=seeded(1), progress=False)
    plan = out.windows
    assert plan[1].frames[:3] == (4, 5, 6)  # the second window is given the first one's last 3 frames
    assert out.frames.shape[1] == 12


def test_prediction_returns_the_horizon_after_the_context():
    pipe = tiny_pipeline()
    context = torch.rand(2, 10, 1, 16, 16, generator=seeded())
    future = pipe.predict(context, 10, context_frames=3, generator=seeded(1))
    assert future.shape == (2, 10, 1, 16, 16)
    again = pipe.predict(context, 10, context_frames=3, generator=seeded(1))
    assert torch.equal(future, again)
    other = pipe.predict(torch.rand(2, 10, 1, 16, 16, generator=seeded(9)), 10, context_frames=3, generator=seeded(1))
    assert not torch.equal(future, other), "the prediction depends on the context"


def test_sliding_blend_normalises_overlapping_predictions():
    pipe = LongVideoPipeline(Constant(), sampler="euler", steps=2)
    windows = sliding_windows(12, 7, 2)  # frames in the middle lie in up to 4 windows
    video = pipe._sliding(12, windows, None, 1, seeded(3), False)
    noise = torch.randn(1, 12, 1, 16, 16, generator=seeded(3))
    torch.testing.assert_close(video, noise - 0.5)  # Euler from t=1 to 0 with velocity 0.5 everywhere


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_frames": 20, "context_frames": 7}, "context_frames"),
        ({"num_frames": 20, "context_frames": 0}, "context_frames"),
        ({"num_frames": 20, "window": 8}, "window"),
        ({"num_frames": 6}, "num_frames"),
        ({"num_frames": 20, "strategy": "sliding", "stride": 7}, "stride"),
        ({"num_frames": 20, "strategy": "hierarchical", "keyframe_stride": 4}, "keyframe_stride"),
        ({"num_frames": 20, "strategy": "zigzag"}, "strategy"),
        ({"num_frames": 20, "labels": torch.tensor([1, 2])}, "labels"),
    ],
)
def test_pipeline_refuses_bad_input_naming_the_argument(kwargs, name):
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match=name):
        pipe(progress=False, **kwargs)


def test_prediction_refuses_a_context_shorter_than_context_frames():
    with pytest.raises(ValueError, match="context_frames=5"):
        tiny_pipeline().predict(torch.rand(1, 3, 1, 16, 16), 4, context_frames=5)
