"""Training data, measured: five data experiments at equal compute from the same seed.

    python benchmarks/bench_data.py run [--only static,speed] [--steps 600]   # train + evaluate missing arms
    python benchmarks/bench_data.py report                                    # tables and plots from the cache

Every arm trains :func:`vdmcourse.datalab.tiny_model` (a 71 k-parameter (2+1)-D U-Net on
24x24, 8-frame, one-digit clips) for the same ``--steps`` at batch 8 from seed 0, and
changes only its batch source (:mod:`vdmcourse.datalab`):

1. ``static``  -- 0 %, 20 %, 50 % near-static clips; then the 50 % mix filtered by the motion
   score (a StaticClipFilter fitted on 512 clips of the training stream to keep the 45 % most moving). Measured: dynamic
   degree and motion score of 64 samples.
2. ``speed``   -- speeds in a narrow range (1.5-2.5 px/frame) or a broad one (0.5-4.5), each
   clip labelled with its rounded speed; samples (half of ``--samples`` per request) asked for 1, 2, 3, 4 px/frame. Measured:
   motion score against the real clips' at each requested speed.
3. ``stride``  -- one frame stride (2) or strides 1, 2, 3 with a stride label (source clips
   move 1 px/frame); samples asked for strides 1, 2, 3. Measured: motion per frame.
4. ``labels``  -- the stand-in for caption quality:
   clean digit labels or 30 % of them wrong. Measured: share of samples the course's
   evaluator classifies as the asked-for digit. Section 4b redoes it with captions (lesson 09's
   text-to-video model, 30 % of descriptive captions replaced by another clip's): trained by
   the presets ``text-pooled-cpu`` / ``text-pooled-noisy-cpu`` (and the cross-attention pair), measured by
   ``benchmarks/bench_captions.py textpath``, and read here from ``captions.json``.
5. ``digits``  -- 5, 50 or 450 distinct training digits per class (50, 500, 4,500 digits: the
   whole shipped training pool). Measured: the denoising loss on clips of training and of
   unseen test digits (generalisation) and the nearest-neighbour distance of samples'
   digits to the training digits against that of unseen test digits (memorisation).

2b/3b. ``i2v``   -- experiments 2 and 3 again, through lesson 10's image-to-video conditioning
   (SVD's motion bucket and fps) instead of a label: :func:`vdmcourse.datalab.tiny_i2v_model`
   trained by ``image_to_video_loss`` on :func:`~vdmcourse.datalab.i2v_batches` with a narrow
   speed range (6-9 px/s) or a broad one (3-15 px/s) at one frame stride (fps 6), and the broad
   range at strides 1, 2, 3 (fps 12, 6, 4), same steps and seed. Each is sampled through
   ``ImageToVideoPipeline`` from ``--images`` held-out first frames (test digits) at buckets
   48-240 (fps 6) and at fps 4, 6, 12 (bucket 128), without and with knob guidance (W = 0, 3).
   Measured: the tracked digit's px/frame; means and slopes with bootstrap intervals over images.

Each finished arm is cached as ``benchmarks/results/data_runs/<arm>.json``: a rerun skips
it, and an interrupted training resumes from its checkpoint (in ``--work``). Run with one
torch thread (``OMP_NUM_THREADS=1``), at most one such job per core. Results: ``benchmarks/results/data.md`` / ``.json``
and ``data_*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from vdmcourse import datalab as lab
from vdmcourse.data import digit_pool
from vdmcourse.data.conditions import bucket_speed
from vdmcourse.metrics.features import load_evaluator
from vdmcourse.pretrained import atomic_path
from vdmcourse.train import machine_info

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "data_runs"
SPEEDS = (1, 2, 3, 4)
STRIDES = (1, 2, 3)
SOURCE = dataclasses.replace(lab.SMALL, speed=(1.0, 1.0))  # stride experiment: 1 px per source frame


def _labels(n: int, aux: int | None = None) -> torch.Tensor:
    digits = torch.arange(n) % 10
    return digits[:, None] if aux is None else torch.stack([digits, torch.full((n,), lab.AUX + aux)], 1)


# --- the arms: name -> (experiment, batch source factory, evaluation) --------------------------


def eval_static(model, batches, n):
    stats = lab.motion_stats(lab.generate(model, _labels(n)))
    return {**stats, "filter_threshold": batches.filter.threshold if getattr(batches, "filter", None) else None}


def eval_speed(model, batches, n):
    n = n // 2  # per requested speed
    out = {}
    for speed in SPEEDS:
        video = lab.generate(model, _labels(n, speed))
        real = lab.draw_clips(n, dataclasses.replace(lab.SMALL, speed=(float(speed), float(speed))), torch.Generator().manual_seed(speed))
        out[str(speed)] = {"samples_px": lab.motion_stats(video)["motion_px"], "real_px": lab.motion_stats(real.video)["motion_px"]}
    return out


def eval_stride(model, batches, n):
    from vdmcourse.data.curation import stride_clips

    n = n // 2  # per requested stride
    out = {}
    for stride in STRIDES:
        video = lab.generate(model, _labels(n, stride))
        real = stride_clips(n, SOURCE, stride, generator=torch.Generator().manual_seed(stride))
        out[str(stride)] = {"samples_px": lab.motion_stats(video)["motion_px"], "real_px": lab.motion_stats(real.video)["motion_px"]}
    return out


def eval_labels(model, batches, n):
    labels = _labels(n)
    classes = lab.classify_clips(lab.generate(model, labels), load_evaluator())
    real = lab.draw_clips(n, dataclasses.replace(lab.SMALL, split="test"), torch.Generator().manual_seed(3))
    real_classes = lab.classify_clips(real.video, load_evaluator())
    return {"label_accuracy": (classes == labels[:, 0]).float().mean().item(),
            "evaluator_on_real": (real_classes == real.labels[:, 0]).float().mean().item()}


def eval_digits(model, batches, n, per_class):
    train_images, train_labels = lab.limited_digits(per_class)
    test_images, test_labels = digit_pool(dataclasses.replace(lab.SMALL, split="test"))
    generator = torch.Generator().manual_seed(5)
    seen = lab.draw_clips(n, lab.SMALL, generator, pool=(train_images, train_labels))
    unseen = lab.draw_clips(n, lab.SMALL, generator, pool=(test_images, test_labels))
    samples = lab.generate(model, _labels(n))
    return {
        "loss_train_digits": lab.denoising_loss(model, seen),
        "loss_test_digits": lab.denoising_loss(model, unseen),
        **lab.memorisation(samples, train_images, test_images[:200]),
    }


ARMS = {
    "static 0%": ("static", lambda: lab.static_mix(0.0), eval_static),
    "static 20%": ("static", lambda: lab.static_mix(0.2), eval_static),
    "static 50%": ("static", lambda: lab.static_mix(0.5), eval_static),
    "static 50%, filtered": ("static", lambda: lab.static_mix(0.5, keep=0.45), eval_static),
    "speed narrow 1.5-2.5": ("speed", lambda: lab.speed_labelled((1.5, 2.5)), eval_speed),
    "speed broad 0.5-4.5": ("speed", lambda: lab.speed_labelled((0.5, 4.5)), eval_speed),
    "one stride (2)": ("stride", lambda: lab.stride_labelled((2,), config=SOURCE), eval_stride),
    "strides 1,2,3 + label": ("stride", lambda: lab.stride_labelled(STRIDES, config=SOURCE), eval_stride),
    "labels clean": ("labels", lambda: lab.noisy_labels(0.0), eval_labels),
    "labels 30% wrong": ("labels", lambda: lab.noisy_labels(0.3), eval_labels),
    "digits 5/class": ("digits", lambda: lab.pool_batches(lab.limited_digits(5)), lambda m, b, n: eval_digits(m, b, n, 5)),
    "digits 50/class": ("digits", lambda: lab.pool_batches(lab.limited_digits(50)), lambda m, b, n: eval_digits(m, b, n, 50)),
    "digits 450/class": ("digits", lambda: lab.pool_batches(lab.limited_digits(450)), lambda m, b, n: eval_digits(m, b, n, 450)),
}

# --- experiments 2 and 3 through the image-to-video knobs ---------------------------------------

I2V_BUCKETS = (48, 96, 112, 128, 192, 240)  # at fps 6; the narrow arm's clips span buckets 84-143 (5-95 %: 95-136)
I2V_FPS = (4, 6, 12)  # at bucket 128
I2V_BUCKET_FOR_FPS = 128
NARROW_RANGE = (95, 136)  # 5-95 % of the narrow arm's training buckets (its "trained" entry measures them again)
KNOB_GUIDANCE = (0.0, 3.0)


def i2v_requests() -> list[tuple[float, int]]:
    return [(6, b) for b in I2V_BUCKETS] + [(fps, I2V_BUCKET_FOR_FPS) for fps in I2V_FPS if fps != 6]


def held_out_images(n: int) -> torch.Tensor:
    """First frames of held-out clips (test digits): ``(n, 1, 24, 24)``."""
    return lab.draw_clips(n, dataclasses.replace(lab.SMALL, split="test"), torch.Generator().manual_seed(7)).video[:, 0]


def trained_buckets(batches, clips: int = 2000) -> dict:
    """The motion buckets and fps values an arm's batch source draws (its training range)."""
    generator = torch.Generator().manual_seed(0)
    drawn = [batches(generator) for _ in range(clips // 8)]
    buckets = torch.cat([b["motion_bucket"] for b in drawn])
    p5, p95 = torch.quantile(buckets, torch.tensor([0.05, 0.95])).tolist()
    fps = sorted(set(torch.cat([b["fps"] for b in drawn]).tolist()))
    return {"bucket_min": buckets.min().item(), "bucket_p5": p5, "bucket_p95": p95, "bucket_max": buckets.max().item(), "fps": fps}


def eval_i2v(model, batches, n):
    images = held_out_images(n)
    out = {"requests": i2v_requests(), "images": n, "trained": trained_buckets(batches), "sampler": "euler", "sampling_steps": 10}
    for w in KNOB_GUIDANCE:
        out[f"W{w:g}"] = lab.i2v_speeds(model, images, out["requests"], knob_guidance_scale=w).tolist()  # (N, K) px/frame
    return out


I2V_ARMS = {
    "i2v narrow 6-9 px/s, fps 6": ("i2v", lambda: lab.i2v_batches((0.5, 0.75), (2,)), eval_i2v),
    "i2v broad 3-15 px/s, fps 6": ("i2v", lambda: lab.i2v_batches((0.25, 1.25), (2,)), eval_i2v),
    "i2v broad 3-15 px/s, fps 4/6/12": ("i2v", lambda: lab.i2v_batches((0.25, 1.25), (1, 2, 3)), eval_i2v),
}
ARMS.update(I2V_ARMS)
EXPERIMENTS = ("static", "speed", "stride", "labels", "digits", "i2v")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run(args) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else set(EXPERIMENTS)
    for name, (experiment, factory, evaluate) in ARMS.items():
        cached = RUNS / f"{slug(name)}.json"
        if experiment not in only or (args.arm and args.arm not in slug(name)):
            continue
        steps = args.i2v_steps if experiment == "i2v" else args.steps
        if cached.is_file() and json.loads(cached.read_text()).get("steps") == steps:
            print(f"{name}: cached", flush=True)
            continue
        started = time.process_time()
        batches = factory()
        i2v = {"model": lab.tiny_i2v_model, "loss": lab.i2v_loss} if experiment == "i2v" else {}
        model, info = lab.train_arm(batches, steps, out_dir=Path(args.work) / slug(name), **i2v)
        eval_cpu = time.process_time()
        torch.manual_seed(0)
        result = evaluate(model, batches, args.images if i2v else args.samples)
        entry = {"arm": name, "experiment": experiment, "steps": steps, "batch_size": 8, "seed": 0, "samples": args.samples,
                 "train": info, "eval_cpu_s": time.process_time() - eval_cpu, "total_cpu_s": time.process_time() - started,
                 "result": result, "machine": machine_info(), "load_average": os.getloadavg()}
        with atomic_path(cached) as tmp:
            tmp.write_text(json.dumps(entry, indent=2))
        print(f"{name}: {json.dumps(result)} ({entry['total_cpu_s']:.0f} CPU s)", flush=True)


# --- report -------------------------------------------------------------------------------------


def load_runs() -> dict:
    runs = {}
    for name in ARMS:
        path = RUNS / f"{slug(name)}.json"
        if path.is_file():
            runs[name] = json.loads(path.read_text())
    return runs


def tables(runs: dict) -> list[str]:
    lines = ["# Training data, measured (bench_data.py)", ""]
    if not runs:
        return lines + ["(no arm has run yet)"]
    first = next(iter(runs.values()))
    lines += [
        f"Every arm of sections 1-5: `vdmcourse.datalab.tiny_model` (71 k parameters), {first['steps']} steps at batch 8 from seed 0 "
        f"(24x24, 8-frame, one-digit clips); {first['samples']} samples per measurement (Euler, 10 steps, guidance 2). "
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_data.py run --steps {first['steps']}`.",
        "",
    ]

    def arms(experiment):
        return [(name, entry) for name, entry in runs.items() if entry["experiment"] == experiment]

    def cost(entry):
        return f"{entry['train']['cpu_s'] / 60:.1f}"

    if arms("static"):
        lines += ["## 1. Static clips in the data", "",
                  "| training data | dynamic degree | motion px/frame | static samples | train CPU min |", "|---|---|---|---|---|"]
        for name, e in arms("static"):
            r = e["result"]
            lines.append(f"| {name} | {r['dynamic_degree']:.2f} | {r['motion_px']:.2f} | {r['static_share']:.2f} | {cost(e)} |")
        lines += ["", "Static sample: motion score below 0.5 px/frame. Filter: `StaticClipFilter` fitted on 512 training clips to keep the 45 % most moving (just under the moving half).", ""]
    for experiment, title, key, unit in (("speed", "2. Motion diversity: requested speed", SPEEDS, "px/frame"),
                                         ("stride", "3. Frame rate: requested stride", STRIDES, "stride")):
        if arms(experiment):
            head = " | ".join(f"{unit} {k}" for k in key)
            lines += [f"## {title}", "", "Motion score of the samples (px/frame), real clips in brackets.", "",
                      f"| training data | {head} | train CPU min |", "|---" * (len(key) + 2) + "|"]
            for name, e in arms(experiment):
                cells = " | ".join(f"{e['result'][str(k)]['samples_px']:.2f} ({e['result'][str(k)]['real_px']:.2f})" for k in key)
                lines.append(f"| {name} | {cells} | {cost(e)} |")
            lines.append("")
    if arms("labels"):
        lines += ["## 4. Label quality (stand-in for caption quality)", "",
                  "| training labels | samples showing the asked digit | evaluator on real clips | train CPU min |", "|---|---|---|---|"]
        for name, e in arms("labels"):
            r = e["result"]
            lines.append(f"| {name} | {r['label_accuracy']:.2f} | {r['evaluator_on_real']:.2f} | {cost(e)} |")
        lines += ["", "Wrong digit labels stand in for wrong captions here; section 4b repeats the experiment with lesson 09's captions.", ""]
    lines += _caption_quality()
    if arms("digits"):
        lines += ["## 5. Data quantity: distinct training digits", "",
                  "| training digits | loss, train digits | loss, test digits | gap | NN distance samples -> train | test digits -> train | train CPU min |",
                  "|---|---|---|---|---|---|---|"]
        for name, e in arms("digits"):
            r = e["result"]
            lines.append(f"| {name} | {r['loss_train_digits']:.4f} | {r['loss_test_digits']:.4f} | "
                         f"{r['loss_test_digits'] - r['loss_train_digits']:+.4f} | {r['samples_to_train']:.3f} | {r['test_to_train']:.3f} | {cost(e)} |")
        lines += ["", f"Loss: flow loss at 8 fixed noise levels with fixed noise on {first['samples']} clips. NN distance: median RMS "
                  "(intensity) to the nearest training digit, 1-px shifts forgiven.", ""]
    lines += i2v_tables(runs)
    total = sum(e["total_cpu_s"] for e in runs.values()) / 60
    lines += [f"Total CPU: {total:.1f} min over {len(runs)} arms. Machine: {first['machine']['cpu']}, "
              f"{first['machine']['torch_threads']} thread(s).", ""]
    return lines


def i2v_columns(result: dict, w: float) -> dict:
    """Per request ``(fps, bucket)`` of an i2v arm at knob guidance ``w``: the per-image px/frame ``(N,)``."""
    speeds = torch.tensor(result[f"W{w:g}"], dtype=torch.float64)  # (N, K)
    return {tuple(request): speeds[:, k] for k, request in enumerate(result["requests"])}


def i2v_summary(result: dict, w: float) -> dict:
    """Experiment 2 (buckets at fps 6, in px/s) and 3 (fps at one bucket, in px/frame) of one arm
    at knob guidance ``w``: means and slopes, each with its bootstrap interval over the images."""
    columns = i2v_columns(result, w)
    per_s = {b: columns[(6, b)] * 6 for b in I2V_BUCKETS}  # px/s = px/frame x fps
    per_frame = {fps: columns[(fps, I2V_BUCKET_FOR_FPS)] for fps in I2V_FPS}
    inside = [b for b in I2V_BUCKETS if NARROW_RANGE[0] <= b <= NARROW_RANGE[1]]
    asked_s = {b: bucket_speed(b).item() for b in I2V_BUCKETS}
    asked_frame = {fps: bucket_speed(I2V_BUCKET_FOR_FPS).item() / fps for fps in I2V_FPS}
    out = {
        "bucket_px_s": {b: lab.mean_interval(v) for b, v in per_s.items()},
        "fps_px_frame": {fps: lab.mean_interval(v) for fps, v in per_frame.items()},
        "slope_all": lab.knob_slope(torch.stack(list(per_s.values()), 1), list(asked_s.values())),
        "slope_fps": lab.knob_slope(torch.stack(list(per_frame.values()), 1), list(asked_frame.values())),
        "asked_px_s": asked_s, "asked_px_frame": asked_frame,
    }
    if len(inside) >= 2:
        out["slope_inside"] = lab.knob_slope(torch.stack([per_s[b] for b in inside], 1), [asked_s[b] for b in inside])
    return out


def i2v_tables(runs: dict) -> list[str]:
    arms = [(name, e) for name, e in runs.items() if e["experiment"] == "i2v"]
    if not arms:
        return []
    first = arms[0][1]
    r0 = first["result"]

    def cell(values):
        mean, low, high = values
        return f"{mean:.2f} [{low:.2f}, {high:.2f}]"

    lines = [
        "## 2b. Motion diversity through the motion bucket (image-to-video)", "",
        f"Each arm: `vdmcourse.datalab.tiny_i2v_model` ({sum(p.numel() for p in lab.tiny_i2v_model().parameters()) / 1e3:.0f} k parameters; "
        f"the first frame on channels, the evaluator's image embedding, SVD's [fps - 1, motion bucket, noise_aug] added to the time "
        f"embedding, condition_gain {lab.I2V_GAIN:g}) trained by `image_to_video_loss` (t_mean 0.5) on `datalab.i2v_batches` (groups of 4 "
        f"clips share a first frame) for {first['steps']} steps at batch 8 from seed 0. Sampled through `ImageToVideoPipeline` "
        f"({r0['sampler']}, {r0['sampling_steps']} steps, SVD's frame-wise guidance 1 -> 3) from the first frames of {r0['images']} "
        "held-out clips (test digits), the same images and noise for every request; knob guidance W = 0 (SVD's sampling) and W = 3 "
        "(`knob_guidance_scale`: away from the neutral fps 6, bucket 127). Measured: the tracked digit's displacement per frame; "
        "mean over images [basic bootstrap 95 % interval over images]. "
        "Command: `/work/bin/heavy python benchmarks/bench_data.py run --only i2v --i2v-steps "
        f"{first['steps']} --images {r0['images']}` (one job per arm, `--arm`).", "",
        "Training range of each arm (motion buckets of 2,000 of its training clips, min / 5 % / 95 % / max; fps):", "",
    ]
    for name, e in arms:
        t = e["result"]["trained"]
        fps = ", ".join(f"{f:g}" for f in t["fps"])
        lines.append(f"- {name}: buckets {t['bucket_min']:.0f} / {t['bucket_p5']:.0f} / {t['bucket_p95']:.0f} / {t['bucket_max']:.0f}; fps {fps}; "
                     f"{e['train']['steps']} steps, {e['train']['cpu_s']:.0f} CPU s training, {e['eval_cpu_s']:.0f} CPU s evaluation")
    asked = " | ".join(f"{bucket_speed(b).item():.1f}" for b in I2V_BUCKETS)
    inside = ", ".join(str(b) for b in I2V_BUCKETS if NARROW_RANGE[0] <= b <= NARROW_RANGE[1])
    lines += [
        "", f"Speed at fps 6 in px/s (tracked px/frame x 6) for each requested bucket; 'inside' = buckets {inside} (within the narrow "
        "arm's 5-95 % range). Slope: least-squares slope of measured on asked px/s over images (1: the bucket is followed "
        "exactly; 0: ignored), inside the narrow range and over all buckets.", "",
        "| training data | W | " + " | ".join(f"bucket {b}" for b in I2V_BUCKETS) + " | slope inside | slope all |",
        "|---" * (len(I2V_BUCKETS) + 4) + "|",
        "| *asked px/s* | | " + asked + " | 1 | 1 |",
    ]
    summaries = {}
    for name, e in arms:
        for w in KNOB_GUIDANCE:
            s = summaries[name, w] = i2v_summary(e["result"], w)
            cells = " | ".join(cell(s["bucket_px_s"][b]) for b in I2V_BUCKETS)
            lines.append(f"| {name} | {w:g} | {cells} | {cell(s['slope_inside'])} | {cell(s['slope_all'])} |")
    asked = " | ".join(f"{bucket_speed(I2V_BUCKET_FOR_FPS).item() / fps:.2f}" for fps in I2V_FPS)
    lines += [
        "", "## 3b. Frame rate through fps conditioning (image-to-video)", "",
        f"The same arms asked for fps 4, 6 and 12 at bucket {I2V_BUCKET_FOR_FPS} ({bucket_speed(I2V_BUCKET_FOR_FPS).item():.1f} px/s): "
        "tracked px/frame [95 % interval]. The one-stride arms saw fps 6 only. Slope: measured on asked px/frame over the three fps; "
        "ratio: fps 4 over fps 12 (the data: 3).", "",
        "| training data | W | " + " | ".join(f"fps {f}" for f in I2V_FPS) + " | slope | ratio 4/12 |", "|---" * (len(I2V_FPS) + 4) + "|",
        "| *asked px/frame* | | " + asked + " | 1 | 3.00 |",
    ]
    for name, e in arms:
        for w in KNOB_GUIDANCE:
            s = summaries[name, w]
            cells = " | ".join(cell(s["fps_px_frame"][f]) for f in I2V_FPS)
            ratio = s["fps_px_frame"][4][0] / s["fps_px_frame"][12][0]
            lines.append(f"| {name} | {w:g} | {cells} | {cell(s['slope_fps'])} | {ratio:.2f} |")
    return lines + ["", "Plot: `data_i2v.png`.", ""]


def i2v_plot(runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [(name, e) for name, e in runs.items() if e["experiment"] == "i2v"]
    if not arms:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    asked_s = [bucket_speed(b).item() for b in I2V_BUCKETS]
    axes[0].axvspan(bucket_speed(NARROW_RANGE[0]).item(), bucket_speed(NARROW_RANGE[1]).item(), color="0.9", label="narrow range")
    axes[0].plot(asked_s, asked_s, "k--", label="asked")
    asked_frame = [bucket_speed(I2V_BUCKET_FOR_FPS).item() / f for f in I2V_FPS]
    axes[1].plot(I2V_FPS, asked_frame, "k--", label="asked")
    for i, (name, e) in enumerate(arms):
        for w, style in zip(KNOB_GUIDANCE, ("-", ":")):
            s = i2v_summary(e["result"], w)
            for axis, x, values in ((axes[0], asked_s, [s["bucket_px_s"][b] for b in I2V_BUCKETS]),
                                    (axes[1], list(I2V_FPS), [s["fps_px_frame"][f] for f in I2V_FPS])):
                mean = [v[0] for v in values]
                err = [[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]]
                axis.errorbar(x, mean, yerr=err, fmt="o" + style, color=f"C{i}", capsize=2, label=f"{name}, W={w:g}")
    axes[0].set(xlabel="asked speed (px/s, from the bucket)", ylabel="measured px/s", title="2b. motion bucket at fps 6")
    axes[1].set(xlabel="asked fps", ylabel="measured px/frame", title=f"3b. fps at bucket {I2V_BUCKET_FOR_FPS}")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / "data_i2v.png", dpi=90)


def _caption_quality() -> list[str]:
    """Experiment 4 redone with the caption pipeline (lesson 09's models): read from
    ``captions.json``, where ``python benchmarks/bench_captions.py textpath`` measures a text
    path trained on clean descriptive captions (``text-pooled-cpu`` / ``text-cross-cpu``) and
    again with 30 % of them replaced by another clip's (``text-pooled-noisy-cpu`` /
    ``text-cross-noisy-cpu``), at the same steps (equal compute), trained by ``python -m vdmcourse train``."""
    path = RESULTS / "captions.json"
    textpath = json.loads(path.read_text()).get("textpath", {}) if path.is_file() else {}
    pairs = [c for c in textpath.get("comparisons", []) if c["question"].startswith("30% wrong captions")]
    if not pairs:
        return []
    rows = textpath["rows"]
    lines = ["## 4b. Caption quality, with captions", "",
             "Lesson 09's text-to-video U-Net (from video-ctx-cpu, text through the pooled path or cross-attention), trained at batch 8 "
             "from seed 0 on ground-truth descriptive captions, text only, and again at the same steps with 30 % of its captions "
             f"replaced by another clip's. Prompt following on {textpath['prompts']} held-out descriptive prompts, share (count) "
             "[Wilson 95 % interval] (`benchmarks/bench_captions.py textpath`; table also in captions.md).", "",
             "| text path | steps | training captions | digit | direction | speed class | bounce walls | overall | alignment |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pair in pairs:
        for label, r in (("clean", rows[pair["a"]]), ("30% wrong", rows[pair["b"]])):
            cells = " | ".join(f"{r[k]:.3f} ({r['counts'][k]}) [{r['intervals'][k][0]:.2f}, {r['intervals'][k][1]:.2f}]"
                               for k in ("digit", "direction", "speed", "bounce_walls"))
            align = f"{r['alignment']:.3f} ± {r['alignment_sem']:.3f}" if "alignment" in r else ""
            lines.append(f"| {rows[pair['a']]['preset']} | {pair['steps']} | {label} | {cells} | {r['overall']:.3f} | {align} |")
    lines.append("")
    for pair in pairs:
        d = pair["digit"]
        lines.append(f"Digit, 30 % wrong minus clean on the same prompts ({rows[pair['a']]['preset']}, {pair['steps']} steps): "
                     f"{d['difference']:+.3f} [{d['low']:+.2f}, {d['high']:+.2f}] (normal 95 % interval).")
    return lines + [""]


def plots(runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    static = [(n, e["result"]) for n, e in runs.items() if e["experiment"] == "static"]
    if static:
        axes[0].bar(range(len(static)), [r["dynamic_degree"] for _, r in static], color="tab:blue")
        axes[0].set_xticks(range(len(static)), [n.replace("static ", "") for n, _ in static], fontsize=7)
        axes[0].set_title("1. dynamic degree of samples")
    for axis, experiment, key, title in ((axes[1], "speed", SPEEDS, "2. speed asked -> measured"),
                                          (axes[2], "stride", STRIDES, "3. stride asked -> measured")):
        arms = [(n, e["result"]) for n, e in runs.items() if e["experiment"] == experiment]
        for i, (name, r) in enumerate(arms):
            axis.plot(key, [r[str(k)]["samples_px"] for k in key], marker="o", label=name)
            if i == 0:
                axis.plot(key, [r[str(k)]["real_px"] for k in key], "k--", label="real clips")
        axis.set_title(title)
        axis.set_ylabel("motion px/frame")
        if arms:
            axis.legend(fontsize=7)
    digits = [(n, e["result"]) for n, e in runs.items() if e["experiment"] == "digits"]
    if digits:
        x = range(len(digits))
        axes[3].plot(x, [r["samples_to_train"] for _, r in digits], marker="o", label="samples -> train")
        axes[3].plot(x, [r["test_to_train"] for _, r in digits], marker="s", label="test digits -> train")
        axes[3].set_xticks(list(x), [n.replace("digits ", "") for n, _ in digits], fontsize=7)
        axes[3].set_title("5. nearest-neighbour distance")
        axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "data_experiments.png", dpi=90)


def report(_args=None) -> None:
    runs = load_runs()
    with atomic_path(RESULTS / "data.json") as tmp:
        tmp.write_text(json.dumps(runs, indent=2))
    with atomic_path(RESULTS / "data.md") as tmp:
        tmp.write_text("\n".join(tables(runs)))
    if runs:
        plots(runs)
        i2v_plot(runs)
    print("\n".join(tables(runs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--only", default="", help=f"comma-separated experiments of {EXPERIMENTS}")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--i2v-steps", type=int, default=1500, help="training steps of the i2v arms")
    parser.add_argument("--images", type=int, default=24, help="held-out first frames per request (i2v arms)")
    parser.add_argument("--arm", default="", help="only arms whose name (slugged) contains this")
    parser.add_argument("--work", default="/tmp/vdm_bench_data", help="where arms checkpoint (resume after a kill)")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    report()


if __name__ == "__main__":
    main()
