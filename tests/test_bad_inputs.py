"""The catalogue of bad inputs (issue 16): one row per mistake a user can make.

Each row: a short name, the call (given the prepared files ``f``), the exception
type, and the words the message must hold -- the argument or file it names. CLI
rows run ``python -m vdmcourse`` in process: exit status 2 and a one-line message.
"""

import gzip
import io
import math
import shutil
from contextlib import redirect_stderr
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vdmcourse.cli import main
from vdmcourse.data import MovingMNIST, MovingMNISTConfig, generate_clips, render_clips, simulate_trajectories
from vdmcourse.data.mnist import read_idx
from vdmcourse.data.moving_mnist import velocities_from_positions
from vdmcourse.diffusion import (
    VPSchedule,
    cosine_schedule,
    linear_schedule,
    null_label_of,
    resolve_schedule,
    sample,
    sample_timesteps,
    training_loss,
)
from vdmcourse.diffusion.guidance import classifier_free_guidance
from vdmcourse.diffusion.schedules import check_time
from vdmcourse.nn.attention import attention, causal_mask, naive_attention, window_mask
from vdmcourse.nn.embeddings import LabelEmbedding, TimestepEmbedding, drop_labels
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pretrained import build_model, load_checkpoint, load_pretrained, save_checkpoint, seal
from vdmcourse.train import TrainConfig, Trainer
from vdmcourse.viz import frame_strip, save_gif, show_video, to_uint8_frames

IMAGE = UNet2DConfig(image_size=8, base_channels=8, channel_mults=(1,), blocks_per_level=1, mid_attention=False, heads=1, groups=4)
VIDEO = UNet3DConfig.from_image_config(
    UNet2DConfig(image_size=8, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=1, groups=4),
    frames=4, temporal_downsample=(0,),
)


class CLIError(Exception):
    """What the command line printed, raised so CLI rows read like API rows."""


def cli(*argv):
    err = io.StringIO()
    with redirect_stderr(err):
        status = main([str(a) for a in argv])
    message = err.getvalue().strip()
    assert status == 2, f"exit status {status}, stderr {message!r}"
    assert "\n" not in message and "Traceback" not in message
    raise CLIError(message)


def flow_model(x, t, cond=None):
    return x


def tiny_trainer(out_dir=None, loss=None):
    torch.manual_seed(0)
    model = UNet2D(IMAGE)

    def default_loss(model, batch, generator):
        return training_loss(model, batch, generator=generator)

    return Trainer(model, loss or default_loss, lambda g: torch.rand(2, 1, 1, 8, 8, generator=g) * 2 - 1,
                   TrainConfig(warmup_steps=1, checkpoint_every=1), out_dir=out_dir, device="cpu", progress=False)


def edited(f, name, **changes):
    """A copy of the tiny checkpoint with header fields changed (and no content hash)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(f.model, "pt") as handle:
        document = json.loads(handle.metadata()["vdmcourse"])
    document.update(changes)
    path = f.dir / name
    save_file(load_file(f.model), path, metadata={"vdmcourse": json.dumps(document)})
    return path


def drop(f, prefix):
    """A copy of the trained run whose checkpoint lacks the tensors starting with ``prefix``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    run = f.dir / f"run-without-{prefix}"
    shutil.copytree(f.run, run)
    path = run / "checkpoint.safetensors"
    with safe_open(path, "pt") as handle:
        metadata = {"vdmcourse": handle.metadata()["vdmcourse"]}
    save_file({k: v for k, v in load_file(path).items() if not k.startswith(prefix)}, path, metadata=metadata)
    return run


