"""Where the time of a continual DST run goes, measured in one process on one model and one batch.

Sections (each prints a header line and a `ratio` line; the README explains every number):
  1. DST step vs dense step     forward + backward + Adam step, plain or through sparsity.step (zero
                                frozen gradients, restore frozen and inactive weights), on task 1 (task 0
                                finished, so there are frozen weights)
  2. Topology update            one update_topology(0.3) per growth criterion, and amortized over
                                update_frequency DST steps
  3. Data pipeline vs model     cldst.data.train_batches (augmentation on) vs the DST step, images/s
  4. papermill overhead         notebooks/train.ipynb through cldst.sweep.execute_run vs
                                cldst.train.train_continual of the same tiny config (--no-papermill skips)
  5. Projection                 device-hours of the whole paper grid, through cldst.cost (as `cldst preflight`)

Timing: warm-up calls first, torch.cuda.synchronize() around every timed block on GPU, the median
over repeats; dense and DST blocks alternate so a change in machine load hits both alike.

    .venv/bin/python benchmarks/speed.py                      # ResNet-18 width 64, 32 px, batch 128
    .venv/bin/python benchmarks/speed.py --tiny --no-papermill --device cpu   # seconds (test suite)
    .venv/bin/python benchmarks/speed.py --device cuda --precision bf16 --channels-last --compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cldst import cost, experiments
from cldst.config import Config
from cldst.data import train_batches
from cldst.machine_load import OtherLoad
from cldst.models import ContinualNet, build_model
from cldst.sparse import ContinualSparsity
from cldst.train import resolve_device

GROWTHS = ("random", "unfired", "gradient", "momentum")
NUM_CLASSES, NUM_TASKS = 100, 10  # the model's head: task 1 has 10 classes
PIPELINE_IMAGES = 5000  # one 10-class task
# CIFAR-100 statistics; any values serve for timing.
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


# ---------------------------------------------------------------------- options
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Speed of continual DST: step, topology update, data, papermill, grid.")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--arch", choices=["resnet18", "vgg", "mobilenetv2"], default="resnet18")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--variant", choices=["authors", "cifar"], default="authors",
                   help="authors (7x7 stride-2 stem, the paper profile's network) or cifar (3x3 stride 1)")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--init", choices=["ERK", "uniform"], default="ERK")
    p.add_argument("--update-frequency", type=int, default=100, help="for the amortized topology cost")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: 5 on CPU, 50 on CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; at least 5 with --compile)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone, as train.py does")
    p.add_argument("--tiny", action="store_true", help="width 8, 16 px, batch 32, few steps (test suite)")
    p.add_argument("--no-papermill", action="store_true", help="skip section 4")
    p.add_argument("--no-projection-archs", action="store_true",
                   help="in section 5, reuse --arch's rates for the VGG and MobileNetV2 experiments")
    p.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = p.parse_args(argv)
    if args.tiny:
        args.width, args.image_size, args.batch = 8, 16, 32
        args.steps, args.repeats, args.warmup = _given(args.steps, 3), _given(args.repeats, 3), _given(args.warmup, 1)
    args.repeats, args.warmup = _given(args.repeats, 5), _given(args.warmup, 3)
    if args.compile:
        args.warmup = max(args.warmup, 5)  # recompiles settle within the first calls
    for name in ("width", "image_size", "batch", "repeats", "update_frequency", "steps"):
        if name == "steps" and args.steps is None:  # chosen per device in main()
            continue
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.0 < args.density <= 1.0:
        p.error("--density must be in (0, 1]")
    return args


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


# ---------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], Any], calls: int, device: torch.device) -> float:
    """Wall seconds per call of `calls` back-to-back calls, synchronized at both ends."""
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def median_interleaved(fns: dict[str, Callable[[], Any]], calls: int, repeats: int, device: torch.device) -> dict:
    """Median seconds per call of each fn; the fns alternate within every repeat (same load for all)."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(seconds_per_call(fn, calls, device))
    return {name: statistics.median(s) for name, s in samples.items()}


# ---------------------------------------------------------------------- the model at task 1
@dataclass
class Bench:
    """One ContinualNet at task 1 (task 0 finished: frozen weights exist), its optimizer and one batch."""

    net: ContinualNet
    forward: Callable[..., torch.Tensor]  # the net (with --compile its backbone compiled in place, as Trainer)
    sparsity: ContinualSparsity
    optimizer: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    x: torch.Tensor  # float [B, 3, H, W], normalized, channels_last if asked
    y: torch.Tensor  # int64 [B], local labels of task 1
    device: torch.device
    last_loss: torch.Tensor | None = None

    def dense_step(self) -> None:
        """The floor: the plain training step of the same network."""
        with self.autocast:
            loss = F.cross_entropy(self.forward(self.x, 1), self.y)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.detach()

    def dst_step(self) -> None:
        """The step of Trainer.train_task: the dense step plus masking and freezing."""
        with self.autocast:
            loss = F.cross_entropy(self.forward(self.x, 1), self.y)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.sparsity.step(self.optimizer, 1)  # step 1 is never an update step: the schedule check
        self.last_loss = loss.detach()

    @torch.no_grad()
    def eval_batch(self) -> None:
        with self.autocast:
            self.forward(self.x, 1).argmax(1)


