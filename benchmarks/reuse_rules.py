"""Which reuse rule keeps every task trainable? The measurement that chose cldst's default `reuse`.

    .venv/bin/python benchmarks/reuse_rules.py --out /tmp/reuse-rules        # ~15 min on 2 CPU cores

Setting (fixed before any number was read): synth100, all 100 classes in 10 tasks, 16 px, 80 train /
20 test images per class, ResNet-18 width 16 (cldst's default variant), 4 epochs of batch 32 per task
(100 steps, a topology update every 10: 9 per task), Adam lr 1e-3, density 0.1, cldst's defaults
otherwise; two settings, uniform/random and ERK/gradient; seeds 0-3; every rule of
`cldst.sparse.REUSES`.

Decision rule (stated in docs/authors_code.md before the runs):
  1. a rule starves later tasks when, averaged over tasks 5-9, the trainable share of a task's mask
     after its last update is below half the share at its draw;
  2. "authors" is out whatever it scores: its evaluated subnetwork is not the trained one;
  3. of the remaining rules that do not starve, the highest mean ACC over both settings wins, unless
     it is not better than "separate" in either setting (Welch p < 0.05): then "separate", which keeps
     drop and growth over the whole mask as the paper describes.
Each run is cached as JSON in --out; the report prints ACC and the trainable shares per rule.
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

from cldst.sparse import REUSES  # noqa: E402
from cldst.stats import welch  # noqa: E402

SETTING = {"dataset": "synth100", "num_tasks": 10, "image_size": 16, "train_per_class": 80, "test_per_class": 20,
           "width": 16, "variant": "cifar", "epochs": 4, "batch_size": 32, "lr": 1e-3, "update_frequency": 10,
           "density": 0.1, "progress": False,
           "save_masks": False}
SETTINGS = ("uniform/random", "ERK/gradient")


def one(reuse: str, setting: str, seed: int, path: Path) -> None:
    from cldst.config import Config
    from cldst.train import train_continual

    init, growth = setting.split("/")
    start = time.perf_counter()
    result = train_continual(Config(**SETTING, sparse_init=init, growth=growth, reuse=reuse, seed=seed))
    m = result.metrics()
    path.write_text(json.dumps({
        "acc": m["acc"], "final_acc": result.acc_matrix[-1].tolist(),
        "trainable_start": m["trainable_share_start"], "trainable_end": m["trainable_share_end"],
        "updates": [{k: u[k] for k in ("task", "step", "trainable_share")} for u in result.updates],
        "seconds": time.perf_counter() - start,
    }))


def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed in args.seeds:
        for setting in SETTINGS:
            for reuse in REUSES:
                path = out / f"{reuse}-{setting.replace('/', '-')}-s{seed}.json"
                jobs.append(Job([sys.executable, __file__, "_one", reuse, setting, str(seed), str(path)], path))
    run_jobs(jobs, workers=args.workers,
             on_done=lambda path, _: print(f"done {path.name}: ACC {json.loads(path.read_text())['acc']:.1f}", flush=True))


def report(args) -> None:
    out = Path(args.out)
    runs = {(r, s): [json.loads(p.read_text()) for seed in args.seeds
                     if (p := out / f"{r}-{s.replace('/', '-')}-s{seed}.json").exists()]
            for r in REUSES for s in SETTINGS}
    print("| setting | reuse | ACC | trainable share at draw, tasks 5-9 | after the last update | "
          "ratio | starves |")
    print("|---|---|---|---|---|---|---|")
    for s in SETTINGS:
        for r in REUSES:
            rs = runs[(r, s)]
            if not rs:
                continue
            acc = [x["acc"] for x in rs]
            start = np.mean([x["trainable_start"][5:] for x in rs])
            end = np.mean([x["trainable_end"][5:] for x in rs])
            print(f"| {s} | {r} | {np.mean(acc):.1f} ± {np.std(acc, ddof=1):.1f} | {start:.2f} | {end:.2f} | "
                  f"{end / start:.2f} | {'yes' if end < start / 2 else 'no'} |")
    print("\nWelch tests of ACC against `separate` (difference, p):")
    for s in SETTINGS:
        base = [x["acc"] for x in runs[("separate", s)]]
        for r in REUSES:
            if r != "separate" and runs[(r, s)] and len(base) > 1:
                w = welch([x["acc"] for x in runs[(r, s)]], base)
                print(f"  {s:15s} {r:8s} {w.diff:+.1f} points, p = {w.p:.3f}")
    print("\nTrainable share of each task's mask after its last update (mean over seeds), seed-averaged:")
    for s in SETTINGS:
        for r in REUSES:
            rs = runs[(r, s)]
            if rs:
                shares = np.mean([x["trainable_end"] for x in rs], axis=0)
                print(f"  {s:15s} {r:8s} " + " ".join(f"{v:.2f}" for v in shares))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        one(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/cldst-reuse-rules")
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report_only:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
