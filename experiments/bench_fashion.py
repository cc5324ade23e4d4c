"""Cost of the textbook recipe here: training-step throughput of the d2l ResNet-18 on Fashion-MNIST,
at the native 28x28 and at 96x96 (the textbook's resize).

The steps are the engine's own pieces, built from experiments/configs/fashion_mnist_d2l.toml
(``resnet18_d2l`` with Xavier init, batch 256, plain SGD lr 0.05, cross-entropy): the task's
TensorBatchLoader over the 55,000 training images (5,000 held out for validation) with
ImageBatchTransform resizing each batch on the fly (``data.resize`` = 96, or none at 28x28).
One timed step = draw the next batch (index + transform) + forward + loss + backward + SGD step,
as in ``Trainer.train_epoch``. For each size and each of ``--modes`` (in that order, in this one
process), ``--warmup`` steps run untimed first, then ``--steps`` steps are timed one by one with
``time.perf_counter``. Modes: ``fp32`` (the recipe as it is), ``channels_last`` (the recipe with
``channels_last = true``) and ``bf16_channels_last`` (also ``--bf16``: bfloat16 autocast of the
forward pass and loss, as ``msresnet1d train --bf16`` runs its training steps).

Reported per size and mode: seconds of each timed step and of its data part, images per second (images
in the timed steps / their total seconds), and the extrapolated training time of one epoch
(images / images per second, no evaluation) for 55,000 images (this repo's split) and for 60,000
(the textbook trains on all of them); plus the torch thread count, the usable CPUs and the load
average before and after (the machine may be shared: the numbers hold for that load); for each
mode after the first, its images per second as a ratio to the first mode's (the same run). Prints a
summary and writes experiments/results/bench_fashion.json (``--out``; atomically) once every size
and mode is timed; after each, the results so far go to ``<name>.partial.json`` beside it (removed
at the end), so an interrupted run never leaves a partial result under the final name.

Usage:
    python experiments/bench_fashion.py [--sizes 28 96] [--steps 8 3] [--warmup 1] [--threads 1]
        [--modes fp32 channels_last bf16_channels_last]
Without --data-dir, Fashion-MNIST is found as by the engine ($MSRESNET1D_DATA/fashion-mnist,
datasets/fashion-mnist, Debian's package). --data-dir names the folder holding the .gz files (or
its fashion-mnist/) and is the only one read: a folder without both splits' files is an error,
never a reason to time another copy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from msresnet1d.arguments import (THREADS_AS_RECORDED, as_program, output_or_exit, partial_path, path_flag,
                                  positive_int, results_help, script_parser, thread_count, threads_help, write_result)
from msresnet1d.atomic import write_text
from msresnet1d.data.fashion_mnist import split_dir
from msresnet1d.data.parallel import usable_cpus
from msresnet1d.models import count_flops
from msresnet1d.training.config import load_config
from msresnet1d.training.optim import build_loss, build_optimizer
from msresnet1d.training.provenance import load_average, provenance
from msresnet1d.training.run import build_model, seed_everything
from msresnet1d.training.tasks import build_task

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "configs" / "fashion_mnist_d2l.toml"
RESULTS = HERE / "results" / "bench_fashion.json"
EPOCH_IMAGES = {"55000": 55_000, "60000": 60_000}  # this repo's training split; the textbook's
MODES = ("fp32", "channels_last", "bf16_channels_last")


def bench_size(size: int, steps: int, warmup: int, data_dir: str | None, mode: str = "fp32") -> dict[str, Any]:
    """Time ``steps`` training steps at ``size`` x ``size`` in ``mode`` (:data:`MODES`) after
    ``warmup`` untimed ones."""
    bf16 = mode == "bf16_channels_last"
    overrides: dict[str, Any] = {"data.resize": None if size == 28 else size, "channels_last": mode != "fp32",
                                 "bf16": bf16}
    if data_dir:
        overrides["data.data_dir"] = data_dir
    cfg = load_config(RECIPE, overrides)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    if warmup + steps > len(task.train):
        raise SystemExit(f"error: warm-up + steps = {warmup + steps} exceeds one epoch ({len(task.train)} batches)")
    model = build_model(cfg, task)
    optimizer = build_optimizer(model, cfg)
    loss_fn = build_loss(cfg, task.train_labels, len(task.class_names))
    flops = count_flops(model, (1, 1, size, size))
    model.train()
    batches = iter(task.train)
    load_before = load_average()
    step_s, data_s, images = [], [], 0
    for step in range(warmup + steps):
        start = time.perf_counter()
        x, y = next(batches)
        loaded = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        if step >= warmup:
            step_s.append(time.perf_counter() - start)
            data_s.append(loaded - start)
            images += len(y)
    per_second = images / sum(step_s)
    return {
        "image_size": size, "mode": mode, "batch_size": cfg.batch_size, "forward_flops_per_image": flops,
        "warmup_steps": warmup, "steps_measured": steps, "images_measured": images,
        "seconds_measured": round(sum(step_s), 3), "step_seconds": [round(s, 3) for s in step_s],
        "data_seconds": [round(s, 4) for s in data_s], "images_per_second": round(per_second, 2),
        "epoch_seconds": {key: round(n / per_second, 1) for key, n in EPOCH_IMAGES.items()},
        "steps_per_epoch": {key: -(-n // cfg.batch_size) for key, n in EPOCH_IMAGES.items()},
        "load_average_before": load_before, "load_average_after": load_average(),
    }


def fashion_folder(data_dir: str) -> Path | None:
    """The folder given (``--data-dir``), or its ``fashion-mnist/``, if it holds the files of both
    splits; else None (another copy elsewhere does not count)."""
    for folder in (Path(data_dir), Path(data_dir) / "fashion-mnist"):
        if all(split_dir(split, folder) == folder for split in ("train", "test")):
            return folder
    return None


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[28, 96], help="image sides in pixels")
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[8, 3], help="timed steps, one count per size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each measurement")
    parser.add_argument("--threads", type=thread_count, default=1, help=threads_help(1, THREADS_AS_RECORDED))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["fp32"],
                        help="how the steps run, each timed in turn (default fp32, the recipe as it is)")
    parser.add_argument("--data-dir", type=path_flag,
                        help="folder holding the Fashion-MNIST .gz files, or its fashion-mnist/ (the only folder read "
                             "when given)")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    output_or_exit(parser, args.out, partial=True)
    if len(args.steps) != len(args.sizes) or min(args.steps) < 1 or args.warmup < 0:
        parser.error("give one --steps count (>= 1) per --sizes entry, and --warmup >= 0")
    if len(set(args.modes)) != len(args.modes):
        parser.error(f"--modes: each mode once, got {args.modes}")
    if args.data_dir:
        folder = fashion_folder(args.data_dir)
        if folder is None:
            parser.error(f"--data-dir {args.data_dir}: no Fashion-MNIST there (the train-* and t10k-* .gz files of both "
                         "splits, in it or in its fashion-mnist/); a --data-dir given is the only folder read")
        args.data_dir = str(folder)

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_config(RECIPE)
    report: dict[str, Any] = {
        "recipe": str(RECIPE.relative_to(HERE.parent)), "model": recipe.model, "optimizer": recipe.optimizer,
        "lr": recipe.lr, "momentum": recipe.momentum, "torch_threads": torch.get_num_threads(),
        "cpus_usable": usable_cpus(), "torch": torch.__version__, "sizes": {},
    }
    for size, steps in zip(args.sizes, args.steps):
        for mode in args.modes:
            result = bench_size(size, steps, args.warmup, args.data_dir, mode)
            first = report["sizes"].setdefault(str(size), {}).setdefault(args.modes[0], result)
            result["speed_vs_first_mode"] = round(result["images_per_second"] / first["images_per_second"], 3)
            report["sizes"][str(size)][mode] = result
            read = args.data_dir or split_dir("train")  # the folder given, else the one the task found
            report["provenance"] = provenance(__file__, argv, started, [read] if read else [])
            write_text(partial_path(args.out), json.dumps(report, indent=2) + "\n")
            _print_result(result, steps, report["torch_threads"])
    write_result(args.out, json.dumps(report, indent=2) + "\n")
    partial_path(args.out).unlink(missing_ok=True)
    return report


def _print_result(result: dict[str, Any], steps: int, threads: int) -> None:
    size, epoch = result["image_size"], result["epoch_seconds"]
    print(f"{size}x{size} {result['mode']}: {result['images_per_second']:.1f} img/s over {steps} steps of "
          f"{result['batch_size']} (x{result['speed_vs_first_mode']} the first mode's; step "
          f"{min(result['step_seconds']):.2f}-{max(result['step_seconds']):.2f} s, data "
          f"{sum(result['data_seconds']) / sum(result['step_seconds']):.2%}); epoch of 55,000 images "
          f"{epoch['55000'] / 60:.1f} min, of 60,000 {epoch['60000'] / 60:.1f} min; "
          f"{threads} thread(s), load average {result['load_average_before']} -> {result['load_average_after']}")


if __name__ == "__main__":
    with as_program():
        main()
