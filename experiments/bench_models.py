"""Benchmark of the models: size, FLOPs, training and inference throughput, peak memory and efficiency
against this machine's float32 matmul; fp32 vs bf16 autocast vs torch.compile; the speed targets of
issue 7; and why 1D convolutions are slow on this CPU.

Everything runs on the CPU in spawned worker processes, each with a fixed torch thread count and
OpenMP environment. Sections (in the order they run):

* threads: the default beat model's training step and inference at batch 256 with 1 thread, 2
  threads, and 2 threads with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of
  spinning), interleaved across the three processes. ``--threads auto`` (default) runs the
  rest with the fastest setting (lowest geometric mean of its training and inference times).
* conv layers: every convolution of msresnet1d_beat on its training input (batch 256, 126 samples
  at 180 Hz), forward + backward, as nn.Conv1d (oneDNN), as nn.Conv2d with a (1, k) kernel, the
  same in channels_last, with oneDNN disabled, and under bf16 autocast; plus the oneDNN
  implementation each one runs (from oneDNN's verbose log) and an operator profile of the step.
* beat variants: the whole msresnet1d_beat (with 8 RR features) training step at batch 256 and
  inference at batch 1024 on its 126-sample input, run as-is (fp32), in the package's
  channels-last mode (``model.set_channels_last()``: every 1D layer computed by its (1, k) 2D
  kernel on (N, C, 1, L) in channels_last), with oneDNN off, under bf16 autocast, and through
  torch.compile.
* late reference: msresnet1d_late (three towers, kernels 3/5/7) at length 512, batch 256, to
  compare with a public 3-tower model's ~400 training / 1,800 inference samples/s here.
* targets: one real training epoch of the main job's model (experiments/configs/mitdb_beats.toml:
  msresnet1d_beat on beat windows with the template channel and its RR features;
  ``--set KEY=VALUE`` changes that config, e.g. its model options or ``data.fs``) over DS1 (the
  engine's step, that config's AdamW, batch 256, one-cycle) and inference over DS2 at batch 1024
  as the package infers (evaluate, predict: BatchNorm folded into the convolutions by
  ``fuse_batchnorm``), against issue 7's 20 s and 3 s; the variants
  (as above) interleaved batch by batch; then DS2 inference of the exported ONNX file under
  onnxruntime, and what bf16 autocast changes in the first variant's trained model's DS2
  predictions (beats that change class, probability difference, accuracies).
  ``--only-targets`` runs the thread study and this section only.
* grid: for each preset, length and batch: parameters, forward FLOPs, training and inference
  samples/s, peak memory, achieved GFLOP/s as a fraction of matmul GFLOP/s; and fp32 vs bf16
  (vs torch.compile with ``--modes fp32,bf16,compile``) for the cells named by ``--mode-cells``.

Conventions and units:

* Lengths in samples. Beat: 360 (1 s at 360 Hz). Rhythm: 10 s and 30 s at ``--rhythm-fs``
  (default 150 Hz, the rhythm task's rate): 1,500 and 4,500 samples. Inputs have 1 channel.
* Training step: zero_grad + forward + cross-entropy + backward + AdamW step (the package's
  optimizer, TrainConfig defaults). Inference: eval mode, torch.inference_mode, forward only.
* Throughput (samples/s) = batch / median step time over the timed repeats, after a warm-up.
* FLOPs: ``count_flops`` (2 x multiply-accumulates of convolutions and linear layers, forward);
  a training step counts 3 x forward (backward ~ 2 x forward); normalisation, activations,
  pooling and the optimizer are not counted. GFLOP/s = FLOPs / median seconds / 1e9.
* Matmul reference: GFLOP/s = 2 n^3 / median seconds of torch.mm on float32 n x n matrices, same
  process and threads. Grid cells time a 1024 x 1024 matmul after every timed step (interleaved)
  and report their GFLOP/s as a fraction of it; 1024 and 2048 are also measured for every thread
  setting, and at the start and end of the run.
* torch.compile (default mode): compile time (first call minus a step) is excluded from the
  timings and reported separately; it depends on inductor's on-disk cache (hits and misses are
  recorded): a cold training graph of these models takes minutes to compile on this machine.
* bf16: oneDNN's fast bf16 kernels need the CPU's bf16 instructions (AVX-512 BF16 or AMX; the
  machine section records ``onednn_bf16_supported``); without them bf16 is many times slower, so
  the bf16 speed targets are timed on ``--bf16-batches`` batches and extrapolated to the whole epoch.
* Peak memory: the warm-up step runs under torch.profiler(profile_memory=True); the peak of
  the running sum of its allocation/free events is the peak growth of tensor memory during a
  step (activations, gradients, workspaces). Reported with the memory held before the step
  (parameters and buffers; for training also AdamW's two moment buffers) and the input batch:
  peak_mb = held + input + growth. Memory outside PyTorch's allocator (interpreter, libraries) is
  not counted. Resident-set (RSS) peaks of a process cannot separate configurations that share
  it, and a fresh process per configuration costs ~9 s of imports here, hence this method.
* Noise: the machine is shared; every comparison is a ratio taken in the same process with the
  variants interleaved round by round (median over rounds of the per-round ratio; for the DS1
  epoch targets, batch by batch, the time per sample over the batches both variants timed);
  absolute numbers depend on the load average, recorded before and after.
* Cells whose timed work would exceed ``--max-gflop`` (warm-up + 2 steps) are skipped and listed.

Usage:
    python experiments/bench_models.py [--quick] [--presets NAME ...] [--data-dir DIR] [--threads auto]
DIR holds mitdb/ or is mitdb/ (default $MSRESNET1D_DATA); a DIR without MIT-BIH is an error before any
work; with no DIR the targets are skipped, and --only-targets refused. Writes
experiments/results/bench_models.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from msresnet1d import count_flops, count_parameters, create_model, list_models
from msresnet1d.arguments import (add_data_dir, add_set, as_program, config_or_exit, database_or_exit, output_or_exit,
                                  overrides_or_exit, path_flag, positive_int, positive_number, positive_seconds,
                                  results_help, script_parser, threads_help, write_result)
from msresnet1d.data.parallel import usable_cpus
from msresnet1d.models.fuse import fuse_batchnorm
from msresnet1d.models.layers import Conv1d
from msresnet1d.training.provenance import cpu_model, load_average, provenance

RESULTS = Path(__file__).resolve().parent / "results" / "bench_models.json"
MAIN_JOB = Path(__file__).resolve().parent / "configs" / "mitdb_beats.toml"
BEAT_FS = 180.0  # Hz, the beat task's rate: its windows are 126 samples
TARGET_EPOCH_S, TARGET_INFER_S = 20.0, 3.0  # issue 7, item 5
#: The main job's config keys the script sets from its flags, refused in --set (the flag to give instead).
OWNED = {"threads": "--threads", "data.data_dir": "--data-dir"}
LATE_REFERENCE = {"length": 512, "batch": 256, "train_samples_per_s": 400, "infer_samples_per_s": 1800}

# name -> (torch threads, environment of the worker process; None removes a variable)
THREAD_SETTINGS: dict[str, tuple[int, dict[str, str | None]]] = {
    "1": (1, {}),
    "2": (2, {"OMP_WAIT_POLICY": None}),
    "2-passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}
VARIANTS = ("fp32", "channels_last", "mkldnn_off", "bf16", "compile", "compile_channels_last")
TARGET_VARIANTS = ("fp32", "channels_last", "bf16")
CONV_VARIANTS = ("conv1d", "conv2d", "conv2d_channels_last", "conv1d_mkldnn_off", "conv1d_bf16")

# Flag defaults, and what --quick changes (flags given explicitly win).
DEFAULTS = {"presets": None, "rhythm_seconds": [10.0, 30.0], "batches": [1, 256], "repeats": 5, "rounds": 5,
            "budget_s": 8.0, "max_gflop": 400.0, "modes": "fp32,bf16", "mode_cells": "msresnet1d_small:1500:1",
            "variants": ",".join(VARIANTS), "target_variants": "fp32,channels_last,bf16", "epoch_batches": 0,
            "bf16_batches": 2, "conv_rounds": 4, "threads": "auto"}
QUICK = {"presets": ["msresnet1d_beat"], "rhythm_seconds": [10.0], "repeats": 3, "rounds": 3, "budget_s": 3.0,
         "threads": "1", "modes": "fp32,bf16", "mode_cells": "msresnet1d_beat:360:1", "variants": "fp32,channels_last",
         "target_variants": "fp32,channels_last", "epoch_batches": 15, "conv_rounds": 2}


# ---------------------------------------------------------------------------------- worker processes
@contextlib.contextmanager
def environment(changes: dict[str, str | None]):
    """Temporarily set (or, for None, remove) environment variables."""
    old = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _serve(conn, threads: int) -> None:
    """Worker loop: run ``function(state, *args)`` for each request; ``state`` persists."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message="TF32 acceleration")
    state: dict = {}
    while (request := conn.recv()) is not None:
        name, args = request
        try:
            conn.send((True, globals()[name](state, *args)))
        except Exception:  # noqa: BLE001 - any failure is reported to the parent; the worker keeps serving
            conn.send((False, traceback.format_exc()))


