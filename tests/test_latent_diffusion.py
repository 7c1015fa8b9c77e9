"""Latent video diffusion through the command line: a VAE preset measures its scaling
factor, a latent preset trains on its scaled latents, and sample / evaluate decode
through the VAE the checkpoint names -- and refuse any other."""

import functools
import math

import imageio.v3 as iio
import pytest
import torch

from vdmcourse.cli import main
from vdmcourse.data import MovingMNISTConfig
from vdmcourse.nn.dit import VideoDiT, VideoDiTConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.nn.vae import VideoVAE, VideoVAEConfig, vae_fingerprint, vae_loss
from vdmcourse.presets import PRESETS, Preset, _fit_scaling_factor, load_latent_vae
from vdmcourse.pretrained import build_model, load_checkpoint, save_checkpoint
from vdmcourse.train import TrainConfig

DATA = MovingMNISTConfig.cpu()  # 32x32, 10 frames: the shipped evaluator's clip size
TINY_VAE = Preset(
    name="test-vae",
    description="",
    model_class=VideoVAE,
    model_config=VideoVAEConfig(widths=(8, 8, 8), groups=4),
    data=MovingMNISTConfig.cpu(frames=3),
    objective=None,
    loss=functools.partial(vae_loss, beta=1e-4),
    finish=functools.partial(_fit_scaling_factor, data=DATA, clips=8),
    batch_size=2,
    steps=2,
    train=TrainConfig(lr=1e-3, warmup_steps=1),
)


UNET = (UNet3D, UNet3DConfig(image_size=8, channels=4, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4, frames=10))
DIT = (VideoDiT, VideoDiTConfig(channels=4, patch=(1, 2, 2), dim=16, depth=1, heads=2, frames=10, image_size=8))


def latent_preset(vae_path, denoiser=UNET):
    return Preset(
        name="test-latent",
        description="",
        model_class=denoiser[0],
        model_config=denoiser[1],
        data=DATA,
        batch_size=2,
        steps=2,
        train=TrainConfig(lr=1e-3, warmup_steps=1),
        sample_steps=2,
        vae=str(vae_path),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PRESETS, "test-vae", TINY_VAE)
        assert main(["train", "--preset", "test-vae", "--out", str(root / "vae"), "--no-progress"]) == 0
        vae_path = root / "vae" / "model.safetensors"
        patch.setitem(PRESETS, "test-latent", latent_preset(vae_path))
        assert main(["train", "--preset", "test-latent", "--out", str(root / "latent"), "--no-progress"]) == 0
        patch.setitem(PRESETS, "test-latent", latent_preset(vae_path, DIT))
        assert main(["train", "--preset", "test-latent", "--out", str(root / "latent-dit"), "--no-progress"]) == 0
    return root


def test_vae_training_ends_by_storing_a_measured_scaling_factor(runs):
    for name in ("model.safetensors", "checkpoint.safetensors"):
        factor = load_checkpoint(runs / "vae" / name).tensors[("ema" if name == "checkpoint.safetensors" else "model") + ".scaling_factor"]
        assert math.isfinite(factor.item()) and factor.item() > 0


def test_the_latent_checkpoint_records_its_vae_and_latent_shape(runs):
    vae = build_model(runs / "vae" / "model.safetensors")
    info = load_checkpoint(runs / "latent" / "model.safetensors").metadata
    assert info["vae"]["fingerprint"] == vae_fingerprint(vae)
    assert info["latent_shape"] == [10, 4, 8, 8] and info["sample_shape"] == [10, 1, 32, 32]


def test_latent_training_diffuses_scaled_latents(tmp_path):
    vae = VideoVAE(VideoVAEConfig(widths=(8, 8, 8), groups=4))
    vae.scaling_factor.fill_(3.0)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x, t, cond=None):
            seen["shape"] = x.shape
            return torch.zeros_like(x)

    path = save_checkpoint(tmp_path / "vae.safetensors", vae)
    preset = latent_preset(path)
    batch = preset.batches()(torch.Generator().manual_seed(0))
    loss = preset.loss_fn()(Recorder(), batch, torch.Generator().manual_seed(1))
    latents = load_latent_vae(str(path)).encode_latents(batch["video"] * 2 - 1, torch.Generator().manual_seed(1))
    assert seen["shape"] == (2, 10, 4, 8, 8)
    # An all-zero prediction has flow loss E|eps - x0|^2 = 1 + E[x0^2]: x0 are the *scaled* latents.
    assert loss.item() == pytest.approx(1 + latents.square().mean().item(), rel=0.15)


@pytest.mark.parametrize("denoiser", ["latent", "latent-dit"])
def test_sample_and_evaluate_decode_latent_checkpoints_to_pixels(runs, tmp_path, capsys, denoiser):
    # The latent path does not care which denoiser it trained: the U-Net and the DiT alike.
    checkpoint = runs / denoiser / "model.safetensors"
    assert type(build_model(checkpoint)) is {"latent": UNet3D, "latent-dit": VideoDiT}[denoiser]
    gif = tmp_path / "clips.gif"
    assert main(["sample", "--checkpoint", str(checkpoint), "--out", str(gif), "--num", "2"]) == 0
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 10
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--num", "66"]) == 0
    assert "flicker" in capsys.readouterr().out


def test_a_latent_checkpoint_refuses_a_different_vae(runs, tmp_path, capsys):
    vae_path = runs / "vae" / "model.safetensors"
    original = vae_path.read_bytes()
    try:
        vae = build_model(vae_path)
        vae.scaling_factor.mul_(2.0)  # same weights, other scale: the latents no longer mean the same
        save_checkpoint(vae_path, vae)
        argv = ["sample", "--checkpoint", str(runs / "latent" / "model.safetensors"), "--out", str(tmp_path / "x.gif")]
        assert main(argv) == 2
        assert "fingerprint" in capsys.readouterr().err
    finally:
        vae_path.write_bytes(original)
