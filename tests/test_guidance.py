import pytest
import torch

from vdmcourse.diffusion import NULL_LABEL, convert, sample
from vdmcourse.diffusion.guidance import classifier_free_guidance, guided_output


class LabelModel(torch.nn.Module):
    """Output depends on the label in every channel; counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(11, 3, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        if cond is None:
            cond = torch.full((x.shape[0],), NULL_LABEL)
        rows = self.table[cond]  # (B, C) or (B, K, C)
        if rows.ndim == 3:
            rows = rows.sum(1)
        return 0.5 * x + t[:, None, None, None, None] * rows[:, None, :, None, None]  # (B, T, C, H, W)


def inputs(batch=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 2, 3, 4, 4, generator=g), torch.rand(batch, generator=g)


def test_null_label_is_ten():
    assert NULL_LABEL == 10


def test_scale_one_is_exactly_the_conditional_model():
    model, (x, t) = LabelModel(), inputs()
    cond = torch.tensor([3, 1, 4, 1])
    assert torch.equal(guided_output(model, x, t, cond, 1.0), model(x, t, cond=cond))


def test_scale_zero_is_the_unconditional_model_and_scale_s_is_the_formula_on_all_channels():
    model, (x, t) = LabelModel(), inputs()
    cond = torch.tensor([[3, 5], [1, 2], [4, 4], [1, 0]])
    conditional = model(x, t, cond=cond)
    unconditional = model(x, t, cond=torch.full_like(cond, NULL_LABEL))
    torch.testing.assert_close(guided_output(model, x, t, cond, 0.0), unconditional)
    guided = guided_output(model, x, t, cond, 4.0)
    torch.testing.assert_close(guided, unconditional + 4.0 * (conditional - unconditional))
    for channel in range(3):  # public DiT guides 3 of 4 channels; every channel moves here
        moved = (guided - conditional)[:, :, channel].abs().max()
        assert moved > 1e-3, f"channel {channel} was not guided"


def test_guidance_is_one_batched_forward():
    model, (x, t) = LabelModel(), inputs()
    guided_output(model, x, t, torch.tensor([3, 1, 4, 1]), 2.5)
    assert model.calls == 1


def test_classifier_free_guidance_combination_and_shape_check():
    c, u = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(classifier_free_guidance(c, u, 3.0), torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="same shape"):
        classifier_free_guidance(c, u[:1], 2.0)


def test_guided_sampling_at_scale_one_equals_plain_conditional_sampling():
    model = LabelModel()
    cond = torch.tensor([7, 2])
    kwargs = dict(steps=3, progress=False)
    a = sample(model, (2, 2, 3, 4, 4), cond=cond, guidance_scale=1.0, generator=torch.Generator().manual_seed(0), **kwargs)
    b = sample(model, (2, 2, 3, 4, 4), cond=cond, generator=torch.Generator().manual_seed(0), **kwargs)
    c = sample(model, (2, 2, 3, 4, 4), cond=cond, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_bad_labels_are_refused():
    model, (x, t) = LabelModel(), inputs()
    with pytest.raises(ValueError, match="needs labels"):
        guided_output(model, x, t, None, 2.0)
    with pytest.raises(TypeError, match="LongTensor"):
        guided_output(model, x, t, torch.zeros(4), 2.0)
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, K\) with B = 4"):
        guided_output(model, x, t, torch.zeros(4, 2, 2, dtype=torch.long), 2.0)


def test_guiding_any_parameterisation_gives_the_same_prediction():
    # the combination is affine with weights summing to one, and conversions are affine in the output
    g = torch.Generator().manual_seed(4)
    x_t, cond, uncond = (torch.randn(3, 2, 1, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([0.2, 0.5, 0.9])
    as_eps = [convert(out, x_t, t, source="flow", target="eps") for out in (cond, uncond)]
    torch.testing.assert_close(classifier_free_guidance(*as_eps, 3.0),
                               convert(classifier_free_guidance(cond, uncond, 3.0), x_t, t, source="flow", target="eps"))


class BatchRecorder(LabelModel):
    """LabelModel that records (t, batch size) of each call: a guided call is one forward of 2B."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, t, cond=None):
        self.seen.append((round(float(t[0]), 6), x.shape[0]))
        return super().forward(x, t, cond)


def _draw_with(model, **kwargs):
    return sample(model, (2, 2, 3, 4, 4), cond=torch.tensor([7, 2]), sampler="euler", steps=4, progress=False,
                  generator=torch.Generator().manual_seed(0), **kwargs)


def test_a_guidance_interval_guides_only_the_calls_inside_it():
    model = BatchRecorder()
    _draw_with(model, guidance_scale=3.0, guidance_interval=(0.5, 1.0))
    assert model.seen == [(1.0, 4), (0.75, 4), (0.5, 4), (0.25, 2)]  # t = 0.25 is outside: one plain call of B


def test_the_full_interval_is_plain_guidance_and_an_empty_one_is_no_guidance():
    guided = _draw_with(LabelModel(), guidance_scale=3.0)
    assert torch.equal(_draw_with(LabelModel(), guidance_scale=3.0, guidance_interval=(0.0, 1.0)), guided)
    unguided = _draw_with(LabelModel(), guidance_scale=1.0)
    assert torch.equal(_draw_with(LabelModel(), guidance_scale=3.0, guidance_interval=(0.0, 0.1)), unguided)
    # guided at t = 1 and 0.75 only: neither the guided nor the unguided sample
    partial = _draw_with(LabelModel(), guidance_scale=3.0, guidance_interval=(0.6, 1.0))
    assert not torch.allclose(partial, guided) and not torch.allclose(partial, unguided)


@pytest.mark.parametrize("interval", [(0.7, 0.3), (-0.1, 1.0), (0.0, 1.5), (0.5,), "0 1", (True, 1.0), ("0", "1")])
def test_a_bad_guidance_interval_is_refused_by_name(interval):
    with pytest.raises(ValueError, match=r"guidance_interval must be \(low, high\) with 0 <= low <= high <= 1"):
        _draw_with(LabelModel(), guidance_scale=3.0, guidance_interval=interval)