def make_bench(args: argparse.Namespace, device: torch.device, *, arch: str | None = None,
               growth: str = "random", seed: int = 0) -> Bench:
    torch.manual_seed(seed)
    net = build_model(arch or args.arch, num_classes=NUM_CLASSES, num_tasks=NUM_TASKS, width=args.width,
                      variant=args.variant).to(device)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    if args.channels_last:  # as Trainer: the model and every batch in channels_last
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES // NUM_TASKS, (args.batch,), device=device)
    if args.compile:
        net.backbone.compile()  # as Trainer: the backbone alone, so its graphs serve every task
    sparsity = ContinualSparsity(net.maskable_parameters(), density=args.density, init=args.init, growth=growth,
                                 update_frequency=args.update_frequency, seed=seed)
    sparsity.begin_task(0, total_steps=10**6)
    sparsity.end_task()
    sparsity.begin_task(1, total_steps=10**6)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    return Bench(
        net=net,
        forward=net,
        sparsity=sparsity,
        optimizer=torch.optim.Adam(net.task_parameters(1), lr=1e-3),
        autocast=autocast,
        x=x,
        y=y,
        device=device,
    )


def check_dst_step(bench: Bench) -> str:
    """After DST steps: the loss is finite and every sparsity invariant holds (else raise)."""
    bench.dst_step()
    sync(bench.device)
    if not bool(torch.isfinite(bench.last_loss)):
        raise AssertionError(f"DST step produced a non-finite loss: {bench.last_loss.item()}")
    bench.sparsity.check_invariants()
    return f"loss {bench.last_loss.item():.4f} finite, sparsity invariants hold"


# ---------------------------------------------------------------------- sections
def section_steps(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    for _ in range(args.warmup):  # both paths: Adam state, allocator, autotuning, compilation
        bench.dense_step()
        bench.dst_step()
    t = median_interleaved({"dense": bench.dense_step, "dst": bench.dst_step}, args.steps, args.repeats, bench.device)
    check = check_dst_step(bench)
    evalt = median_interleaved({"eval": bench.eval_batch}, args.steps, args.repeats, bench.device)["eval"]
    b = args.batch
    out = {
        "dense_step_s": t["dense"], "dst_step_s": t["dst"],
        "dense_images_per_s": b / t["dense"], "dst_images_per_s": b / t["dst"],
        "eval_images_per_s": b / evalt, "ratio": t["dst"] / t["dense"], "check": check,
    }
    print("\n== 1. DST step vs dense step (task 1, frozen weights present) ==")
    print(f"{'step':<8}{'ms/step':>10}{'images/s':>11}")
    print(f"{'dense':<8}{1e3 * t['dense']:>10.2f}{out['dense_images_per_s']:>11.1f}")
    print(f"{'DST':<8}{1e3 * t['dst']:>10.2f}{out['dst_images_per_s']:>11.1f}")
    print(f"{'eval':<8}{1e3 * evalt:>10.2f}{out['eval_images_per_s']:>11.1f}   (forward only, no grad)")
    print(f"ratio DST/dense: {out['ratio']:.3f}   (target <= 1.10)")
    print(f"check: {check}")
    return out


def section_topology(args: argparse.Namespace, device: torch.device, dst_step_s: float) -> dict[str, Any]:
    print(f"\n== 2. Topology update per growth criterion (update_topology(0.3), every {args.update_frequency} steps) ==")
    print(f"{'growth':<10}{'ms/update':>11}{'% of ' + str(args.update_frequency) + ' DST steps':>22}")
    out = {}
    for growth in GROWTHS:
        bench = make_bench(args, device, growth=growth)
        for _ in range(max(1, args.warmup)):  # gradients and Adam moments for the gradient/momentum scores
            bench.dst_step()
        update = lambda b=bench: b.sparsity.update_topology(0.3, b.optimizer)
        update()  # warm-up
        seconds = median_interleaved({"u": update}, 1, args.repeats, device)["u"]
        bench.sparsity.check_invariants()
        pct = 100.0 * seconds / (args.update_frequency * dst_step_s)
        out[growth] = {"update_s": seconds, "amortized_pct": pct}
        print(f"{growth:<10}{1e3 * seconds:>11.2f}{pct:>21.2f}%")
        del bench
    worst = max(out, key=lambda g: out[g]["amortized_pct"])
    print(f"ratio amortized update/step (worst, {worst}): {out[worst]['amortized_pct'] / 100:.4f}   (target <= 0.02)")
    return out


def section_pipeline(args: argparse.Namespace, device: torch.device, dst_images_per_s: float) -> dict[str, Any]:
    n = 512 if args.tiny else PIPELINE_IMAGES
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)

    def epoch() -> None:
        for xb, _ in train_batches(x, y, args.batch, mean=MEAN, std=STD, generator=g,
                                   channels_last=args.channels_last):
            last = xb  # every batch is materialized; the sync in seconds_per_call waits for the last one
        del last

    epoch()
    seconds = median_interleaved({"epoch": epoch}, 1, args.repeats, device)["epoch"]
    ips = n / seconds
    out = {"images_per_s": ips, "images_per_epoch": n, "ratio": ips / dst_images_per_s}
    print("\n== 3. Data pipeline vs model ==")
    print(f"train_batches (crop+flip, normalize): {ips:,.0f} images/s over {n} images")
    print(f"DST step:                             {dst_images_per_s:,.1f} images/s")
    print(f"ratio pipeline/model: {out['ratio']:.1f}   (> 1: the pipeline is not the bottleneck)")
    return out


