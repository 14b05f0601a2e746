"""Size the `cpu` profile: the embedded synth100, scaled so a 10-task run says something and is quick.

    .venv/bin/python benchmarks/calibrate_cpu.py --out /tmp/cpu-calibration            # the scan
    .venv/bin/python benchmarks/calibrate_cpu.py --out /tmp/cpu-calibration --candidates w8-32px --seeds 0,1,2

Criteria, fixed before any candidate was measured (benchmarks/README.md repeats them with the table):
  1. meaningful: ACC >= 3x chance (30% for 10-class tasks) in every probe configuration, the hardest
     included (uniform, 95% sparsity);
  2. steady: the sample std of ACC over 3 seeds <= 2 points in each probe configuration;
  3. capacity matters: on task 1, the dense network (density 1) beats the 95%-sparse one (uniform,
     density 0.05) by >= 5 points, mean over 3 seeds;
  4. quick: a 10-task run's training plus evaluation <= 20 s on one core while a second run uses the
     other core (how `make demo` runs them);
and of the candidates that pass, the one whose runs are fastest. Nothing about the findings enters:
they are read only after the profile is fixed.

Every candidate keeps the paper profile's code path and network (ResNet-18 with the authors' stem,
their batch-statistics BatchNorm, cldst's defaults otherwise) and changes only scale: image size,
width, images per class, epochs, learning rate and ΔT (a topology update every ΔT steps, several per
task). Runs are subprocesses with one thread each, two at a time, cached as JSON in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jobs import Job, run_jobs  # noqa: E402  (benchmarks/jobs.py, beside this script)

# name -> Config fields (the scale only); every candidate: synth100, 10 tasks, batch 32
CANDIDATES: dict[str, dict] = {
    "w8-16px": {"image_size": 16, "width": 8, "train_per_class": 100, "epochs": 3, "lr": 3e-3, "update_frequency": 10},
    "w16-16px": {"image_size": 16, "width": 16, "train_per_class": 100, "epochs": 3, "lr": 3e-3, "update_frequency": 10},
    "w8-32px": {"image_size": 32, "width": 8, "train_per_class": 100, "epochs": 3, "lr": 3e-3, "update_frequency": 10},
    "w16-32px": {"image_size": 32, "width": 16, "train_per_class": 100, "epochs": 3, "lr": 3e-3, "update_frequency": 10},
    "w8-32px-lr1e-3": {"image_size": 32, "width": 8, "train_per_class": 100, "epochs": 3, "lr": 1e-3,
                       "update_frequency": 10},
    "w8-32px-200": {"image_size": 32, "width": 8, "train_per_class": 200, "epochs": 2, "lr": 3e-3,
                    "update_frequency": 15},
    # after the first scan: more distinct images for fewer passes, larger batches (less per-step overhead)
    "w8-32px-200x1": {"image_size": 32, "width": 8, "train_per_class": 200, "epochs": 1, "lr": 3e-3,
                      "update_frequency": 10},
    "w8-32px-300x1-b64": {"image_size": 32, "width": 8, "train_per_class": 300, "epochs": 1, "batch_size": 64,
                          "lr": 3e-3, "update_frequency": 8},
    "w8-32px-200x2-b64": {"image_size": 32, "width": 8, "train_per_class": 200, "epochs": 2, "batch_size": 64,
                          "lr": 3e-3, "update_frequency": 10},
    "w8-32px-400x1-b64": {"image_size": 32, "width": 8, "train_per_class": 400, "epochs": 1, "batch_size": 64,
                          "lr": 3e-3, "update_frequency": 10},
    # third round: 30 test images per class (evaluation was a quarter of a run), within the time budget
    "w8-32px-200x1-b64-t30": {"image_size": 32, "width": 8, "train_per_class": 200, "epochs": 1, "batch_size": 64,
                              "test_per_class": 30, "lr": 3e-3, "update_frequency": 5},
    "w8-32px-250x1-b64-t30": {"image_size": 32, "width": 8, "train_per_class": 250, "epochs": 1, "batch_size": 64,
                              "test_per_class": 30, "lr": 3e-3, "update_frequency": 6},
    "w8-32px-300x1-b64-t30": {"image_size": 32, "width": 8, "train_per_class": 300, "epochs": 1, "batch_size": 64,
                              "test_per_class": 30, "lr": 3e-3, "update_frequency": 8},
}
COMMON = {"dataset": "synth100", "num_tasks": 10, "batch_size": 32, "test_per_class": 50, "variant": "authors",
          "progress": False, "save_masks": False}
# probe configurations: the grid's corners, the hardest first
PROBES: dict[str, dict] = {
    "uniform-random-95%": {"sparse_init": "uniform", "growth": "random", "density": 0.05},
    "ERK-gradient-80%": {"sparse_init": "ERK", "growth": "gradient", "density": 0.2},
    "uniform-random-80%": {"sparse_init": "uniform", "growth": "random", "density": 0.2},
    "ERK-random-95%": {"sparse_init": "ERK", "growth": "random", "density": 0.05},
    "dense-task1": {"sparse_init": "uniform", "growth": "random", "density": 1.0},
}


def one(candidate: str, probe: str, seed: int, path: Path) -> None:
    from cldst.config import Config
    from cldst.train import train_continual

    fields = {**COMMON, **CANDIDATES[candidate], **PROBES[probe], "seed": seed}  # a candidate may override COMMON
    start = time.perf_counter()
    result = train_continual(Config(**fields))
    path.write_text(json.dumps({
        "acc": result.metrics()["acc"], "task1": float(result.acc_matrix[0, 0]),
        "train_seconds": sum(result.task_seconds), "eval_seconds": result.eval_seconds,
        "seconds": time.perf_counter() - start, "updates": len(result.updates),
    }))


def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def done(path: Path, _wall: float) -> None:
        r = json.loads(path.read_text())
        print(f"{path.stem}: ACC {r['acc']:.1f}, task 1 {r['task1']:.1f}, "
              f"{r['train_seconds'] + r['eval_seconds']:.1f} s", flush=True)

    run_jobs([Job([sys.executable, __file__, "_one", c, p, str(s), str(out / f"{c}-{p}-s{s}.json")],
                  out / f"{c}-{p}-s{s}.json")
              for c in args.candidates for p in args.probes for s in args.seeds], workers=2, on_done=done)


def report(args) -> None:
    out = Path(args.out)
    print("| candidate | probe | seeds | ACC | std | task 1 | train + eval, s |")
    print("|---|---|---|---|---|---|---|")
    for c in args.candidates:
        for p in args.probes:
            rs = [json.loads(f.read_text()) for s in args.seeds if (f := out / f"{c}-{p}-s{s}.json").exists()]
            if not rs:
                continue
            acc = [r["acc"] for r in rs]
            std = f"{np.std(acc, ddof=1):.1f}" if len(rs) > 1 else "—"
            secs = np.median([r["train_seconds"] + r["eval_seconds"] for r in rs])
            print(f"| {c} | {p} | {len(rs)} | {np.mean(acc):.1f} | {std} | {np.mean([r['task1'] for r in rs]):.1f} | "
                  f"{secs:.1f} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        one(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/cldst-cpu-calibration")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--probes", default=",".join(PROBES))
    p.add_argument("--seeds", default="0")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    args.candidates, args.probes = args.candidates.split(","), args.probes.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report_only:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