@pytest.fixture(scope="module")
def f(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = SimpleNamespace(dir=d)
    torch.manual_seed(0)
    files.model = save_checkpoint(d / "tiny.safetensors", UNet2D(IMAGE), step=3)
    data = bytearray(files.model.read_bytes())
    data[-50] ^= 1
    (d / "flipped.safetensors").write_bytes(bytes(data))
    (d / "truncated.safetensors").write_bytes(bytes(data[: len(data) // 2]))
    save_file({"w": torch.zeros(2)}, d / "foreign.safetensors")
    torch.save(UNet2D(IMAGE).state_dict(), d / "model.pt")
    gz = bytearray(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 20]) + bytes(20)))
    gz[10] = 0xFF
    (d / "corrupt.gz").write_bytes(bytes(gz))
    (d / "short.idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 20]) + bytes(5))
    (d / "magic.idx").write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    (d / "a-file").write_text("not a folder")
    (d / "folder.gif").mkdir()
    np.save(d / "ten.npy", np.zeros((10, 10, 1, 32, 32), dtype=np.float32))
    np.save(d / "none.npy", np.zeros((0, 10, 1, 32, 32), dtype=np.float32))
    (d / "cut.npy").write_bytes((d / "ten.npy").read_bytes()[:1000])
    (d / "clips.txt").write_text("x")
    files.run = d / "run"
    assert main(["train", "--preset", "image-tiny", "--steps", "2", "--out", str(files.run), "--no-progress"]) == 0
    shipped = d / "shipped"
    shipped.mkdir()
    from vdmcourse.course import CHECKPOINT_DIR

    shutil.copy(CHECKPOINT_DIR / "manifest.json", shipped / "manifest.json")
    damaged = bytearray((CHECKPOINT_DIR / "evaluator-cpu.safetensors").read_bytes())
    damaged[-1] ^= 1
    (shipped / "evaluator-cpu.safetensors").write_bytes(bytes(damaged))
    files.shipped = shipped
    return files


def image_tiny_trainer(run):
    from vdmcourse.presets import get_preset

    preset = get_preset("image-tiny")
    return Trainer(preset.build_model(), preset.loss_fn(), preset.batches(), preset.train, out_dir=run, device="cpu", progress=False)


X = torch.zeros(2, 1, 1, 8, 8)
T = torch.full((2,), 0.5)
COND = torch.tensor([1, 2])
NAN = math.nan

# (name, call, exception type, words the message must hold)
ROWS = [
    # --- data
    ("mmnist canvas 0", lambda f: MovingMNISTConfig(canvas=0), ValueError, "canvas"),
    ("mmnist digit larger than canvas", lambda f: MovingMNISTConfig(digit_size=80), ValueError, "digit_size"),
    ("mmnist 500 digits on 32x32", lambda f: MovingMNISTConfig.cpu(digits=500), ValueError, "digits=500"),
    ("mmnist speed min > max", lambda f: MovingMNISTConfig(speed=(3, 1)), ValueError, "speed"),
    ("mmnist speed NaN", lambda f: MovingMNISTConfig(speed=NAN), ValueError, "speed"),
    ("mmnist unknown bounce", lambda f: MovingMNISTConfig(bounce="wild"), ValueError, "bounce"),
    ("mmnist unknown split", lambda f: MovingMNISTConfig(split="val"), ValueError, "split"),
    ("generate_clips n < 0", lambda f: generate_clips(-1), ValueError, "n must"),
    ("generate_clips config str", lambda f: generate_clips(1, "cpu"), TypeError, "config"),
    ("trajectory starts off canvas", lambda f: simulate_trajectories(torch.full((1, 1, 2), 40.0), torch.zeros(1, 1, 2), 3, 16), ValueError, "positions must lie"),
    ("trajectory NaN velocity", lambda f: simulate_trajectories(torch.zeros(1, 1, 2), torch.full((1, 1, 2), NAN), 3, 16), ValueError, "velocities"),
    ("trajectory 0 frames", lambda f: simulate_trajectories(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), 0, 16), ValueError, "frames"),
    ("stochastic bounce without speed", lambda f: simulate_trajectories(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), 3, 16, bounce="stochastic"), ValueError, "speed"),
    ("trajectory shapes differ", lambda f: simulate_trajectories(torch.zeros(1, 1, 2), torch.zeros(1, 2, 2), 3, 16), ValueError, "positions and velocities"),
    ("render 3-D digits", lambda f: render_clips(torch.zeros(1, 16, 16), torch.zeros(1, 2, 1, 2), 32), ValueError, "digits"),
    ("render off canvas", lambda f: render_clips(torch.zeros(1, 1, 16, 16), torch.full((1, 2, 1, 2), 20.0), 32), ValueError, "positions"),
    ("render unknown combine", lambda f: render_clips(torch.zeros(1, 1, 16, 16), torch.zeros(1, 2, 1, 2), 32, combine="mean"), ValueError, "combine"),
    ("dataset length 0", lambda f: MovingMNIST(length=0), ValueError, "length"),
    ("dataset seed < 0", lambda f: MovingMNIST(seed=-1), ValueError, "seed"),
    ("dataset index out of range", lambda f: MovingMNIST(length=5)[7], IndexError, "index"),
    ("velocities from one frame", lambda f: velocities_from_positions(torch.zeros(1, 1, 1, 2)), ValueError, "positions"),
    ("read_idx corrupt gzip", lambda f: read_idx(f.dir / "corrupt.gz"), ValueError, "corrupt.gz"),
    ("read_idx truncated", lambda f: read_idx(f.dir / "short.idx"), ValueError, "short.idx"),
    ("read_idx bad magic", lambda f: read_idx(f.dir / "magic.idx"), ValueError, "magic"),
    # --- viz
    ("gif of an ambiguous (B, 1, 3, H, W)", lambda f: save_gif(torch.rand(2, 1, 3, 8, 8), f.dir / "a.gif"), ValueError, "channels=3"),
    ("gif of (T, H, W)", lambda f: save_gif(torch.rand(3, 8, 8), f.dir / "a.gif"), ValueError, "video must be"),
    ("gif channels-last", lambda f: save_gif(torch.rand(3, 8, 8, 1), f.dir / "a.gif"), ValueError, "channels-last"),
    ("gif values outside value_range", lambda f: save_gif(torch.rand(3, 1, 8, 8) * 2 - 1, f.dir / "a.gif"), ValueError, "value_range"),
    ("gif with NaN", lambda f: save_gif(torch.full((3, 1, 8, 8), NAN), f.dir / "a.gif"), ValueError, "NaN"),
    ("gif to a .png path", lambda f: save_gif(torch.rand(3, 1, 8, 8), f.dir / "a.png"), ValueError, "path must end in .gif"),
    ("gif channels=2", lambda f: save_gif(torch.rand(3, 1, 8, 8), f.dir / "a.gif", channels=2), ValueError, "channels=2"),
    ("frames scale 0", lambda f: to_uint8_frames(torch.rand(3, 1, 8, 8), scale=0), ValueError, "scale"),
    ("frames columns 0", lambda f: to_uint8_frames(torch.rand(2, 3, 1, 8, 8), columns=0), ValueError, "columns"),
    ("show a list", lambda f: show_video([[0.0]]), TypeError, "video"),
    ("strip every 0", lambda f: frame_strip(torch.rand(3, 1, 8, 8), every=0), ValueError, "every"),
    # --- nn
    ("unet float64 x", lambda f: UNet2D(IMAGE)(X.double(), T), TypeError, "x of dtype"),
    ("unet uint8 x", lambda f: UNet2D(IMAGE)(X.to(torch.uint8), T), TypeError, "x of dtype"),
    ("unet empty batch", lambda f: UNet2D(IMAGE)(X[:0], T[:0]), ValueError, "empty batch"),
    ("unet x on another device", lambda f: UNet2D(IMAGE)(X.to("meta"), T), ValueError, "x is on meta"),
    ("unet t on another device", lambda f: UNet2D(IMAGE)(X, T.to("meta")), ValueError, "t on"),
    ("unet t per frame", lambda f: UNet2D(IMAGE)(X, torch.rand(2, 1)), ValueError, "t of shape"),
    ("unet 4-D x", lambda f: UNet2D(IMAGE)(X[:, 0], T), ValueError, "x of shape"),
    ("unet odd size", lambda f: UNet2D(UNet2DConfig(image_size=8, base_channels=8, channel_mults=(1, 2), heads=1, groups=4))(torch.zeros(2, 1, 1, 7, 7), T), ValueError, "multiples"),
    ("unet float labels", lambda f: UNet2D(IMAGE)(X, T, cond=torch.tensor([1.0, 2.0])), TypeError, "integer labels"),
    ("unet label 11 of 10", lambda f: UNet2D(IMAGE)(X, T, cond=torch.tensor([1, 11])), ValueError, "labels in [0, 10]"),
    ("unet cond batch", lambda f: UNet2D(IMAGE)(X, T, cond=torch.tensor([1])), ValueError, "cond of shape"),
    ("unet NaN t", lambda f: UNet2D(IMAGE)(X, torch.tensor([NAN, 0.5])), ValueError, "t in [0, 1]"),
    ("unet integer t", lambda f: UNet2D(IMAGE)(X, torch.tensor([500, 20])), TypeError, "float t"),
    ("unet num_classes 0", lambda f: UNet2DConfig(num_classes=0), ValueError, "num_classes"),
    ("unconditional unet given cond", lambda f: UNet2D(UNet2DConfig(**{**IMAGE.__dict__, "num_classes": None}))(X, T, cond=COND), ValueError, "unconditional"),
    ("unet3d T not a multiple", lambda f: UNet3D(VIDEO)(torch.zeros(1, 3, 1, 8, 8), torch.rand(1)), ValueError, "T must be 1 or a multiple"),
    ("unet3d frames 0", lambda f: UNet3DConfig(frames=0), ValueError, "frames"),
    ("unet3d with an image config", lambda f: UNet3D(IMAGE), TypeError, "UNet3DConfig"),
    ("attention q, k differ", lambda f: attention(torch.zeros(2, 4, 8), torch.zeros(2, 4, 6), torch.zeros(2, 4, 8)), ValueError, "q (..., N, d)"),
    ("naive attention float mask", lambda f: naive_attention(*(torch.zeros(1, 3, 4),) * 3, mask=torch.ones(3, 3)), TypeError, "mask"),
    ("attention bias shape", lambda f: attention(*(torch.zeros(1, 3, 4),) * 3, bias=torch.zeros(2, 2)), ValueError, "bias"),
    ("causal_mask 0 frames", lambda f: causal_mask(0), ValueError, "frames"),
    ("window_mask window -1", lambda f: window_mask(4, -1), ValueError, "window"),
    ("timestep embedding 2-D t", lambda f: TimestepEmbedding(16)(torch.zeros(2, 1)), ValueError, "t of shape"),
    ("label embedding 0 classes", lambda f: LabelEmbedding(0, 16), ValueError, "num_classes"),
    ("drop_labels p 2", lambda f: drop_labels(COND, 2.0, null_label=10), ValueError, "p must"),
    # --- diffusion
    ("sample 0 steps", lambda f: sample(flow_model, (1, 2), steps=0), ValueError, "steps"),
    ("sample unknown sampler", lambda f: sample(flow_model, (1, 2), sampler="dpm"), ValueError, "sampler"),
    ("sample unknown objective", lambda f: sample(flow_model, (1, 2), objective="score"), ValueError, "objective"),
    ("sample NaN guidance", lambda f: sample(flow_model, (2, 2), cond=COND, guidance_scale=NAN), ValueError, "guidance_scale"),
    ("sample guidance without labels", lambda f: sample(flow_model, (2, 2), guidance_scale=2.0, steps=1, progress=False), ValueError, "cond=None"),
    ("sample float labels", lambda f: sample(flow_model, (2, 2), cond=torch.tensor([1.0, 2.0])), TypeError, "cond must be an integer tensor"),
    ("sample labels of another batch", lambda f: sample(flow_model, (3, 2), cond=COND), ValueError, "cond must have shape"),
    ("sample eta 2", lambda f: sample(flow_model, (1, 2), sampler="ddim", objective="v", eta=2.0), ValueError, "eta"),
    ("sample shape with 0", lambda f: sample(flow_model, (0, 2)), ValueError, "shape"),
    ("sample noise of another shape", lambda f: sample(flow_model, (1, 2), noise=torch.zeros(2, 2)), ValueError, "noise"),
    ("sample eps on the flow path", lambda f: sample(flow_model, (1, 2), objective="eps", schedule="flow"), ValueError, "eps-prediction"),
    ("loss p_uncond 2", lambda f: training_loss(flow_model, X, cond=COND, p_uncond=2.0), ValueError, "p_uncond"),
    ("loss p_uncond NaN", lambda f: training_loss(flow_model, X, cond=COND, p_uncond=NAN), ValueError, "p_uncond"),
    ("loss p_uncond without labels", lambda f: training_loss(flow_model, X, p_uncond=0.1), ValueError, "p_uncond"),
    ("loss 1-D x0", lambda f: training_loss(flow_model, torch.zeros(3)), ValueError, "x0"),
    ("timesteps n 0", lambda f: sample_timesteps(0), ValueError, "n must"),
    ("timesteps unknown distribution", lambda f: sample_timesteps(2, distribution="beta"), ValueError, "distribution"),
    ("timesteps std 0", lambda f: sample_timesteps(2, distribution="logit_normal", std=0.0), ValueError, "std"),
    ("check_time NaN", lambda f: check_time(torch.tensor([NAN])), ValueError, "t must lie"),
    ("check_time integer step", lambda f: check_time(torch.tensor([500])), TypeError, "t must be a float"),
    ("cosine schedule 0 steps", lambda f: cosine_schedule(0), ValueError, "num_steps"),
    ("linear schedule start > end", lambda f: linear_schedule(10, 0.5, 0.1), ValueError, "beta_start"),
    ("VPSchedule beta 2", lambda f: VPSchedule(torch.tensor([0.1, 2.0])), ValueError, "beta"),
    ("flow objective on cosine", lambda f: resolve_schedule("cosine", "flow"), ValueError, "straight path"),
    ("null label -1", lambda f: null_label_of(flow_model, -1), ValueError, "null_label"),
    ("set a cached schedule", lambda f: setattr(cosine_schedule(), "num_steps", 3), AttributeError, "num_steps"),
    ("guidance shapes differ", lambda f: classifier_free_guidance(torch.zeros(2), torch.zeros(3), 2.0), ValueError, "cond_out"),
    # --- pretrained
    ("load a missing file", lambda f: load_checkpoint(f.dir / "missing.safetensors"), FileNotFoundError, "missing.safetensors"),
    ("load a pickle", lambda f: load_checkpoint(f.dir / "model.pt"), ValueError, "model.pt looks like a PyTorch pickle"),
    ("load a flipped byte", lambda f: load_checkpoint(f.dir / "flipped.safetensors"), ValueError, "flipped.safetensors is corrupt"),
    ("load a truncated file", lambda f: load_checkpoint(f.dir / "truncated.safetensors"), ValueError, "truncated.safetensors is truncated"),
    ("load a foreign safetensors", lambda f: load_checkpoint(f.dir / "foreign.safetensors"), ValueError, "not a vdmcourse checkpoint"),
    ("header step as a string", lambda f: load_checkpoint(edited(f, "s.safetensors", step="3")), ValueError, "'step'"),
    ("header config null", lambda f: load_checkpoint(edited(f, "c.safetensors", config=None)), ValueError, "'config'"),
    ("header model_class a function", lambda f: build_model(edited(f, "m.safetensors", model_class="vdmcourse.course.pick_device")), ValueError, "model_class"),
    ("header model_class outside vdmcourse", lambda f: build_model(edited(f, "o.safetensors", model_class="os.system")), ValueError, "'os.system'"),
    ("pretrained unknown name", lambda f: load_pretrained("nope"), ValueError, "'nope'"),
    ("pretrained damaged file", lambda f: load_pretrained("evaluator-cpu", directory=f.shipped), ValueError, "evaluator-cpu.safetensors is damaged: SHA-256"),
    ("seal a missing checkpoint", lambda f: seal("nope", f.shipped), FileNotFoundError, "nope.safetensors"),
    ("weights 'opt'", lambda f: load_checkpoint(f.model).weights("opt"), ValueError, "which"),
    ("save a model without config", lambda f: save_checkpoint(f.dir / "l.safetensors", torch.nn.Linear(2, 2)), TypeError, "config"),
    # --- train
    ("lr NaN", lambda f: TrainConfig(lr=NAN), ValueError, "lr"),
    ("betas above 1", lambda f: TrainConfig(betas=(0.9, 1.5)), ValueError, "betas"),
    ("checkpoint_every 0", lambda f: TrainConfig(checkpoint_every=0), ValueError, "checkpoint_every"),
    ("weight_decay -1", lambda f: TrainConfig(weight_decay=-1.0), ValueError, "weight_decay"),
    ("ema_decay 1", lambda f: TrainConfig(ema_decay=1.0), ValueError, "ema_decay"),
    ("trainer of a string", lambda f: Trainer("model", flow_model, flow_model), TypeError, "model"),
    ("fit -1 steps", lambda f: tiny_trainer().fit(-1), ValueError, "steps"),
    ("fit NaN time limit", lambda f: tiny_trainer().fit(1, time_limit=NAN), ValueError, "time_limit"),
    ("NaN loss", lambda f: tiny_trainer(loss=lambda m, b, g: torch.tensor(NAN)).fit(1), FloatingPointError, "loss"),
    ("save without out_dir", lambda f: tiny_trainer().save(), ValueError, "give a path"),
    ("resume without optimiser state", lambda f: Trainer.resume(image_tiny_trainer(drop(f, "optimizer.0."))), ValueError, "optimiser state of"),
    ("resume without the data RNG", lambda f: Trainer.resume(image_tiny_trainer(drop(f, "rng.data"))), ValueError, "rng.data"),
    # --- the command line
    ("train unknown preset", lambda f: cli("train", "--preset", "image-huge"), CLIError, "known presets"),
    ("train --steps 0", lambda f: cli("train", "--preset", "image-tiny", "--steps", 0, "--out", f.dir / "t1"), CLIError, "--steps"),
    ("train --minutes 0", lambda f: cli("train", "--preset", "image-tiny", "--minutes", 0, "--out", f.dir / "t2"), CLIError, "--minutes"),
    ("train --minutes nan", lambda f: cli("train", "--preset", "image-tiny", "--minutes", "nan", "--out", f.dir / "t2"), CLIError, "--minutes"),
    ("train --checkpoint-every 0", lambda f: cli("train", "--preset", "image-tiny", "--checkpoint-every", 0, "--out", f.dir / "t3"), CLIError, "--checkpoint-every"),
    ("train --preview-every -1", lambda f: cli("train", "--preset", "image-tiny", "--preview-every", -1, "--out", f.dir / "t3"), CLIError, "--preview-every"),
    ("train --device foo", lambda f: cli("train", "--preset", "image-tiny", "--device", "foo", "--out", f.dir / "t4"), CLIError, "device"),
    ("train --out an existing file", lambda f: cli("train", "--preset", "image-tiny", "--out", f.dir / "a-file"), CLIError, "--out"),
    ("train --out under a file", lambda f: cli("train", "--preset", "image-tiny", "--out", f.dir / "a-file" / "run"), CLIError, "--out"),
    ("train --resume with nothing", lambda f: cli("train", "--preset", "image-tiny", "--resume", "--out", f.dir / "t5"), CLIError, "--resume"),
    ("train over an existing run", lambda f: cli("train", "--preset", "image-tiny", "--out", f.run), CLIError, "--resume"),
    ("sample --steps 0", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--steps", 0), CLIError, "--steps"),
    ("sample --frames 0", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--frames", 0), CLIError, "--frames"),
    ("sample --num 0", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--num", 0), CLIError, "--num"),
    ("sample --guidance nan", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--guidance", "nan"), CLIError, "--guidance"),
    ("sample --label 12", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--label", 12), CLIError, "--label"),
    ("sample --out .mp3", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.mp3"), CLIError, "--out"),
    ("sample --out a folder", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "folder.gif"), CLIError, "--out"),
    ("sample --out under a file", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "a-file" / "s.gif"), CLIError, "--out"),
    ("sample a missing checkpoint", lambda f: cli("sample", "--checkpoint", f.dir / "missing.safetensors", "--out", f.dir / "s.gif"), CLIError, "missing.safetensors"),
    ("sample a pickle", lambda f: cli("sample", "--checkpoint", f.dir / "model.pt", "--out", f.dir / "s.gif"), CLIError, "pickle"),
    ("sample a flipped byte", lambda f: cli("sample", "--checkpoint", f.dir / "flipped.safetensors", "--out", f.dir / "s.gif"), CLIError, "flipped.safetensors is corrupt"),
    ("sample --device foo", lambda f: cli("sample", "--checkpoint", f.run / "model.safetensors", "--out", f.dir / "s.gif", "--device", "foo"), CLIError, "device"),
    ("sample the evaluator", lambda f: cli("sample", "--checkpoint", "evaluator-cpu", "--out", f.dir / "s.gif"), CLIError, "nothing to sample"),
    ("evaluate --num 10", lambda f: cli("evaluate", "--checkpoint", f.run / "model.safetensors", "--num", 10), CLIError, "--num must be at least 65"),
    ("evaluate --clips truncated", lambda f: cli("evaluate", "--clips", f.dir / "cut.npy"), CLIError, "--clips"),
    ("evaluate --clips with 0 clips", lambda f: cli("evaluate", "--clips", f.dir / "none.npy"), CLIError, "--clips"),
    ("evaluate --clips with 10 clips", lambda f: cli("evaluate", "--clips", f.dir / "ten.npy"), CLIError, "holds 10 clips"),
    ("evaluate --clips .txt", lambda f: cli("evaluate", "--clips", f.dir / "clips.txt"), CLIError, "--clips"),
    ("evaluate --digits 0", lambda f: cli("evaluate", "--clips", f.dir / "ten.npy", "--digits", 0), CLIError, "--digits"),
    ("seal an unknown name", lambda f: cli("seal", "nope", "--dir", f.shipped), CLIError, "nope"),
]


def test_the_catalogue_is_large_and_names_are_unique():
    names = [row[0] for row in ROWS]
    assert len(names) >= 80 and len(set(names)) == len(names)


@pytest.mark.parametrize("name, call, error, words", ROWS, ids=[row[0] for row in ROWS])
def test_a_bad_input_is_refused_naming_what_is_wrong(f, name, call, error, words):
    with pytest.raises(error) as raised:
        call(f)
    assert words in str(raised.value), f"{name}: {raised.value}"
