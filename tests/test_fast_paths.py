"""The fast paths: bf16 autocast, channels-last convolutions; same outputs within stated tolerances."""

import dataclasses
import math

import pytest
import torch

import vdmcourse.fast_paths as fast_paths
from vdmcourse.diffusion import sample
from vdmcourse.fast_paths import channels_last, resolve_precision
from vdmcourse.presets import get_preset
from vdmcourse.pretrained import load_checkpoint, load_pretrained, read_manifest
from vdmcourse.train import TrainConfig, Trainer

# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2 %); over a few sampler steps
# of the shipped image model the clips in [-1, 1] stay within these of fp32's.
# (Measured on an AMD EPYC: mean 0.003, max 0.044.)
BF16_MEAN_TOLERANCE = 0.01
BF16_MAX_TOLERANCE = 0.15
# The shipped video models, 2 clips, 2 Euler steps (bf16 is emulated, slow, on CPUs without
# bf16 instructions, so the test keeps it short; the benchmark's --quality runs the full
# sampler on 8 clips and compares the clips' metrics: benchmarks/results/fast_paths.md).
# Measured on an AMD EPYC without bf16 instructions (bf16 + channels-last against fp32):
# mean 0.0035 / 0.0059 / 0.0056, max 0.035 / 0.073 / 0.124 for video-cpu / dit-cpu /
# latent-video-cpu. The mean is the tolerance that matters; a single value near a digit's
# edge can move further (image-cpu at 4 steps: max 0.23), so the max is bounded loosely and
# the share of values off by more than 0.1 tightly.
VIDEO_MODELS = ("video-cpu", "dit-cpu", "latent-video-cpu")
BF16_VIDEO_MAX_TOLERANCE = 0.3
BF16_SHARE_OFF_BY_0_1 = 0.01
# channels-last only reorders the sums inside each convolution: fp32 rounding.
CHANNELS_LAST_TOLERANCE = 1e-4


def test_precisions_are_checked_by_name():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("faster", [True, False])
def test_auto_on_a_cpu_follows_a_benchmark_measured_once_per_machine(tmp_path, monkeypatch, faster):
    monkeypatch.setattr(fast_paths, "CACHE_DIR", tmp_path)
    measured = []
    monkeypatch.setattr(fast_paths, "_measure_bf16", lambda: measured.append(1) or {"fp32_s": 1.0, "bf16_s": 0.5, "bf16_faster": faster})
    assert resolve_precision("auto", "cpu") == ("bf16" if faster else "fp32")
    assert resolve_precision("auto", "cpu") == ("bf16" if faster else "fp32")
    assert len(measured) == 1
    assert (tmp_path / "fast_paths.json").is_file()


def test_the_micro_benchmark_times_both_precisions():
    result = fast_paths._measure_bf16()
    assert result["fp32_s"] > 0 and result["bf16_s"] > 0
    assert result["bf16_faster"] == (result["bf16_s"] * fast_paths._BF16_MARGIN < result["fp32_s"])


def _draw(model, shape, steps=4, **kwargs):
    labels = torch.arange(shape[0]) % 10
    return sample(model, shape, steps=steps, cond=labels, guidance_scale=2.0, generator=torch.Generator().manual_seed(0), progress=False, **kwargs)


def test_bf16_sampling_of_the_shipped_image_model_stays_close_to_fp32():
    model = load_pretrained("image-cpu", device="cpu")
    shape = (2, 1, 1, 32, 32)
    fp32 = _draw(model, shape)
    bf16 = _draw(model, shape, precision="bf16")
    difference = (bf16 - fp32).abs()
    assert difference.max() > 0, "bf16 gave fp32's numbers exactly: autocast was not applied"
    assert difference.mean() < BF16_MEAN_TOLERANCE
    assert difference.max() < BF16_MAX_TOLERANCE
    assert bf16.dtype == torch.float32  # the sampler's state stays fp32


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_bf16_sampling_of_the_shipped_video_models_stays_close_to_fp32(name):
    model = load_pretrained(name, device="cpu")
    preset = get_preset(name)
    shape = (2, *(preset.latent_shape or preset.sample_shape))  # a latent model samples latents
    fp32 = _draw(model, shape, steps=2)
    bf16 = _draw(model, shape, steps=2, precision="bf16", channels_last=True)
    difference = (bf16 - fp32).abs()
    # channels-last alone moves values by about 1e-6; bf16's rounding by about 1e-3
    assert difference.mean() > 1e-4, "bf16 gave (nearly) fp32's numbers: autocast was not applied"
    assert difference.mean() < BF16_MEAN_TOLERANCE
    assert difference.max() < BF16_VIDEO_MAX_TOLERANCE
    assert (difference > 0.1).float().mean() < BF16_SHARE_OFF_BY_0_1
    assert bf16.dtype == torch.float32


def test_channels_last_sampling_of_the_shipped_video_model_matches_contiguous():
    model = load_pretrained("video-cpu", device="cpu")
    shape = (2, 10, 1, 32, 32)
    formats = []

    def record(step, x, x0):
        formats.append(model.input_conv.weight.is_contiguous(memory_format=torch.channels_last))

    plain = _draw(model, shape, steps=2)
    fast = _draw(model, shape, steps=2, channels_last=True, callback=record)
    assert formats and all(formats), "the convolutions did not run channels-last"
    assert fast.shape == plain.shape == shape  # the public (B, T, C, H, W) layout
    torch.testing.assert_close(fast, plain, rtol=0, atol=CHANNELS_LAST_TOLERANCE)
    assert all(p.is_contiguous() for p in model.parameters()), "weights must be contiguous again afterwards"


def test_every_shipped_checkpoint_still_loads():
    for entry in read_manifest()["checkpoints"]:
        model = load_pretrained(entry["name"], device="cpu")
        assert sum(p.numel() for p in model.parameters()) > 0


class _Conv(torch.nn.Module):
    def __init__(self, config=None):
        super().__init__()
        self.config = TrainConfig()  # any dataclass: what the checkpoint stores
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.net(x)


def _batches(generator):
    return torch.randn(4, 1, 8, 8, generator=generator)


def _loss(model, batch, generator):
    return ((model(batch) - batch.flip(-1)) ** 2).mean()


def test_the_trainer_trains_in_the_precision_asked_and_records_it(tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        trainer = Trainer(_Conv(), _loss, _batches, TrainConfig(precision=precision, warmup_steps=1), out_dir=tmp_path / precision, device="cpu", progress=False)
        losses[precision] = trainer.fit(2)
        assert load_checkpoint(tmp_path / precision / "checkpoint.safetensors").state["precision"] == precision
    assert losses["bf16"] != losses["fp32"]
    torch.testing.assert_close(torch.tensor(losses["bf16"]), torch.tensor(losses["fp32"]), rtol=0.02, atol=0)


def test_a_latent_preset_trains_in_bf16(tmp_path):
    # the frozen VAE encodes under the same autocast: its latents must reach the model as fp32
    preset = dataclasses.replace(get_preset("latent-video-cpu"), batch_size=2)
    torch.manual_seed(0)
    train = dataclasses.replace(preset.train, precision="bf16", warmup_steps=1)
    trainer = Trainer(preset.build_model(), preset.loss_fn(), preset.batches(), train, out_dir=tmp_path, device="cpu", progress=False)
    assert math.isfinite(trainer.fit(1)[-1])
