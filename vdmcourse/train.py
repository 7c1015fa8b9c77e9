"""One trainer for every model in the course.

:class:`Trainer` knows nothing about diffusion. It takes

* a model (an ``nn.Module`` built from a dataclass config, kept as ``model.config``),
* ``loss_fn(model, batch, generator) -> scalar tensor`` -- e.g. a diffusion loss
  drawing its noise and timesteps from ``generator``,
* ``batches(generator) -> batch`` -- a batch source that makes each batch on the
  fly from a seeded ``torch.Generator`` (a tensor, or a dict/list/tuple of tensors),

and trains with AdamW, gradient clipping, an exponential moving average (EMA) of
the weights, fp32 or bf16 autocast (``TrainConfig.precision``), a tqdm bar showing the loss,
optional sample previews, and atomic, exactly resumable checkpoints. Started by
``torchrun``, it trains with DistributedDataParallel over the processes (gloo on the
CPU, NCCL on CUDA; see :mod:`vdmcourse.distributed`); alone, it is one process.

Learning rate: linear warm-up over ``warmup_steps``, then constant. Constant,
not cosine, because the EMA already does the averaging a decaying rate would,
and because a constant rate does not depend on the total number of steps, so a
finished run can be resumed and trained further with no jump in the schedule.
The rate is a pure function of the step (:meth:`Trainer.lr_at`), so the step is
all the scheduler state there is.

A checkpoint (``out_dir/checkpoint.safetensors``, see :mod:`vdmcourse.pretrained`)
holds the model config, weights, EMA weights, AdamW moments, step, loss history
and every random state that training draws from -- the data generator, the loss
generator, torch's global generator(s), Python's and NumPy's -- so that N steps,
save, resume, M steps gives bitwise the same weights on the CPU as N + M steps
in one go. It is written to a temporary file and renamed: a crash while saving
leaves the previous checkpoint intact. Ctrl-C finishes the current step, saves,
and raises ``KeyboardInterrupt``; a second Ctrl-C stops at once.

The checkpoint is the single source of truth. The files beside it --
``model.safetensors`` (the EMA weights), ``loss.csv`` and whatever the ``on_save``
callback writes (the CLI's ``run.json``) -- are derived from it, written after it
at every save; after a kill between the writes, :meth:`Trainer.resume` rewrites the
ones that lag. Temporary files left by a killed process (``.NAME.tmp-PID``) are
removed when a Trainer with that ``out_dir`` is built.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import random
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vdmcourse import distributed
from vdmcourse.course import pick_device
from vdmcourse.fast_paths import PRECISIONS, resolve_precision
from vdmcourse.pretrained import atomic_path, load_checkpoint, load_weights, remove_stale_temporaries, save_checkpoint

__all__ = ["TrainConfig", "Trainer", "machine_info"]

CHECKPOINT_NAME = "checkpoint.safetensors"
MODEL_NAME = "model.safetensors"
# TrainConfig fields that only decide when to save or look, not what is computed:
# a run may be resumed with other values. So may the precision (a CPU run continued on a GPU).
_WHEN_ONLY = ("checkpoint_every", "preview_every", "precision")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (what to train is the model, the loss and the batch source).

    Attributes:
        lr: AdamW learning rate after warm-up.
        warmup_steps: steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        weight_decay: AdamW's decoupled weight decay (0: none, usual for diffusion).
        betas: AdamW's moment decay rates.
        grad_clip: clip the global gradient norm to this (``math.inf``: no clipping).
        ema_decay: the EMA's decay; early on it is ``min(ema_decay, (1 + n) / (10 + n))``
            after n updates, so the average is not dominated by the random init.
        seed: seeds the data generator (``seed``) and the loss generator (``seed + 1``).
        checkpoint_every: save every this many steps (with ``out_dir``; also at the end).
        preview_every: call the preview callback every this many steps (0: never).
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 on CUDA, and on a
            CPU where it is measured faster; see :mod:`vdmcourse.fast_paths`). The
            checkpoint records what was used.
    """

    lr: float = 2e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    preview_every: int = 0
    precision: str = "fp32"

    def __post_init__(self):
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"TrainConfig: lr must be a finite number > 0; got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise ValueError(f"TrainConfig: weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig: betas must be two numbers in [0, 1); got {self.betas!r}")
        for name in ("warmup_steps", "seed", "preview_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig: {name} must be an int >= 0; got {value!r}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ValueError(f"TrainConfig: checkpoint_every must be an int >= 1; got {self.checkpoint_every!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"TrainConfig: ema_decay must be in [0, 1); got {self.ema_decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig: precision must be one of {PRECISIONS}; got {self.precision!r}")
        if not (isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0):
            raise ValueError(f"TrainConfig: grad_clip must be > 0 (math.inf for none); got {self.grad_clip!r}")


def machine_info() -> dict:
    """What a run's figures were measured on: CPU model, cores, threads (and OpenMP's
    wait policy, which matters on a shared machine), torch, GPU."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "processes": distributed.world_size(),
    }


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


class _StopRequest:
    requested = False


@contextmanager
def _stop_at_step_end():
    """Turn the first Ctrl-C (SIGINT) into a request to stop after the current step,
    so the saved state is always that of a completed step. Only the main thread can
    handle signals; elsewhere Ctrl-C keeps its usual effect."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        tqdm.write("Ctrl-C: finishing this step, saving, then stopping (press again to stop at once)")

    signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


class Trainer:
    """Train ``model`` on ``loss_fn(model, batch, generator)`` over ``batches(generator)``.

    Args:
        model: the model; moved to ``device``. It keeps its dataclass config as
            ``model.config`` (what checkpoints store).
        loss_fn: ``(model, batch, generator) -> scalar tensor``; ``generator`` is the
            trainer's loss generator (on ``device``) for its noise and timesteps.
        batches: ``(generator) -> batch``, drawing everything random from the CPU
            data generator it is given.
        config: a :class:`TrainConfig`.
        out_dir: where checkpoints go (``out_dir/checkpoint.safetensors``); None: nowhere.
        device: default :func:`vdmcourse.course.pick_device`.
        preview: optional ``(ema_model, step) -> None``, e.g. writing a GIF of samples;
            it runs under ``torch.no_grad`` with torch's global RNG state restored after.
        metadata: JSON-able facts stored in every checkpoint (e.g. the preset name).
        progress: show a tqdm bar.
        on_save: optional ``(trainer) -> None``, called after every save and resume to
            write files derived from the checkpoint (the CLI writes ``run.json``).

    Attributes: ``model``, ``ema`` (a frozen copy holding the EMA weights, eval mode),
    ``optimizer``, ``step`` (completed steps), ``history`` (the loss of every step),
    ``elapsed`` (training seconds, summed over resumes), ``cpu_elapsed`` (this process's
    CPU seconds in training steps, all threads, summed over resumes), ``saved_step``
    (the step of the last checkpoint written or resumed; None if none).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, Any, torch.Generator], torch.Tensor],
        batches: Callable[[torch.Generator], Any],
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        preview: Callable[[nn.Module, int], None] | None = None,
        metadata: dict | None = None,
        progress: bool = True,
        on_save: Callable[[Trainer], None] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer: model must be an nn.Module; got {type(model).__name__}")
        if not callable(loss_fn) or not callable(batches):
            raise TypeError("Trainer: loss_fn(model, batch, generator) and batches(generator) must be callables")
        self.config = config or TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig; got {type(self.config).__name__}")
        self.device = pick_device(None if device is None else str(device))
        self.model = model.to(self.device)
        self.precision = resolve_precision(self.config.precision, self.device)  # "fp32" or "bf16"
        # Under torchrun: DistributedDataParallel, which gives every rank rank 0's weights (so before the EMA copy).
        self._loss = distributed.parallel_loss(self.model, loss_fn)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.loss_fn = loss_fn
        self.batches = batches
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.preview = preview
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.on_save = on_save
        # files derived from the checkpoint that resume() found lagging and rewrote
        self.repaired: list[str] = []
        if self.out_dir is not None and self.out_dir.is_dir():
            self.removed_temporaries = remove_stale_temporaries(self.out_dir)
        else:
            self.removed_temporaries = []
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.lr,
            betas=self.config.betas,
            weight_decay=self.config.weight_decay,
        )
        self.data_generator = torch.Generator().manual_seed(distributed.rank_seed(self.config.seed))
        self.loss_generator = torch.Generator(device=self.device).manual_seed(distributed.rank_seed(self.config.seed) + 1)
        self.step = 0
        self.history: list[float] = []
        self.elapsed = 0.0
        self.cpu_elapsed = 0.0
        self.saved_step: int | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): ``lr * (step + 1) / warmup_steps``
        during warm-up, then ``lr``."""
        if step < self.config.warmup_steps:
            return self.config.lr * (step + 1) / self.config.warmup_steps
        return self.config.lr

    def ema_decay_at(self, updates: int) -> float:
        """EMA decay used for the update after ``updates`` earlier updates."""
        return min(self.config.ema_decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema <- decay * ema + (1 - decay) * weights`` for every parameter; buffers copied."""
        decay = self.ema_decay_at(self.step)
        for averaged, current in zip(self.ema.parameters(), self.model.parameters()):
            averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)
        for averaged, current in zip(self.ema.buffers(), self.model.buffers()):
            averaged.copy_(current)

    def train_step(self) -> float:
        """One optimisation step; returns its loss."""
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = _to_device(self.batches(self.data_generator), self.device)
        self.model.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self._loss(self.model, batch, self.loss_generator)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"Trainer: loss_fn must return a scalar tensor; got {loss!r:.80}")
        value = distributed.mean_over_ranks(loss.detach()).item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Trainer: the loss is {value} at step {self.step} (lr {lr:.3g}); "
                "try a lower lr or a longer warm-up, and check the batch for NaNs"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.update_ema()
        self.step += 1
        self.history.append(value)
        return value

    def fit(self, steps: int, *, time_limit: float | None = None, cpu_limit: float | None = None) -> list[float]:
        """Train until ``self.step == steps`` (a total, so a resumed run continues to the
        same target) or, with ``time_limit``, until ``self.elapsed`` (training seconds,
        summed over resumes) reaches ``time_limit``, or, with ``cpu_limit``, until
        ``self.cpu_elapsed`` reaches ``cpu_limit`` CPU seconds, whichever comes first; save
        every ``checkpoint_every`` steps and at the end. Returns the loss history.

        A CPU budget is the one to compare runs by on a shared machine: under load a step
        takes longer on the wall clock but about the same CPU time."""
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"Trainer.fit: steps must be an int >= 0 (the total to reach); got {steps!r}")
        for name, limit in (("time_limit", time_limit), ("cpu_limit", cpu_limit)):
            if limit is not None and not limit >= 0:
                raise ValueError(f"Trainer.fit: {name} must be None or seconds >= 0; got {limit!r}")
        bar = tqdm(total=steps, initial=min(self.step, steps), disable=not self.progress, unit="step", dynamic_ncols=True)
        smoothed = None
        try:
            with _stop_at_step_end() as stop, distributed.sigterm_stops(stop):
                while (self.step < steps and (time_limit is None or self.elapsed < time_limit)
                       and (cpu_limit is None or self.cpu_elapsed < cpu_limit)):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    loss = self.train_step()
                    self.elapsed += time.perf_counter() - started
                    self.cpu_elapsed += time.process_time() - cpu_started
                    distributed.agree(self, stop)
                    smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
                    bar.update(1)
                    bar.set_postfix(loss=f"{smoothed:.4f}", lr=f"{self.lr_at(self.step - 1):.2g}", refresh=False)
                    if self.out_dir is not None and self.step % self.config.checkpoint_every == 0:
                        self.save()
                    if self.preview is not None and self.config.preview_every and self.step % self.config.preview_every == 0:
                        self.run_preview()
                    if stop.requested:
                        where = f"; saved {self.save()}" if self.out_dir is not None else ""
                        raise KeyboardInterrupt(f"training stopped at step {self.step}{where}")
        finally:
            bar.close()
        if self.out_dir is not None and self.saved_step != self.step:
            self.save()
        return self.history

    def run_preview(self) -> None:
        """Call the preview callback on the EMA model without touching training's RNG."""
        if not distributed.is_main():
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            self.preview(self.ema, self.step)

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {
            "rng.torch": torch.get_rng_state(),
            "rng.data": self.data_generator.get_state(),
            "rng.loss": self.loss_generator.get_state(),
        }
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """The trainer's state beyond the weights: JSON part and tensor part."""
        optimizer = self.optimizer.state_dict()
        tensors = {
            f"optimizer.{index}.{name}": value
            for index, moments in optimizer["state"].items()
            for name, value in moments.items()
        }
        tensors.update(self._rng_tensors())
        tensors["history.loss"] = torch.tensor(self.history, dtype=torch.float64)
        numpy_state = np.random.get_state()
        state = {
            "train_config": dataclasses.asdict(self.config),
            "optimizer_param_groups": optimizer["param_groups"],
            "optimizer_state_params": sorted(optimizer["state"]),
            "rng_python": random.getstate(),
            "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "elapsed_s": self.elapsed,
            "cpu_s": self.cpu_elapsed,
            "precision": self.precision,
            "machine": machine_info(),
        }
        return state, tensors

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a full training checkpoint (atomically) to ``path`` (default
        ``out_dir/checkpoint.safetensors``) and the EMA weights alone to
        ``model.safetensors`` beside it -- the small file to sample from or ship."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("Trainer.save: give a path, or build the Trainer with out_dir")
        state, tensors = self._state()
        distributed.gather_rank_states(self, state, tensors)
        distributed.average_over_ranks_(self.ema)
        if not distributed.is_main():  # rank 0 writes for every rank
            self.saved_step = self.step
            return path
        metadata = {**self.metadata, "weights": "model and EMA"}
        save_checkpoint(path, self.model, ema=self.ema, step=self.step, metadata=metadata, state=state, tensors=tensors)
        self.saved_step = self.step
        self._write_derived(path, ("model", "loss"))
        return path

    def _write_derived(self, path: Path, which) -> None:
        """Write the files that follow from the checkpoint at ``path``: the EMA weights
        (``"model"``), the loss history (``"loss"``), then the ``on_save`` callback."""
        if "model" in which:
            save_checkpoint(path.with_name(MODEL_NAME), self.ema, step=self.step, metadata={**self.metadata, "weights": "EMA"})
        if "loss" in which:
            with atomic_path(path.with_name("loss.csv")) as tmp:
                tmp.write_text("step,loss\n" + "".join(f"{i + 1},{loss:.6g}\n" for i, loss in enumerate(self.history)))
        if self.on_save is not None:
            self.on_save(self)

    def _lagging(self, path: Path) -> list[str]:
        """Which derived files beside ``path`` disagree with the checkpoint just resumed."""
        lagging = []
        try:
            if load_checkpoint(path.with_name(MODEL_NAME)).step != self.step:
                lagging.append("model")
        except (ValueError, FileNotFoundError):
            lagging.append("model")
        loss_csv = path.with_name("loss.csv")
        lines = loss_csv.read_text().count("\n") if loss_csv.is_file() else 0
        if lines != len(self.history) + 1:
            lagging.append("loss")
        return lagging

    def resume(self, path: str | os.PathLike | None = None) -> Trainer:
        """Restore everything :meth:`save` wrote; training then continues exactly.

        Refused (``ValueError`` naming the differences) when the checkpoint was made
        with another :class:`TrainConfig` (``checkpoint_every`` and ``preview_every``
        may differ), model config or parameter shapes.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("Trainer.resume: give a path, or build the Trainer with out_dir")
        checkpoint = load_checkpoint(path)
        state = checkpoint.state
        if "train_config" not in state:
            raise ValueError(f"{path} holds weights only, not a training state; load it with vdmcourse.pretrained.load_weights")
        _check_training_state(path, checkpoint)
        stored = state["train_config"]
        current = dataclasses.asdict(self.config)
        current["betas"] = list(current["betas"])
        differences = [
            f"{k}: checkpoint {stored.get(k)!r}, now {v!r}"
            for k, v in current.items()
            if stored.get(k) != v and k not in _WHEN_ONLY
        ]
        if differences:
            raise ValueError(f"Trainer.resume: {path} was trained with another TrainConfig: " + "; ".join(differences))
        load_weights(self.model, checkpoint, which="model")
        load_weights(self.ema, checkpoint, which="ema")

        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in sorted(checkpoint.tensors.items()):
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                moments.setdefault(int(index), {})[name] = value
        self._check_moments(path, moments, state, checkpoint.step)
        groups = [{**group, "betas": tuple(group["betas"])} for group in state["optimizer_param_groups"]]
        self.optimizer.load_state_dict({"state": moments, "param_groups": groups})

        torch.set_rng_state(checkpoint.tensors["rng.torch"])
        self.data_generator.set_state(checkpoint.tensors["rng.data"])
        self.loss_generator.set_state(checkpoint.tensors["rng.loss"])
        if self.device.type == "cuda" and "rng.cuda" in checkpoint.tensors:
            torch.cuda.set_rng_state(checkpoint.tensors["rng.cuda"], self.device)
        version, internal, gauss = state["rng_python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = state["rng_numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))

        self.step = checkpoint.step
        self.history = checkpoint.tensors["history.loss"].tolist()
        if len(self.history) != self.step:
            raise ValueError(f"Trainer.resume: {path} is inconsistent: step {self.step} but {len(self.history)} recorded losses")
        self.elapsed = state["elapsed_s"]
        self.cpu_elapsed = state.get("cpu_s", 0.0)  # checkpoints older than the CPU budget start it at 0
        self.saved_step = self.step
        distributed.restore_rank_states(self, checkpoint)
        lagging = self._lagging(path)
        self.repaired = [{"model": MODEL_NAME, "loss": "loss.csv"}[name] for name in lagging]
        self._write_derived(path, lagging)
        return self

    def _check_moments(self, path: Path, moments: dict, state: dict, step: int) -> None:
        """Refuse AdamW moments that are missing or misshapen for a parameter: loading
        them would silently restart that parameter's moments and break exact resume."""
        names = [name for name, _ in self.model.named_parameters()]
        parameters = list(self.model.parameters())
        if "optimizer_state_params" in state:
            expected = set(state["optimizer_state_params"])
        else:  # a checkpoint from before the list was stored: every trained parameter
            expected = {i for i, p in enumerate(parameters) if p.requires_grad} if step > 0 else set()
        unknown = sorted(i for i in moments if not 0 <= i < len(parameters))
        if unknown:
            raise ValueError(f"Trainer.resume: {path} holds optimiser state for parameters {unknown}; the model has {len(parameters)}")
        missing = [names[i] for i in sorted(expected - set(moments))]
        if missing:
            raise ValueError(
                f"Trainer.resume: {path} lacks the optimiser state of {', '.join(missing[:5])}"
                f"{' and others' if len(missing) > 5 else ''}; resuming would restart its moments (no exact resume)"
            )
        for index, values in moments.items():
            parameter = parameters[index]
            for key in ("exp_avg", "exp_avg_sq"):
                if key not in values or values[key].shape != parameter.shape:
                    got = tuple(values[key].shape) if key in values else "nothing"
                    raise ValueError(
                        f"Trainer.resume: {path}: the optimiser's {key} of {names[index]} is {got}; "
                        f"the parameter has shape {tuple(parameter.shape)}"
                    )


_REQUIRED_TENSORS = ("rng.torch", "rng.data", "rng.loss", "history.loss")
_REQUIRED_STATE = ("train_config", "optimizer_param_groups", "rng_python", "rng_numpy", "elapsed_s")


def _check_training_state(path: Path, checkpoint) -> None:
    """Refuse a training checkpoint that lacks part of the state exact resume needs."""
    missing = [key for key in _REQUIRED_TENSORS if key not in checkpoint.tensors]
    missing += [key for key in _REQUIRED_STATE if key not in checkpoint.state]
    if missing:
        raise ValueError(f"Trainer.resume: {path} lacks {', '.join(missing)}; it cannot be resumed exactly (start a new run)")
    for key in ("elapsed_s", "cpu_s"):
        value = checkpoint.state.get(key, 0.0)
        if not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"Trainer.resume: {path} has {key} {value!r}; expected seconds >= 0")