class WorkerError(RuntimeError):
    pass


class Worker:
    """A spawned process with a thread setting of :data:`THREAD_SETTINGS`; calls run there."""

    def __init__(self, setting: str) -> None:
        threads, env = THREAD_SETTINGS[setting]
        self.setting = setting
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        with environment(env):  # a spawned child takes the environment at start
            self.process = ctx.Process(target=_serve, args=(child, threads), daemon=True)
            self.process.start()
        child.close()

    def __call__(self, function: Callable, *args):
        try:
            self.conn.send((function.__name__, args))
            ok, value = self.conn.recv()
        except (EOFError, BrokenPipeError):  # it died before the call, or during it
            self.process.join()
            raise WorkerError(f"worker {self.setting!r} died (exit code {self.process.exitcode})") from None
        if not ok:
            raise WorkerError(value)
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self.conn.send(None)
        self.process.join()


# ---------------------------------------------------------------------------------- measuring
def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, budget_s: float) -> dict[str, list[float]]:
    """Time every function once per round, in turn; at least 3 rounds (or ``rounds`` if fewer),
    then stop at ``rounds`` or when ``budget_s`` is spent."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn))
        if r + 1 >= 3 and time.perf_counter() - start > budget_s:
            break
    return times


def ratio_to(times: dict[str, list[float]], reference: str) -> dict[str, float]:
    """Median over rounds of each entry's time / the reference's time in the same round."""
    return {name: round(statistics.median(t / r for t, r in zip(ts, times[reference])), 3)
            for name, ts in times.items()}


def matmul_operands(n: int) -> Callable[[], object]:
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return lambda: torch.mm(a, b, out=out)


def matmul_gflops(state: dict, sizes: list[int], repeats: int) -> dict[str, float]:
    """float32 n x n matmul GFLOP/s (median of ``repeats`` after a warm-up) for each n."""
    rates = {}
    for n in sizes:
        mm = matmul_operands(n)
        mm()
        rates[str(n)] = round(2 * n ** 3 / statistics.median(timed(mm) for _ in range(repeats)) / 1e9, 1)
    return rates


def peak_growth_bytes(fn: Callable[[], object]) -> int:
    """Peak growth of PyTorch's CPU tensor memory while ``fn`` runs, from the profiler's allocation
    and free events (running sum in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text(encoding="utf-8"))["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    running = peak = 0
    for event in memory:
        running += event["args"]["Bytes"]
        peak = max(peak, running)
    return peak


def onednn_convolutions(fn: Callable[[], object]) -> dict[str, str]:
    """{propagation kind: oneDNN implementation} of the convolutions ``fn`` executes, read from
    oneDNN's verbose log (written by C code to file descriptor 1, captured here)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+") as captured:
        saved = os.dup(1)
        os.dup2(captured.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                fn()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().splitlines()
    found = {}
    for line in lines:
        fields = line.split(",")
        if "exec" in fields and "convolution" in fields:
            i = fields.index("convolution")
            found[fields[i + 2]] = fields[i + 1]
    return found


# ---------------------------------------------------------------------------------- model variants
class Runner:
    """One way of running a model (a variant of :data:`VARIANTS`): its module, optimizer and the
    contexts (bf16 autocast, oneDNN on/off) of its training step and inference."""

    def __init__(self, model: nn.Module, variant: str) -> None:
        from msresnet1d.training.config import TrainConfig
        from msresnet1d.training.optim import build_optimizer

        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        module = copy.deepcopy(model)
        if variant in ("channels_last", "compile_channels_last"):
            module.set_channels_last()
        self.module = torch.compile(module) if variant.startswith("compile") else module
        self.optimizer = build_optimizer(module, TrainConfig())
        self.bf16 = variant == "bf16"

    def context(self) -> contextlib.AbstractContextManager:
        return torch.backends.mkldnn.flags(enabled=False) if self.variant == "mkldnn_off" else contextlib.nullcontext()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.module(*inputs)

    def train_step(self, inputs: list[torch.Tensor], target: torch.Tensor) -> None:
        with self.context():
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.forward(inputs).float(), target)
            loss.backward()
            self.optimizer.step()

    def infer(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        with self.context(), torch.inference_mode():
            return self.forward(inputs)


def make_batch(model: nn.Module, batch: int, length: int, extra: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(batch, 1, length, generator=g)]
    if extra:
        inputs.append(torch.randn(batch, extra, generator=g))
    return inputs, torch.randint(0, model.fc.out_features, (batch,), generator=g)


def forward_flops(preset: str, length: int, extra: int = 0) -> int:
    """Forward FLOPs per sample (RR features included in the linear layer)."""
    return count_flops(create_model(preset, extra_features=extra), (1, 1, length))


def build_model(preset: str, extra: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(preset, extra_features=extra)


# ---------------------------------------------------------------------------------- sections (run in workers)
def setup_thread_probe(state: dict, length: int, batch: int) -> None:
    model = build_model("msresnet1d_beat", 8)
    state["probe"] = Runner(model, "fp32")
    state["probe_batch"] = make_batch(model, batch, length, 8)
    state["probe"].train_step(*state["probe_batch"])


def thread_probe(state: dict, phase: str) -> float:
    runner, (inputs, target) = state["probe"], state["probe_batch"]
    if phase == "train":
        runner.module.train()
        return timed(lambda: runner.train_step(inputs, target))
    runner.module.eval()
    return timed(lambda: runner.infer(inputs))


def compare_variants(state: dict, preset: str, length: int, train_batch: int, infer_batch: int, extra: int,
                     variants: list[str], rounds: int, budget_s: float) -> dict:
    """Training step and inference of ``preset`` run as each variant, interleaved round by round;
    times, samples/s, GFLOP/s and ratios to the first variant."""
    from torch._dynamo.utils import counters

    model = build_model(preset, extra)
    flops = forward_flops(preset, length, extra)
    train_inputs, target = make_batch(model, train_batch, length, extra)
    infer_inputs, _ = make_batch(model, infer_batch, length, extra, seed=1)
    model.eval()
    with torch.inference_mode():
        reference = model(*infer_inputs)
    result: dict = {"preset": preset, "length": length, "extra_features": extra, "train_batch": train_batch,
                    "infer_batch": infer_batch, "gflop_per_sample": round(flops / 1e9, 5), "variants": {}}
    runners, errors, first_call = {}, {}, {}
    for variant in variants:
        try:
            runners[variant] = Runner(model, variant)
        except Exception as e:  # noqa: BLE001 - recorded: a variant may not apply to a model
            errors[variant] = f"{type(e).__name__}: {e}"
            continue
        if not variant.startswith("compile"):  # same weights: outputs must agree (up to rounding)
            runners[variant].module.eval()
            diff = (runners[variant].infer(infer_inputs).float() - reference).abs().max().item()
            result["variants"][variant] = {"max_abs_diff_vs_fp32_at_init": diff}
    for phase, batch, step_flops in (("train", train_batch, 3 * flops * train_batch),
                                     ("infer", infer_batch, flops * infer_batch)):
        fns = {}
        for variant, runner in list(runners.items()):
            runner.module.train(phase == "train")
            fn = ((lambda r=runner: r.train_step(train_inputs, target)) if phase == "train"
                  else (lambda r=runner: r.infer(infer_inputs)))
            try:
                first_call[(variant, phase)] = timed(fn)  # warm-up; for torch.compile, the compilation
                fn()
            except Exception as e:  # noqa: BLE001 - recorded, e.g. torch.compile failing here
                errors[variant] = f"{phase}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                del runners[variant]
                continue
            fns[variant] = fn
        if not fns:
            continue
        times = interleaved(fns, rounds, budget_s)
        ratios = ratio_to(times, next(iter(fns)))
        for variant, ts in times.items():
            median = statistics.median(ts)
            entry = result["variants"].setdefault(variant, {})
            entry[phase] = {"median_s": round(median, 4), "samples_per_s": round(batch / median, 1),
                            "gflop_per_s": round(step_flops / median / 1e9, 2),
                            f"time_ratio_vs_{next(iter(fns))}": ratios[variant], "rounds": len(ts)}
            if variant.startswith("compile"):
                entry[phase]["compile_s"] = round(first_call[(variant, phase)] - median, 1)
    for variant, error in errors.items():
        result["variants"].setdefault(variant, {})["error"] = error
    if any(v.startswith("compile") for v in variants):
        result["inductor_fx_graph_cache_so_far"] = {k: v for k, v in counters["inductor"].items() if "fxgraph" in k}
    return result


def conv_layers(state: dict, batch: int, length: int, rounds: int) -> dict:
    """Each distinct convolution of msresnet1d_beat (forward + backward) as every CONV_VARIANT,
    interleaved; the oneDNN implementations used; an operator profile of the training step."""
    model = build_model("msresnet1d_beat", 8)
    inputs, target = make_batch(model, batch, length, 8)
    shapes: dict[tuple, list[str]] = {}

    def hook(name):
        def record(module, args, output):
            # an input that needs no gradient (the data, at the stem) skips the backward-data pass
            key = (module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                   module.padding[0], module.dilation[0], module.groups, args[0].shape[-1], output.shape[-1],
                   args[0].requires_grad)
            shapes.setdefault(key, []).append(name)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv1d)]
    model(*inputs)
    for h in handles:
        h.remove()

    layers = []
    for (c_in, c_out, k, stride, pad, dil, groups, l_in, l_out, input_grad), names in shapes.items():
        conv1d = Conv1d(c_in, c_out, k, stride, pad, dil, groups, bias=False)  # 4-D input: its (1, k) 2D twin
        x1 = torch.randn(batch, c_in, l_in, requires_grad=input_grad)
        x2 = x1.detach().unsqueeze(2).requires_grad_(input_grad)
        x2cl = x2.detach().contiguous(memory_format=torch.channels_last).requires_grad_(input_grad)

        def run(layer, x, bf16=False, mkldnn=True):
            def forward_backward():
                ctx = contextlib.nullcontext() if mkldnn else torch.backends.mkldnn.flags(enabled=False)
                with ctx:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        y = layer(x)
                    y.backward(torch.ones_like(y))
            return forward_backward

        fns = {"conv1d": run(conv1d, x1), "conv2d": run(conv1d, x2), "conv2d_channels_last": run(conv1d, x2cl),
               "conv1d_mkldnn_off": run(conv1d, x1, mkldnn=False), "conv1d_bf16": run(conv1d, x1, bf16=True)}
        # each measurement repeats a call for >= 30 ms, so that short calls are not lost in scheduler noise
        calls = {v: max(1, math.ceil(0.03 / timed(fn))) for v, fn in fns.items()}
        times = interleaved({v: (lambda fn=fn, n=calls[v]: [fn() for _ in range(n)]) for v, fn in fns.items()},
                            rounds, budget_s=0.0)
        times = {v: [t / calls[v] for t in ts] for v, ts in times.items()}
        ratios = ratio_to(times, "conv1d")
        flops = (3 if input_grad else 2) * 2 * batch * c_out * l_out * (c_in // groups) * k
        layers.append({
            "shape": f"{c_in}->{c_out} k{k} s{stride} p{pad} L{l_in}", "count": len(names),
            "layers": names, "train_gflop": round(flops / 1e9, 4),
            "median_ms": {v: round(statistics.median(t) * 1e3, 3) for v, t in times.items()},
            "gflop_per_s": {v: round(flops / statistics.median(t) / 1e9, 1) for v, t in times.items()},
            "time_ratio_vs_conv1d": ratios,
            "onednn": {"conv1d": onednn_convolutions(fns["conv1d"]),
                       "conv2d_channels_last": onednn_convolutions(fns["conv2d_channels_last"])},
        })
    totals = {v: round(sum(layer["count"] * layer["median_ms"][v] for layer in layers), 2) for v in CONV_VARIANTS}

    profiles = {}
    for variant in ("fp32", "channels_last"):
        runner = Runner(model, variant)
        runner.train_step(inputs, target)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            runner.train_step(inputs, target)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in rows)
        profiles[variant] = {e.key: round(e.self_cpu_time_total / total, 3) for e in rows[:8]}
    return {"batch": batch, "length": length, "layers": layers, "sum_over_model_ms": totals,
            "sum_ratio_vs_conv1d": {v: round(t / totals["conv1d"], 3) for v, t in totals.items()},
            "train_step_self_cpu_share": profiles}


def grid_cell(state: dict, preset: str, length: int, batch: int, flops: int, phases: list[str], repeats: int,
              budget_s: float) -> dict:
    """Throughput, GFLOP/s vs an interleaved 1024 matmul, and peak memory of one preset/length/batch."""
    model = build_model(preset, 0)
    inputs, target = make_batch(model, batch, length, 0)
    runner = Runner(model, "fp32")
    mm = matmul_operands(1024)
    mm()
    param_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    cell: dict = {}
    for phase in phases:
        training = phase == "train"
        runner.module.train(training)
        if training:  # one small step creates AdamW's moment buffers before the measured warm-up
            small_inputs, small_target = make_batch(model, min(batch, 2), length, 0)
            runner.train_step(small_inputs, small_target)
            fn = lambda: runner.train_step(inputs, target)
        else:
            fn = lambda: runner.infer(inputs)
        growth = peak_growth_bytes(fn)  # the warm-up step
        held = param_bytes * (3 if training else 1)  # + AdamW exp_avg and exp_avg_sq
        times, mm_times, start = [], [], time.perf_counter()
        while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start < budget_s):
            times.append(timed(fn))
            mm_times.append(timed(mm))
        median, mm_median = statistics.median(times), statistics.median(mm_times)
        gflops = (3 if training else 1) * flops * batch / median / 1e9
        mm_gflops = 2 * 1024 ** 3 / mm_median / 1e9
        cell[phase] = {"samples_per_s": round(batch / median, 1), "median_s": round(median, 4),
                       "repeats": len(times), "gflop_per_s": round(gflops, 2), "matmul_gflop_per_s": round(mm_gflops, 1),
                       "fraction_of_matmul": round(gflops / mm_gflops, 3),
                       "peak_mb": round((held + input_bytes + growth) / 1e6, 1),
                       "peak_growth_mb": round(growth / 1e6, 1)}
    return cell


def speed_targets(state: dict, db_dir: str, variants: list[str], epoch_batches: int, bf16_batches: int,
                  overrides: dict) -> dict:
    """One training epoch over DS1 and inference over DS2 at batch 1024 per variant of the main
    job's model (experiments/configs/mitdb_beats.toml with ``overrides``, the ``--set`` items as
    dotted keys) on the main job's inputs (its beat windows, template channel and RR
    features) with its optimizer and schedule, the variants
    interleaved batch by batch so that they share the machine's load: each has its own model,
    optimizer, scheduler and loader (same seed, so the same batches), is stepped by the engine's
    ``train_one_epoch`` one batch at a time, and its own seconds are summed over its own batches
    (loader included). A variant limited to some batches (bf16,
    or all with --epoch-batches) is timed on the first ones and extrapolated."""
    from msresnet1d.data import load_inter_patient
    from msresnet1d.data.loader import TensorBatchLoader
    from msresnet1d.data.rr import rr_columns
    from msresnet1d.training.config import load_config
    from msresnet1d.training.engine import train_one_epoch
    from msresnet1d.training.optim import build_loss, build_optimizer, build_scheduler
    from msresnet1d.training.tasks import beat_config, resolve_data

    cfg = load_config(MAIN_JOB, overrides)  # AdamW, batch 256, one-cycle, weighted cross-entropy; data and model
    data = resolve_data(cfg).data
    beat_cfg = beat_config(data)
    model_kwargs = cfg.model_kwargs
    columns = rr_columns(data["rr"])
    ds1, ds2 = load_inter_patient(db_dir, beat_cfg, workers=1)  # a daemonic worker cannot fork readers
    rr_mean, rr_std = ds1.rr[:, columns].mean(axis=0), ds1.rr[:, columns].std(axis=0) + 1e-6

    def tensors(arrays):
        rr = ((arrays.rr[:, columns] - rr_mean) / rr_std).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(arrays.X)), torch.from_numpy(rr), torch.from_numpy(arrays.y)

    (x1, rr1, y1), (x2, rr2, y2) = tensors(ds1), tensors(ds2)

    def trainee(variant: str, seed: int) -> dict:
        torch.manual_seed(seed)
        model = create_model(cfg.model, in_channels=beat_cfg.channels, extra_features=rr1.shape[1],
                             **model_kwargs)
        if variant == "channels_last":
            model.set_channels_last()
        loader = TensorBatchLoader(x1, y1, cfg.batch_size, shuffle=True, seed=seed, extra=rr1)
        optimizer = build_optimizer(model, cfg)
        return {"model": model, "optimizer": optimizer, "scheduler": build_scheduler(optimizer, cfg, len(loader)),
                "loss_fn": build_loss(cfg, y1.numpy(), 5), "batches": iter(loader), "bf16": variant == "bf16"}

    def step(run: dict) -> int:
        _, seen, _ = train_one_epoch(run["model"], [next(run["batches"])], run["loss_fn"], run["optimizer"],
                                     run["scheduler"], grad_clip=cfg.grad_clip, bf16=run["bf16"])
        return seen

    n_batches = math.ceil(len(y1) / cfg.batch_size)
    limits = {v: (bf16_batches if v == "bf16" else epoch_batches) or n_batches for v in variants}
    for variant in variants:  # warm-up: 2 steps of a throwaway copy
        warm = trainee(variant, seed=cfg.seed + 1)
        step(warm)
        step(warm)
    runs = {v: trainee(v, cfg.seed) for v in variants}
    batch_s: dict[str, list[float]] = {v: [] for v in variants}  # each timed batch (the same batches for all)
    batch_n: dict[str, list[int]] = {v: [] for v in variants}
    for b in range(n_batches):
        for variant in variants:
            if b < limits[variant]:
                start = time.perf_counter()
                batch_n[variant].append(step(runs[variant]))
                batch_s[variant].append(time.perf_counter() - start)
    train_s, train_n = {v: sum(t) for v, t in batch_s.items()}, {v: sum(n) for v, n in batch_n.items()}
    first = variants[0]

    infer_s, infer_n = dict.fromkeys(variants, 0.0), dict.fromkeys(variants, 0)
    parameters = count_parameters(runs[variants[0]]["model"])
    for run in runs.values():
        run["model"] = fuse_batchnorm(run["model"])  # an eval-mode copy, as evaluate and predict run it
    for b, i in enumerate(range(0, len(y2), cfg.eval_batch_size)):
        for variant in variants:
            if b < limits[variant]:
                run, start = runs[variant], time.perf_counter()
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=run["bf16"]):
                    logits = run["model"](x2[i:i + cfg.eval_batch_size], rr2[i:i + cfg.eval_batch_size])
                    torch.softmax(logits.float(), dim=1)
                infer_s[variant] += time.perf_counter() - start
                infer_n[variant] += len(logits)

    onnx = onnx_inference(runs[variants[0]]["model"], x2, rr2, cfg.eval_batch_size)
    agreement = bf16_agreement(runs[first]["model"], x2, rr2, y2, cfg.eval_batch_size)
    agreement["model_trained_batches"] = len(batch_s[first])
    results = {"ds1_beats": len(y1), "ds2_beats": len(y2), "input_channels": int(x1.shape[1]), "rr_features": len(columns),
               "input_length": int(x1.shape[-1]), "fs_hz": beat_cfg.fs, "model_kwargs": model_kwargs,
               "parameters": parameters,
               "train_batch": cfg.batch_size, "infer_batch": cfg.eval_batch_size, "variants": {}}
    for variant in variants:
        epoch_s, infer_all_s = train_s[variant] * len(y1) / train_n[variant], infer_s[variant] * len(y2) / infer_n[variant]
        results["variants"][variant] = {
            "epoch_s": seconds_up(epoch_s), "train_samples_per_s": round(train_n[variant] / train_s[variant], 1),
            "train_samples_timed": train_n[variant], "infer_s": seconds_up(infer_all_s),
            "infer_samples_per_s": round(infer_n[variant] / infer_s[variant], 1),
            "infer_samples_timed": infer_n[variant],
            "extrapolated": train_n[variant] < len(y1) or infer_n[variant] < len(y2),
            # time per sample over the batches both timed (bf16 times only its first --bf16-batches)
            "epoch_time_ratio_vs_first": round(_time_per_sample(batch_s[variant], batch_n[variant], len(batch_s[first]))
                                               / _time_per_sample(batch_s[first], batch_n[first], len(batch_s[variant])),
                                               3),
            "ratio_batches": min(len(batch_s[variant]), len(batch_s[first])),
            "meets_epoch_target": seconds_up(epoch_s) <= TARGET_EPOCH_S,
            "meets_infer_target": seconds_up(infer_all_s) <= TARGET_INFER_S,
        }
    results["onnxruntime"] = {**onnx, "meets_infer_target": onnx["infer_s"] <= TARGET_INFER_S} if onnx else None
    results["bf16_inference_of_the_first_variant"] = agreement
    return results


def bf16_agreement(model: nn.Module, x: torch.Tensor, extra: torch.Tensor, y: torch.Tensor, batch: int) -> dict:
    """What bf16 autocast changes in one trained model's DS2 predictions against its own float32
    run (the package evaluates in float32): beats whose class changes, the largest probability
    difference, and both accuracies (%)."""
    probabilities = {}
    for bf16 in (False, True):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probabilities[bf16] = torch.cat([torch.softmax(model(x[i:i + batch], extra[i:i + batch]).float(), dim=1)
                                             for i in range(0, len(x), batch)])
    labels = {bf16: p.argmax(dim=1) for bf16, p in probabilities.items()}
    return {"beats": len(y), "class_changed": int((labels[False] != labels[True]).sum()),
            "max_abs_probability_diff": round(float((probabilities[False] - probabilities[True]).abs().max()), 4),
            "accuracy_fp32": round(100 * float((labels[False] == y).float().mean()), 3),
            "accuracy_bf16": round(100 * float((labels[True] == y).float().mean()), 3)}


def seconds_up(seconds: float) -> float:
    """``seconds`` rounded up to hundredths, as the reports give the targets' times: a time is
    within a target (at most 3 s, say) exactly when its figure is, so that 3.004 s reads 3.01
    beside "no" rather than 3.00. (Rounded first to a millionth of a hundredth: 1.1 s stays 1.10.)"""
    return math.ceil(round(seconds * 100, 6)) / 100


def _time_per_sample(seconds: list[float], samples: list[int], batches: int) -> float:
    """Seconds per sample over the first ``batches`` timed batches."""
    return sum(seconds[:batches]) / sum(samples[:batches])


def onnx_inference(model: nn.Module, x: torch.Tensor, extra: torch.Tensor, batch: int) -> dict | None:
    """Inference over all of ``x`` (DS2) with the model exported by :func:`msresnet1d.export.export_onnx`
    and run by onnxruntime (:class:`~msresnet1d.export.OnnxPredictor`, this worker's thread count),
    after one warm-up batch; the largest |logit| difference from the torch model on that batch.
    None when onnx / onnxruntime are not installed."""
    try:
        from msresnet1d.export import OnnxPredictor, export_onnx
        with tempfile.TemporaryDirectory() as folder:
            predictor = OnnxPredictor(export_onnx(model, Path(folder) / "beat.onnx"), threads=torch.get_num_threads())
    except ImportError:
        return None
    xs, es = x.numpy(), extra.numpy()
    with torch.inference_mode():
        reference = model(x[:batch], extra[:batch]).numpy()
    difference = float(np.abs(predictor.predict(xs[:batch], es[:batch]) - reference).max())
    start = time.perf_counter()
    for i in range(0, len(xs), batch):
        predictor.predict(xs[i:i + batch], es[i:i + batch])
    seconds = time.perf_counter() - start
    return {"infer_s": seconds_up(seconds), "infer_samples_per_s": round(len(xs) / seconds, 1),
            "max_abs_diff_vs_torch": difference}


# ---------------------------------------------------------------------------------- parent: orchestration
def log(message: str, start: float) -> None:
    load = load_average()
    print(f"[{time.perf_counter() - start:6.0f} s, load {load[0] if load else '-'}] {message}", file=sys.stderr,
          flush=True)


def run_thread_study(args, report: dict, start: float) -> Worker:
    """Interleave the beat step across the thread settings; return the chosen setting's worker."""
    settings = list(THREAD_SETTINGS) if args.threads == "auto" else [args.threads]
    workers = {s: Worker(s) for s in settings}
    beat = {"length": round(0.7 * BEAT_FS), "batch": 256}
    study: dict = {"beat_input": beat, "settings": {}}
    for setting, worker in workers.items():
        worker(setup_thread_probe, beat["length"], beat["batch"])
        study["settings"][setting] = {"threads": THREAD_SETTINGS[setting][0],
                                      "env": THREAD_SETTINGS[setting][1],
                                      "matmul_gflop_per_s": worker(matmul_gflops, [1024, 2048], 3)}
    log(f"threads: workers {', '.join(workers)} ready", start)
    for phase in ("train", "infer"):
        times: dict[str, list[float]] = {s: [] for s in workers}
        phase_start = time.perf_counter()
        for r in range(args.rounds):
            for setting, worker in workers.items():
                times[setting].append(worker(thread_probe, phase))
            if r + 1 >= 3 and time.perf_counter() - phase_start > 2 * args.budget_s:
                break
        ratios = ratio_to(times, settings[0])
        for setting, ts in times.items():
            study["settings"][setting][phase] = {"median_s": round(statistics.median(ts), 4), "rounds": len(ts),
                                                 "samples_per_s": round(beat["batch"] / statistics.median(ts), 1),
                                                 f"time_ratio_vs_{settings[0]}": ratios[setting]}
    # the setting with the lowest geometric mean of its training and inference time ratios
    chosen = min(settings, key=lambda s: math.prod(v for k, v in study["settings"][s]["train"].items()
                                                   if k.startswith("time_ratio"))
                 * math.prod(v for k, v in study["settings"][s]["infer"].items() if k.startswith("time_ratio")))
    study["chosen"] = chosen
    report["threads"] = study
    for setting, worker in workers.items():
        if setting != chosen:
            worker.close()
    log(f"threads: chosen {chosen!r} " + ", ".join(
        f"{s}: {v['train']['samples_per_s']:.0f} train/s" for s, v in study["settings"].items()), start)
    return workers[chosen]


def run_grid(worker: Worker, args, lengths: list[int], report: dict, start: float) -> None:
    cells, skipped = [], []
    for preset in args.presets:
        params = count_parameters(create_model(preset))
        for length in lengths:
            flops = forward_flops(preset, length)
            for batch in args.batches:
                phases, row = [], {"preset": preset, "length": length, "batch": batch, "params": params,
                                   "gflop_per_sample": round(flops / 1e9, 4)}
                for phase, factor, steps in (("infer", 1, 3), ("train", 3, 3)):  # warm-up + 2 timed, at least
                    work = steps * factor * flops * batch / 1e9
                    if args.max_gflop and work > args.max_gflop:
                        skipped.append(f"{preset} L={length} b={batch} {phase} (~{work:.0f} GFLOP)")
                        row[phase] = {"skipped": f"~{work:.0f} GFLOP > --max-gflop {args.max_gflop:g}"}
                    else:
                        phases.append(phase)
                if phases:
                    try:
                        row.update(worker(grid_cell, preset, length, batch, flops, phases, args.repeats, args.budget_s))
                    except WorkerError as e:
                        row["error"] = str(e).strip().splitlines()[-1]
                cells.append(row)
                log(f"grid {preset} L={length} b={batch}: " + ", ".join(
                    f"{p} {row[p].get('samples_per_s', '-')}/s" for p in ("train", "infer") if p in row), start)
    report["grid"] = {"cells": cells, "skipped": skipped}
    modes = []
    for spec in filter(None, args.mode_cells.split(",")):
        preset, length, batch = spec.split(":")
        modes.append(worker(compare_variants, preset, int(length), int(batch), int(batch), 0, args.modes.split(","),
                            args.rounds, args.budget_s * 4))
        log(f"modes {spec} done", start)
    report["modes"] = modes


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="a 2-3 minute smoke run (beat preset, fewer repeats)")
    parser.add_argument("--presets", nargs="+", help="grid presets (default: msresnet1d_* and resnet1d_beat)")
    parser.add_argument("--beat-length", type=positive_int, default=360, help="beat length in samples (1 s at 360 Hz)")
    parser.add_argument("--rhythm-fs", type=positive_number, default=150.0, help="rhythm sampling rate, Hz")
    parser.add_argument("--rhythm-seconds", type=positive_seconds, nargs="+", help="rhythm lengths, s (default 10 30)")
    parser.add_argument("--batches", type=positive_int, nargs="+", help="grid batch sizes (default 1 256)")
    parser.add_argument("--repeats", type=positive_int, help="max timed steps per grid measurement (default 5)")
    parser.add_argument("--rounds", type=positive_int, help="max interleaved rounds per comparison (default 5)")
    parser.add_argument("--budget-s", type=positive_seconds,
                        help="seconds after which timing stops once the minimum is met")
    parser.add_argument("--max-gflop", type=float, help="skip grid measurements above this work, GFLOP (0: none)")
    parser.add_argument("--modes", help="grid mode comparison (default fp32,bf16; add compile: minutes a graph)")
    parser.add_argument("--mode-cells", help="PRESET:LENGTH:BATCH,... compared across --modes")
    parser.add_argument("--variants", help=f"beat-model variants (default {','.join(VARIANTS)})")
    settings = ", ".join(THREAD_SETTINGS)
    parser.add_argument("--threads", choices=["auto", *THREAD_SETTINGS], help=threads_help(
        "auto", f"a thread study times {settings} and the rest runs with the fastest, as the recorded results did; "
                "1 with --quick", f"worker threads: {settings} or auto", None))
    add_data_dir(parser, "mitdb/, or mitdb/ itself, for the targets",
                 "; with neither, the targets are skipped, and --only-targets refused")
    parser.add_argument("--skip-targets", action="store_true", help="skip the DS1 epoch / DS2 inference targets")
    parser.add_argument("--target-variants", help=f"of {','.join(TARGET_VARIANTS)} (default fp32,channels_last,bf16)")
    parser.add_argument("--epoch-batches", type=int, help="time this many DS1 batches and extrapolate (0: full epoch)")
    add_set(parser, OWNED, "overrides of the main job's config for the targets, e.g. model_kwargs.stem_stride=2")
    parser.add_argument("--only-targets", action="store_true",
                        help="run the thread study and the DS1 epoch / DS2 inference targets only")
    parser.add_argument("--bf16-batches", type=int,
                        help="batches timed for bf16 targets (slow on a CPU without bf16 instructions)")
    parser.add_argument("--conv-rounds", type=positive_int, help="rounds of the per-layer convolution study")
    parser.add_argument("--skip-late", action="store_true", help="skip the msresnet1d_late reference comparison")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> None:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.out = output_or_exit(parser, args.out)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.presets = args.presets or [*list_models("msresnet1d_*"), "resnet1d_beat"]
    if args.quick:
        args.skip_late = True
    unknown = [p for p in args.presets if p not in list_models()]
    if unknown:
        parser.error(f"unknown presets {unknown}; available: {', '.join(list_models())}")
    if not set(args.target_variants.split(",")) <= set(TARGET_VARIANTS):
        parser.error(f"--target-variants must be among {', '.join(TARGET_VARIANTS)}")
    if args.epoch_batches < 0 or args.epoch_batches == 1 or args.bf16_batches < 2:  # one-cycle: >= 2 steps
        parser.error("--epoch-batches must be 0 (full epoch) or >= 2, and --bf16-batches >= 2")
    for option, value in (("--variants", args.variants), ("--modes", args.modes)):
        if not set(value.split(",")) <= set(VARIANTS):
            parser.error(f"{option} {value!r}: each must be one of {', '.join(VARIANTS)}")
    for spec in filter(None, args.mode_cells.split(",")):
        parts = spec.split(":")
        if len(parts) != 3 or parts[0] not in list_models() or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
            parser.error(f"--mode-cells {spec!r}: PRESET:LENGTH:BATCH with a registered preset and positive whole "
                         "numbers, e.g. msresnet1d_small:1500:1")
    if args.only_targets and args.skip_targets:
        parser.error("--only-targets and --skip-targets: nothing would be timed")
    args.target_overrides = overrides_or_exit(parser, args.set, OWNED)
    if config_or_exit(parser, MAIN_JOB, args.target_overrides).task != "beats":
        parser.error(f"--set task: the targets time a beat classifier, the task of {MAIN_JOB.name}")
    # the targets need MIT-BIH: a --data-dir (or $MSRESNET1D_DATA) without it is an error, never a skip
    db_dir = database_or_exit(parser, "mitdb", args.data_dir) if not args.skip_targets and (
        args.data_dir or args.only_targets) else None
    lengths = [args.beat_length] + [round(s * args.rhythm_fs) for s in args.rhythm_seconds]
    torch.set_num_threads(1)  # the parent only orchestrates; idle OpenMP threads here would spin

    start = time.perf_counter()
    report: dict = {
        "what": __doc__.split("Usage:")[0].strip(),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "machine": {"cpu": cpu_model(), "cpus_usable": usable_cpus(),
                    "load_average_before": load_average(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "onednn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                    "omp_wait_policy_of_parent": os.environ.get("OMP_WAIT_POLICY")},
        "settings": {"lengths": {"beat": args.beat_length, **{f"rhythm_{s:g}s_at_{args.rhythm_fs:g}hz":
                                 round(s * args.rhythm_fs) for s in args.rhythm_seconds}},
                     "batches": args.batches, "presets": args.presets, "repeats": args.repeats,
                     "rounds": args.rounds, "budget_s": args.budget_s, "max_gflop": args.max_gflop},
    }
    worker = run_thread_study(args, report, start)
    try:
        report["matmul_reference"] = {"threads": worker.setting, "start": worker(matmul_gflops, [1024, 2048], 3)}
        if not args.only_targets:
            report["conv_layers"] = worker(conv_layers, 256, round(0.7 * BEAT_FS), args.conv_rounds)
            log("conv layers done", start)
            report["beat_variants"] = worker(compare_variants, "msresnet1d_beat", round(0.7 * BEAT_FS), 256, 1024, 8,
                                             args.variants.split(","), args.rounds, args.budget_s * 4)
            log("beat variants done", start)
        if not args.skip_late and not args.only_targets:
            report["late_reference"] = {
                "reference": LATE_REFERENCE,
                **worker(compare_variants, "msresnet1d_late", LATE_REFERENCE["length"], LATE_REFERENCE["batch"],
                         LATE_REFERENCE["batch"], 0, ["fp32", "channels_last"], min(args.rounds, 3), args.budget_s)}
            log("late reference done", start)
        if args.skip_targets:
            report["targets"] = {"skipped": "--skip-targets"}
        elif db_dir is None:
            report["targets"] = {"skipped": "no MIT-BIH data: give --data-dir DIR (holding mitdb/) or set MSRESNET1D_DATA"}
        else:
            report["targets"] = {"threads": worker.setting, "db_dir": str(db_dir),
                                 **worker(speed_targets, str(db_dir), args.target_variants.split(","),
                                          args.epoch_batches, args.bf16_batches, args.target_overrides)}
            log("targets done", start)
        if not args.only_targets:
            run_grid(worker, args, lengths, report, start)
        report["matmul_reference"]["end"] = worker(matmul_gflops, [1024, 2048], 3)
    finally:
        worker.close()
    report["machine"]["load_average_after"] = load_average()
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    report["provenance"] = provenance(__file__, argv, started, [db_dir] if db_dir else [])
    markdown = render_markdown(report)
    print(markdown)
    print(f"done in {report['wall_time_s']:.0f} s")
    write_result(args.out, json.dumps(report, indent=2) + "\n")
    write_result(args.out.with_suffix(".md"), markdown)


# ---------------------------------------------------------------------------------- markdown
def _fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _sizes(rates: dict[str, float]) -> str:
    return ", ".join(f"{n}x{n}: {r:.1f}" for n, r in rates.items())


def render_markdown(report: dict) -> str:
    m = report["machine"]
    out = [f"# Model benchmark ({m['cpu']}, {m['cpus_usable']} CPUs, torch {m['torch']})", "",
           (f"Load average before {m['load_average_before']}, after {m['load_average_after']}; "
           f"threads: {report['threads']['chosen']}; wall time {report['wall_time_s']:.0f} s. "
           f"Matmul fp32 GFLOP/s: start {_sizes(report['matmul_reference']['start'])}, "
           f"end {_sizes(report['matmul_reference']['end'])}."), "",
           "Lengths in samples: " + ", ".join(f"{k} = {v}" for k, v in report["settings"]["lengths"].items())
           + ". Training GFLOP = 3 x forward. '% mm': achieved GFLOP/s / 1024 matmul GFLOP/s measured interleaved."]
    if "grid" in report:
        out += ["", "## Grid (fp32)", "",
                ("| preset | params | length | batch | GFLOP/sample | train samples/s | infer samples/s "
                 "| train GFLOP/s (% mm) | infer GFLOP/s (% mm) | peak MB train / infer |"),
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report.get("grid", {}).get("cells", []):
        tr, inf = c.get("train", {}), c.get("infer", {})

        def eff(p):
            return f"{p['gflop_per_s']:.1f} ({100 * p['fraction_of_matmul']:.0f}%)" if "gflop_per_s" in p else "skipped"
        out.append(f"| {c['preset']} | {c['params']:,} | {c['length']} | {c['batch']} | {c['gflop_per_sample']:.3f} | "
                   f"{_fmt(tr.get('samples_per_s'), ',.1f')} | {_fmt(inf.get('samples_per_s'), ',.1f')} | {eff(tr)} | "
                   f"{eff(inf)} | {_fmt(tr.get('peak_mb'))} / {_fmt(inf.get('peak_mb'))} |")
    if report.get("grid", {}).get("skipped"):
        out += ["", f"Skipped (over --max-gflop): {'; '.join(report['grid']['skipped'])}."]

    def variant_table(title: str, result: dict) -> list[str]:
        rows = [f"## {title}", "", (f"{result['preset']}, length {result['length']}, train batch "
                f"{result['train_batch']}, infer batch {result['infer_batch']}; ratio = time / first variant's time "
                "(same run, interleaved; < 1 is faster)."), "",
                "| variant | train samples/s | train ratio | infer samples/s | infer ratio | compile s (train/infer) | note |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for name, v in result["variants"].items():
            tr, inf = v.get("train", {}), v.get("infer", {})
            ratio = lambda p: next((x for k, x in p.items() if k.startswith("time_ratio")), None)
            comp = f"{tr.get('compile_s', '-')} / {inf.get('compile_s', '-')}" if name.startswith("compile") else ""
            note = v.get("error", "")
            if "max_abs_diff_vs_fp32_at_init" in v:
                note = f"max |diff| vs fp32 {v['max_abs_diff_vs_fp32_at_init']:.1e}"
            rows.append(f"| {name} | {_fmt(tr.get('samples_per_s'), ',.1f')} | {_fmt(ratio(tr), '.2f')} | "
                        f"{_fmt(inf.get('samples_per_s'), ',.1f')} | {_fmt(ratio(inf), '.2f')} | {comp} | {note} |")
        return rows + [""]

    out.append("")
    for mode in report.get("modes", []):
        out += variant_table("Modes: fp32 vs bf16 autocast vs torch.compile", mode)
    if "beat_variants" in report:
        out += variant_table("Beat model variants (with 8 RR features, its 126-sample input at 180 Hz)",
                             report["beat_variants"])
    if "late_reference" in report:
        ref = report["late_reference"]["reference"]
        out += variant_table(f"msresnet1d_late vs the public 3-tower model (~{ref['train_samples_per_s']} train, "
                             f"~{ref['infer_samples_per_s']} infer samples/s)", report["late_reference"])

    t = report["threads"]
    out += ["## Threads (msresnet1d_beat, batch 256)", "", ("| setting | train samples/s | infer samples/s | "
            "train ratio | infer ratio | matmul GFLOP/s |"), "|---|---:|---:|---:|---:|---|"]
    for name, s in t["settings"].items():
        ratio = lambda p: next(x for k, x in p.items() if k.startswith("time_ratio"))
        out.append(f"| {name} | {s['train']['samples_per_s']:,.1f} | {s['infer']['samples_per_s']:,.1f} | "
                   f"{ratio(s['train']):.2f} | {ratio(s['infer']):.2f} | {_sizes(s['matmul_gflop_per_s'])} |")

    conv = report.get("conv_layers", {"layers": []})
    if conv["layers"]:
        out += ["", "## Convolutions of msresnet1d_beat (forward + backward, batch 256; ms, ratio to conv1d)", "",
                ("| shape | n | conv1d ms | conv2d | conv2d channels_last | oneDNN off | bf16 "
                 "| oneDNN conv1d (fwd/bwd_d/bwd_w) | oneDNN channels_last |"), "|---|---:|---:|---:|---:|---:|---:|---|---|"]

    def impls(d: dict) -> str:
        return " / ".join(d.get(k, "-") for k in ("forward_training", "backward_data", "backward_weights"))
    for layer in conv["layers"]:
        r = layer["time_ratio_vs_conv1d"]
        out.append(f"| {layer['shape']} | {layer['count']} | {layer['median_ms']['conv1d']:.2f} | {r['conv2d']:.2f} | "
                   f"{r['conv2d_channels_last']:.2f} | {r['conv1d_mkldnn_off']:.2f} | {r['conv1d_bf16']:.2f} | "
                   f"{impls(layer['onednn']['conv1d'])} | {impls(layer['onednn']['conv2d_channels_last'])} |")
    if "sum_ratio_vs_conv1d" in conv:
        s = conv["sum_ratio_vs_conv1d"]
        out.append(f"| **sum over the model** | | {conv['sum_over_model_ms']['conv1d']:.1f} | {s['conv2d']:.2f} | "
                   f"{s['conv2d_channels_last']:.2f} | {s['conv1d_mkldnn_off']:.2f} | {s['conv1d_bf16']:.2f} | | |")
    out.append("")

    tg = report["targets"]
    out += ["## Speed targets (msresnet1d_beat, DS1 epoch <= 20 s, DS2 inference <= 3 s)", ""]
    if "skipped" in tg:
        out.append(f"Skipped: {tg['skipped']}")
    else:
        out += [(f"{tg['ds1_beats']:,} DS1 beats, {tg['ds2_beats']:,} DS2 beats, {tg['input_channels']} x "
                f"{tg['input_length']} samples at {tg['fs_hz']:g} Hz and {tg['rr_features']} RR features; model options "
                f"{json.dumps(tg['model_kwargs'])} ({tg['parameters']:,} parameters); threads {tg['threads']}; "
                "variants interleaved batch by batch."), "",
                ("| variant | epoch s | train samples/s | epoch ratio | DS2 inference s | infer samples/s | targets met "
                "| note |"), "|---|---:|---:|---:|---:|---:|---|---|"]
        for name, v in tg["variants"].items():
            met = f"{'yes' if v['meets_epoch_target'] else 'no'} / {'yes' if v['meets_infer_target'] else 'no'}"
            note = (f"extrapolated from {v['train_samples_timed']:,} / {v['infer_samples_timed']:,} samples"
                    if v["extrapolated"] else "full epoch and full DS2")
            out.append(f"| {name} | {v['epoch_s']:.2f} | {v['train_samples_per_s']:,.0f} | "
                       f"{v['epoch_time_ratio_vs_first']:.2f} | {v['infer_s']:.2f} | {v['infer_samples_per_s']:,.0f} | "
                       f"{met} | {note} |")
        onnx = tg.get("onnxruntime")
        if onnx:
            out.append(f"| onnxruntime ({tg['threads']} thread setting; the fp32 model, BatchNorm folded, exported) "
                       f"| | | | {onnx['infer_s']:.2f} "
                       f"| {onnx['infer_samples_per_s']:,.0f} | - / {'yes' if onnx['meets_infer_target'] else 'no'} "
                       f"| full DS2; max logit diff vs torch {onnx['max_abs_diff_vs_torch']:.1e} |")
        agreement = tg.get("bf16_inference_of_the_first_variant")
        if agreement:  # absent from reports written before it was measured
            out += ["", (f"The first variant's model ({agreement['model_trained_batches']} batches trained) run under bf16 "
                         f"autocast on DS2: {agreement['class_changed']:,} of {agreement['beats']:,} beats change class, "
                         f"probabilities move by up to {agreement['max_abs_probability_diff']:.3f}, accuracy "
                         f"{agreement['accuracy_fp32']:.2f}% in float32 and {agreement['accuracy_bf16']:.2f}% in bf16.")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with as_program():
        main()
