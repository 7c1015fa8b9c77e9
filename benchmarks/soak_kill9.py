"""Kill -9 soak test of the trainer's crash safety.

Trains the ``image-tiny`` preset with ``python -m vdmcourse train ... --checkpoint-every 1``
and kills the process with SIGKILL again and again: ``--kills-training`` times at a
random moment of training, ``--kills-saving`` times while one of its temporary
files (``.NAME.tmp-PID``) exists, i.e. in the middle of a save. Each run after a
kill is ``--resume``. After every kill it records

* steps lost: the last step the killed process completed (logged after every step,
  unbuffered) minus the step of the checkpoint on disk;
* orphans: temporary files of the dead process, and whether the next start removed them;
* disagreement: whether ``model.safetensors``, ``loss.csv`` and ``run.json`` describe
  another step than ``checkpoint.safetensors`` (as left by the kill, before the next
  ``--resume`` repairs them), and whether the checkpoint itself still loads.

Finally the run is resumed to a few steps further without a kill and compared,
tensor by tensor, with one uninterrupted run to the same step: exact resume means
equal bits. Results: ``benchmarks/results/soak_kill9.md`` and ``.json``.

    OMP_NUM_THREADS=1 python benchmarks/soak_kill9.py              # 10 + 10 kills, about 2-3 minutes
    OMP_NUM_THREADS=1 python benchmarks/soak_kill9.py --kills-training 2 --kills-saving 2 --no-write

To kill in the middle of a save reliably, the child process sleeps ``--save-pause``
seconds after each file is written to its temporary name and before the rename
(a wider window; the bytes written and the order of operations are unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DERIVED = ("model.safetensors", "loss.csv", "run.json")


def child(argv: list[str]) -> int:
    """The training process: the CLI, plus an unbuffered log of completed steps and an
    optional pause between writing a temporary file and renaming it."""
    import vdmcourse.pretrained as pretrained
    from vdmcourse.cli import main
    from vdmcourse.train import Trainer

    log = os.open(os.environ["SOAK_STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    train_step = Trainer.train_step

    def logged_step(self):
        loss = train_step(self)
        os.write(log, f"{os.getpid()} {self.step}\n".encode())
        return loss

    Trainer.train_step = logged_step
    pause = float(os.environ.get("SOAK_SAVE_PAUSE", "0"))
    if pause:
        save_file = pretrained.save_file

        def paused_save_file(tensors, path, metadata=None):
            save_file(tensors, path, metadata=metadata)
            time.sleep(pause)

        pretrained.save_file = paused_save_file
    return main(argv)


def _train_command(out: Path, steps: int, every: int, resume: bool) -> list[str]:
    command = [sys.executable, __file__, "child", "train", "--preset", "image-tiny", "--steps", str(steps),
               "--checkpoint-every", str(every), "--out", str(out), "--no-progress"]
    return command + (["--resume"] if resume else [])


def _logged_steps(log: Path, pid: int) -> list[int]:
    if not log.is_file():
        return []
    return [int(step) for who, step in (line.split() for line in log.read_text().splitlines()) if int(who) == pid]


def _temporaries(out: Path, pid: int | None = None) -> list[Path]:
    found = sorted(out.glob(".*.tmp-*"))
    return [p for p in found if pid is None or p.name.endswith(f".tmp-{pid}")]


def _state_of(out: Path) -> dict:
    """What the files on disk say, as left by a kill (before any repair)."""
    from vdmcourse.pretrained import load_checkpoint

    state = {}
    try:
        state["checkpoint_step"] = load_checkpoint(out / "checkpoint.safetensors").step
    except (ValueError, FileNotFoundError) as error:
        state["checkpoint_step"] = None
        state["checkpoint_error"] = str(error)
        return state
    try:
        state["model.safetensors"] = load_checkpoint(out / "model.safetensors").step
    except (ValueError, FileNotFoundError) as error:
        state["model.safetensors"] = f"unreadable: {error}"
    loss = out / "loss.csv"
    state["loss.csv"] = loss.read_text().count("\n") - 1 if loss.is_file() else None
    try:
        state["run.json"] = json.loads((out / "run.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        state["run.json"] = None
    state["disagree"] = [name for name in DERIVED if state[name] != state["checkpoint_step"]]
    return state


def _start(command, env) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def soak(kills_training: int, kills_saving: int, *, save_pause: float, seed: int, work: Path) -> dict:
    rng = random.Random(seed)
    out, log = work / "soak", work / "steps.log"
    env = {**os.environ, "SOAK_STEP_LOG": str(log), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    kills, messages = [], []
    modes = ["training"] * kills_training + ["saving"] * kills_saving
    rng.shuffle(modes)
    for mode in modes:
        resume = (out / "checkpoint.safetensors").exists()
        orphans_before = [p.name for p in _temporaries(out)] if out.exists() else []
        child_env = {**env, "SOAK_SAVE_PAUSE": str(save_pause if mode == "saving" else 0)}
        process = _start(_train_command(out, 10**6, 1, resume), child_env)
        started = time.monotonic()
        # wait until it trains (python + torch start-up) and a first checkpoint exists
        while not _logged_steps(log, process.pid) or not (out / "checkpoint.safetensors").exists():
            if process.poll() is not None:
                raise RuntimeError(f"the training process ended early:\n{process.stdout.read()}")
            time.sleep(0.005)
        if mode == "training":
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.0, 0.2))
            while not _temporaries(out, process.pid):
                time.sleep(0.001)
        in_save = bool(_temporaries(out, process.pid))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        printed = process.stdout.read()
        completed = _logged_steps(log, process.pid)
        state = _state_of(out)
        kill = {
            "mode": mode,
            "killed_in_a_save": in_save,
            "seconds_alive": round(time.monotonic() - started, 2),
            "last_completed_step": completed[-1],
            **state,
            "steps_lost": None if state["checkpoint_step"] is None else completed[-1] - state["checkpoint_step"],
            "orphans_left_by_kill": [p.name for p in _temporaries(out, process.pid)],
            "orphans_before_start": orphans_before,
            "start_removed_orphans": "removed" in printed and "temporary file" in printed,
            "start_repaired": "rewrote" in printed,
        }
        kills.append(kill)
        messages.append(printed.strip())
        print(f"{mode:8} kill {len(kills):2}: completed {kill['last_completed_step']}, checkpoint {kill['checkpoint_step']}, "
              f"lost {kill['steps_lost']}, orphans {len(kill['orphans_left_by_kill'])}, disagree {kill.get('disagree')}", flush=True)

    final_step = kills[-1]["checkpoint_step"] + 3
    finish = subprocess.run(_train_command(out, final_step, 1, True), env={**env, "SOAK_SAVE_PAUSE": "0"},
                            capture_output=True, text=True, check=True)
    reference = work / "reference"
    subprocess.run(_train_command(reference, final_step, 10**6, False), env={**env, "SOAK_SAVE_PAUSE": "0"},
                   capture_output=True, text=True, check=True)
    return {
        "kills": kills,
        "final_step": final_step,
        "final_start": finish.stdout.strip().splitlines()[:3],
        "orphans_left_at_end": [p.name for p in _temporaries(out)],
        "final_disagree": _state_of(out)["disagree"],
        "exact": _compare(out / "checkpoint.safetensors", reference / "checkpoint.safetensors"),
    }


def _compare(a: Path, b: Path) -> dict:
    """Tensor-by-tensor comparison of two checkpoints (model, EMA, optimiser, history)."""
    import torch

    from vdmcourse.pretrained import load_checkpoint

    first, second = load_checkpoint(a), load_checkpoint(b)
    keys = sorted(k for k in first.tensors if not k.startswith("rng."))
    differ = [k for k in keys if k not in second.tensors or not torch.equal(first.tensors[k], second.tensors[k])]
    return {"step": [first.step, second.step], "tensors_compared": len(keys), "tensors_differing": differ}


def _summary(result: dict) -> dict:
    kills = result["kills"]
    by_mode = {}
    for mode in ("training", "saving"):
        rows = [k for k in kills if k["mode"] == mode]
        if not rows:
            continue
        by_mode[mode] = {
            "kills": len(rows),
            "killed_in_a_save": sum(k["killed_in_a_save"] for k in rows),
            "steps_lost_max": max(k["steps_lost"] for k in rows),
            "steps_lost_total": sum(k["steps_lost"] for k in rows),
            "corrupt_checkpoints": sum(k["checkpoint_step"] is None for k in rows),
            "orphans_left_by_kills": sum(len(k["orphans_left_by_kill"]) for k in rows),
            "kills_leaving_derived_files_behind": sum(bool(k["disagree"]) for k in rows),
        }
    # every orphan must be gone once the next run has started
    later_orphans = [k["orphans_before_start"] for k in kills[1:]]
    removed = all(k["start_removed_orphans"] for k, before in zip(kills[1:], later_orphans) if before)
    return {"by_mode": by_mode, "next_start_removed_every_orphan": removed}


def write(result: dict, command: str) -> None:
    summary = result["summary"]
    lines = [
        "# Kill -9 soak test of the trainer",
        "",
        f"`{command}` (see the script's docstring): `image-tiny` trained with `--checkpoint-every 1`, killed with "
        "SIGKILL at a random moment of training or in the middle of a save, then `--resume`d; finally resumed "
        f"to step {result['final_step']} and compared with one uninterrupted run.",
        "",
        "| kills | n | killed inside a save | steps lost (max / total) | corrupt checkpoints | orphans left by the kills | kills leaving a derived file behind |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, row in summary["by_mode"].items():
        lines.append(f"| during {mode} | {row['kills']} | {row['killed_in_a_save']} | {row['steps_lost_max']} / {row['steps_lost_total']} | "
                     f"{row['corrupt_checkpoints']} | {row['orphans_left_by_kills']} | {row['kills_leaving_derived_files_behind']} |")
    exact = result["exact"]
    lines += [
        "",
        f"- Every orphan removed by the next start: {summary['next_start_removed_every_orphan']}; "
        f"temporary files left at the end: {len(result['orphans_left_at_end'])}.",
        f"- Derived files (`model.safetensors`, `loss.csv`, `run.json`) disagreeing with the checkpoint at the end: "
        f"{result['final_disagree'] or 'none'} (each `--resume` rewrites the ones a kill left behind).",
        f"- Exact resume: {exact['tensors_compared']} tensors (weights, EMA, AdamW moments, loss history) compared with "
        f"the uninterrupted run at step {exact['step'][0]}; differing: {exact['tensors_differing'] or 'none'}.",
        "",
        "Per kill: `benchmarks/results/soak_kill9.json`.",
    ]
    (RESULTS / "soak_kill9.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "soak_kill9.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills-training", type=int, default=10)
    parser.add_argument("--kills-saving", type=int, default=10)
    parser.add_argument("--save-pause", type=float, default=0.05, help="seconds between writing a temporary file and its rename")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = soak(args.kills_training, args.kills_saving, save_pause=args.save_pause, seed=args.seed, work=Path(work))
    result["summary"] = _summary(result)
    print(json.dumps(result["summary"], indent=2))
    print("exact resume:", result["exact"])
    if not args.no_write:
        write(result, "python benchmarks/soak_kill9.py " + " ".join(sys.argv[1:]))
    ok = (not result["exact"]["tensors_differing"] and not result["orphans_left_at_end"] and not result["final_disagree"]
          and all(row["corrupt_checkpoints"] == 0 and row["steps_lost_max"] <= 1 for row in result["summary"]["by_mode"].values()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