def tiny_run_config(args: argparse.Namespace, device: torch.device, experiment: str) -> Config:
    """A run that trains almost nothing, so the notebook's own cost stands out."""
    return Config(
        experiment=experiment, device=device.type, progress=False, dataset="synth100", num_tasks=2,
        train_per_class=2, test_per_class=2, epochs=1, width=4, image_size=16, batch_size=32,
        update_frequency=2, variant="cifar", lr=1e-3,
    ).validate()


def section_papermill(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from cldst.sweep import execute_run  # papermill is imported on first use
    from cldst.train import train_continual

    print("\n== 4. papermill overhead per run (tiny synth100 run, 2 tasks, width 4, 16 px) ==")
    cfg = tiny_run_config(args, device, "bench")
    saved_env = {k: os.environ.get(k) for k in ("CLDST_RUNS", "CLDST_OFFLINE")}
    os.environ["CLDST_OFFLINE"] = "1"
    try:
        with tempfile.TemporaryDirectory(prefix="cldst-bench-") as root:
            start = time.perf_counter()
            train_continual(cfg)  # first in this process: also loads synth100, as every kernel does
            cold = time.perf_counter() - start
            notebook = []
            for i in range(2):  # a new experiment name each time: a complete run would be skipped
                start = time.perf_counter()
                execute_run(tiny_run_config(args, device, f"bench{i}"), root)
                notebook.append(time.perf_counter() - start)
            direct = []
            for _ in range(2):
                start = time.perf_counter()
                train_continual(cfg)
                direct.append(time.perf_counter() - start)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nb, dr = min(notebook), min(direct)
    out = {"notebook_s": notebook, "direct_s": direct, "direct_cold_s": cold, "overhead_s": nb - dr,
           "dataset_load_s": cold - dr}
    print(f"execute_run (papermill, warm parent):  {', '.join(f'{s:.2f}' for s in notebook)} s")
    print(f"train_continual directly (data cached): {', '.join(f'{s:.2f}' for s in direct)} s")
    print(f"train_continual, first call (loads synth100): {cold:.2f} s  (~{cold - dr:.2f} s of data loading a kernel pays)")
    print(f"overhead per run: {nb - dr:.2f} s  (kernel start + imports + data load + record + plot)")
    print(f"ratio notebook/direct: {nb / dr:.1f}")
    return out


def section_projection(args: argparse.Namespace, device: torch.device, rates: dict[str, dict[str, float]],
                       topology: dict[str, Any], overhead_s: float) -> dict[str, Any]:
    """Device-hours of the paper grid from the measured rates, through cldst.cost (the cost model
    `cldst preflight` uses): each arch's images/s (train and eval), each criterion's update time
    (measured on --arch, assumed for the others), the papermill overhead per run."""
    update_s = {g: topology[g]["update_s"] for g in topology}

    def rates_of(cfg: Config) -> cost.Rates:
        rate = rates[cfg.arch]
        return cost.Rates(step_s=cfg.batch_size / rate["dst_images_per_s"], eval_image_s=1 / rate["eval_images_per_s"],
                          update_s=update_s, overhead_s=overhead_s)

    named = [(name, cfg) for name in experiments.experiments_of("paper") for cfg in experiments.configs(name, "paper")]
    grid = cost.grid_cost(named, rates_of)
    parts = {"train_h": "train_s", "topology_h": "topology_s", "eval_h": "eval_s", "overhead_h": "overhead_s"}

    def row(c: cost.RunCost, runs: int) -> dict[str, float]:
        return {"runs": runs, **{h: getattr(c, s) / 3600 for h, s in parts.items()}, "total_h": c.total_s / 3600}

    rows = {name: row(c, grid.runs[name]) for name, c in grid.experiments.items()}
    total = row(grid.total, grid.distinct_runs)
    setting = (f"width {args.width}, {args.image_size} px, batch {args.batch}, {args.variant} variant, {args.precision}"
               f"{', channels_last' if args.channels_last else ''}{', compile' if args.compile else ''}")
    print(f"\n== 5. Projection of the paper grid on this device ({device.type}; {setting}) ==")
    for arch, rate in rates.items():
        print(f"  {arch}: DST {rate['dst_images_per_s']:,.1f} images/s, eval {rate['eval_images_per_s']:,.1f} "
              f"images/s{' (' + rate['source'] + ')' if rate.get('source') else ''}")
    print(f"{'experiment':<18}{'runs':>5}{'train h':>11}{'topology h':>12}{'eval h':>9}{'overhead h':>12}{'total h':>11}")
    for name, r in [*rows.items(), ("TOTAL (distinct)", total)]:
        print(f"{name:<18}{r['runs']:>5}{r['train_h']:>11.1f}{r['topology_h']:>12.1f}{r['eval_h']:>9.1f}"
              f"{r['overhead_h']:>12.2f}{r['total_h']:>11.1f}")
    print(f"ratio total/train: {total['total_h'] / total['train_h']:.3f}   "
          f"({total['total_h']:,.1f} device-hours = {total['total_h'] / 24:,.1f} device-days, one run at a time)")
    return {"setting": setting, "rates": rates, "experiments": rows, "total": total}


def arch_rates(args: argparse.Namespace, device: torch.device, steps: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Train and eval images/s of every arch in the paper grid (--arch's from section 1)."""
    archs = sorted({cfg.arch for cfg in experiments.all_configs("paper")})
    rates = {args.arch: {"dst_images_per_s": steps["dst_images_per_s"], "eval_images_per_s": steps["eval_images_per_s"]}}
    for arch in archs:
        if arch in rates:
            continue
        if args.no_projection_archs:
            rates[arch] = {**rates[args.arch], "source": f"assumed = {args.arch}"}
            continue
        bench = make_bench(args, device, arch=arch)
        for _ in range(args.warmup):
            bench.dst_step()
        calls, repeats = args.steps, max(1, args.repeats // 2)
        t = median_interleaved({"dst": bench.dst_step, "eval": bench.eval_batch}, calls, repeats, device)
        rates[arch] = {"dst_images_per_s": args.batch / t["dst"], "eval_images_per_s": args.batch / t["eval"],
                       "source": f"measured, {repeats} repeats"}
        del bench
    return rates


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.steps is None:
        args.steps = 50 if device.type == "cuda" else 5
    load_before = os.getloadavg()
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"cldst speed benchmark: torch {torch.__version__}, device {device}{gpu}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load_before[0]:.2f}")
    print(f"model {args.arch} width {args.width} ({args.variant} variant), {args.image_size}x{args.image_size}, "
          f"batch {args.batch}, {args.init} density {args.density}, {args.precision}"
          f"{', channels_last' if args.channels_last else ''}{', compile' if args.compile else ''}; "
          f"{args.steps} steps x {args.repeats} repeats (median), {args.warmup} warm-up")

    load: dict[str, float | None] = {}

    def measured(name: str, what: str, fn: Callable[..., Any], *fn_args: Any) -> Any:
        with OtherLoad() as other:
            result = fn(*fn_args)
        print(other.line(what))
        load[name] = other.cores
        return result

    bench = make_bench(args, device)
    steps = measured("steps", "section 1", section_steps, bench, args)
    del bench
    topology = measured("topology", "section 2", section_topology, args, device, steps["dst_step_s"])
    pipeline = measured("pipeline", "section 3", section_pipeline, args, device, steps["dst_images_per_s"])
    papermill = None if args.no_papermill else measured("papermill", "section 4", section_papermill, args, device)
    if papermill is None:
        print("\n== 4. papermill overhead per run: skipped (--no-papermill); 0 s assumed below ==")
    rates = measured("arch_rates", "the other archs' steps (for section 5)", arch_rates, args, device, steps)
    overhead_s = papermill["overhead_s"] if papermill else 0.0
    projection = section_projection(args, device, rates, topology, overhead_s)

    load_after = os.getloadavg()
    print(f"\nload average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json is not None:
        result = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "load_average": {"before": load_before, "after": load_after}, "other_cores": load,
            "steps": steps, "topology": topology, "pipeline": pipeline, "papermill": papermill,
            "projection": projection,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=_jsonable))
        print(f"numbers written to {args.json}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
