"""cldst's `--preset authors` beside the authors' own code, on identical images, several seeds each.

    git clone https://github.com/muratonuryildirim/CL-with-DST /tmp/authors     # their code, MIT
    .venv/bin/python benchmarks/authors_side_by_side.py --authors /tmp/authors --out /tmp/sbs

Nothing of the authors' code is copied here. Their repository is imported from `--authors` and run
through its own `cifar100.main()` in a fresh working directory per run, with three changes made at
run time, all outside their training and masking code:
  * data: their `load_dataset` is replaced by one serving the images exported here (synth100 classes
    0-49 at 16 px, 80 train / 20 test per class): training images zero-padded by 4, randomly cropped and
    flipped as torchvision's RandomCrop + RandomHorizontalFlip do, test images unaugmented (their
    transform augments test images too; cldst does not: the comparison fixes evaluation to be
    deterministic on both sides). Their DataLoader (shuffle, 2 workers) is kept;
  * width: their ResNet-18's hard-coded stage widths [64, 128, 256, 512] become [w, 2w, 4w, 8w];
  * torchvision: a stub module stands in for it (it serves only their dataset classes, which are
    replaced; PyPI's torchvision does not import beside the CPU build of torch).
Their accuracy matrix is read from the array their `main()` fills, their masks from the files it saves.

Each run is a subprocess (its own wall time, start-up included), cached as JSON in --out, so an
interrupted comparison resumes. The report prints, per setting and side, mean ± std over seeds of ACC,
the final accuracy of every task, the share of each task's mask already frozen by earlier tasks
(reuse), the used fraction of all masked weights after the last task, and the wall time; then Welch's
test of the difference for each quantity. Agreement means Welch p > 0.05 and |ΔACC| <= 2 points.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jobs import Job, one_thread_env, run_jobs  # noqa: E402  (benchmarks/jobs.py, beside this script)

from cldst.stats import welch  # noqa: E402

# The comparison's fixed setting (the one the fidelity issue measured).
NUM_CLASSES, NUM_TASKS, IMAGE_SIZE, TRAIN_PER_CLASS, TEST_PER_CLASS = 50, 5, 16, 80, 20
SETTING = {"width": 16, "epochs": 4, "batch_size": 32, "density": 0.2, "update_frequency": 10, "lr": 1e-3}
# the images are made at IMAGE_SIZE with TRAIN/TEST_PER_CLASS above: cldst takes them as they are
AS_GIVEN = {"image_size": 0, "train_per_class": 0, "test_per_class": 0}
SETTINGS = ("uniform/random", "ERK/gradient")
# --ablations: the preset with one of the authors' behaviours switched back to cldst's default each
ABLATIONS = {
    "weight_init=kaiming": {"weight_init": "kaiming"},
    "reuse=value": {"reuse": "value"},
    "reuse=static": {"reuse": "static"},
    "drop=magnitude": {"drop": "magnitude"},
    "drop_count=round": {"drop_count": "round"},
    "score_fill=random": {"score_fill": "random"},
    "update_at_end=false": {"update_at_end": False},
    "checkpoint=final": {"checkpoint": "final"},
    "eval_batch_size=32": {"eval_batch_size": 0},
    "new_weights=random": {"new_weights": "random"},
    "drop_fraction_min=0": {"drop_fraction_min": 0.0},
}


# ---------------------------------------------------------------------- the shared images
def export_images(path: Path) -> None:
    """synth100 classes 0..NUM_CLASSES-1 at IMAGE_SIZE px, the first N train / M test images per class."""
    from cldst.data import load_dataset

    ds = load_dataset("synth100", image_size=IMAGE_SIZE, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS)
    keep_train, keep_test = ds.train_y < NUM_CLASSES, ds.test_y < NUM_CLASSES
    torch.save({
        "train_x": ds.train_x[keep_train].clone(), "train_y": ds.train_y[keep_train].clone(),
        "test_x": ds.test_x[keep_test].clone(), "test_y": ds.test_y[keep_test].clone(),
        "mean": ds.mean, "std": ds.std,
    }, path)


def load_images(path: Path) -> dict:
    return torch.load(path, weights_only=False)


# ---------------------------------------------------------------------- masks -> the compared quantities
def mask_statistics(masks: list[dict[str, torch.Tensor]], head: str) -> dict:
    """reuse[t]: share of task t's mask frozen by tasks < t (t >= 1); used: share of all masked weights
    in some task's mask after the last task; head_used: the same for the classifier alone."""
    union = {name: torch.zeros_like(m, dtype=torch.bool) for name, m in masks[0].items()}
    reuse = []
    for t, mask in enumerate(masks):
        mask = {name: m.bool() for name, m in mask.items()}
        if t:
            reused = sum(int((mask[n] & union[n]).sum()) for n in mask)
            reuse.append(reused / sum(int(m.sum()) for m in mask.values()))
        for n in mask:
            union[n] |= mask[n]
    total = sum(u.numel() for u in union.values())
    return {
        "reuse": reuse,
        "used": sum(int(u.sum()) for u in union.values()) / total,
        "head_used": float(union[head].float().mean()),
    }


# ---------------------------------------------------------------------- the authors' side
class ExportedSplit:
    """Their dataset interface (set_task, len, getitem -> (image, global label)) over the exported images."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, tasks, train: bool, mean, std):
        self.x, self.y, self.train = x, y, train
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.index = [torch.nonzero(torch.isin(y, torch.as_tensor(list(labels)))).flatten() for labels in tasks]
        self.task_id = 0

    def set_task(self, task_id: int) -> None:
        self.task_id = task_id

    def __len__(self) -> int:
        return len(self.index[self.task_id])

    def __getitem__(self, i: int):
        j = int(self.index[self.task_id][i])
        img = self.x[j]
        if self.train:  # RandomCrop(size, padding=4) on a zero-padded image, then a flip with p = 1/2
            size = img.shape[-1]
            padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
            top = int(torch.randint(0, 9, (1,)))
            left = int(torch.randint(0, 9, (1,)))
            img = padded[:, top : top + size, left : left + size]
            if torch.rand(1) < 0.5:
                img = img.flip(-1)
        return (img.float() / 255 - self.mean) / self.std, int(self.y[j])


def _stub_torchvision() -> None:
    tv = types.ModuleType("torchvision")
    for sub in ("transforms", "datasets", "models"):
        module = types.ModuleType(f"torchvision.{sub}")
        setattr(tv, sub, module)
        sys.modules[f"torchvision.{sub}"] = module
    sys.modules["torchvision"] = tv


def _import_models_at_width(repo: Path, width: int) -> None:
    source = (repo / "models.py").read_text()
    widths = "_outputs = [64, 128, 256, 512]"
    if source.count(widths) != 1:
        raise SystemExit(f"{repo / 'models.py'}: expected one line {widths!r}; their code changed")
    module = types.ModuleType("models")
    module.__file__ = str(repo / "models.py")
    sys.modules["models"] = module
    exec(compile(source.replace(widths, f"_outputs = {[width * m for m in (1, 2, 4, 8)]}"), module.__file__, "exec"),
         module.__dict__)


def run_authors(repo: Path, data_path: Path, init: str, growth: str, seed: int) -> dict:
    """One run of their cifar100.main() in the current (fresh) directory."""
    sys.path.insert(0, str(repo))
    _stub_torchvision()
    _import_models_at_width(repo, SETTING["width"])
    import cifar100  # their script

    data = load_images(data_path)

    def load_dataset(dataset, train=True, tasks=None):
        x, y = (data["train_x"], data["train_y"]) if train else (data["test_x"], data["test_y"])
        return ExportedSplit(x, y, tasks, train, data["mean"], data["std"])

    created: list[np.ndarray] = []

    class RecordingNumpy:  # their main() keeps the accuracy matrix in the first np.zeros it makes
        def __getattr__(self, name):
            return getattr(np, name)

        def zeros(self, *args, **kwargs):
            created.append(np.zeros(*args, **kwargs))
            return created[-1]

    cifar100.load_dataset = load_dataset
    cifar100.np = RecordingNumpy()
    sys.argv = ["cifar100.py", "--dataset", "synth", "--net_name", "resnet18",
                "--num_classes", str(NUM_CLASSES), "--num_tasks", str(NUM_TASKS),
                "--num_classes_per_task", str(NUM_CLASSES // NUM_TASKS),
                "--epochs", str(SETTING["epochs"]), "--batch_size", str(SETTING["batch_size"]),
                "--lr", str(SETTING["lr"]), "--density", str(SETTING["density"]),
                "--init", init, "--growth", growth, "--update_frequency", str(SETTING["update_frequency"]),
                "--seed", str(seed)]
    cifar100.main()
    acc_matrix = created[0]  # [T, T]: row t, column i = task i after all tasks (their test phase)
    masks = [torch.load(f"masks/synth_task{t}_resnet18_mask.pt", map_location="cpu") for t in range(NUM_TASKS)]
    return {"final_acc": acc_matrix[-1].tolist(), "acc": float(acc_matrix[-1].mean()),
            **mask_statistics(masks, "classifier.weight")}


# ---------------------------------------------------------------------- cldst's side
def run_cldst(data_path: Path, init: str, growth: str, seed: int, preset_name: str = "authors", **overrides) -> dict:
    from cldst.config import preset
    from cldst.data import ImageDataset
    from cldst.train import train_continual

    data = load_images(data_path)
    ds = ImageDataset("synth100", data["train_x"], data["train_y"], data["test_x"], data["test_y"],
                      [f"synth{k:02d}" for k in range(NUM_CLASSES)], data["mean"], data["std"])
    cfg = preset(preset_name, dataset="synth100", num_tasks=NUM_TASKS, num_classes=NUM_CLASSES,
                 sparse_init=init, growth=growth, seed=seed, progress=False, save_masks=False,
                 **SETTING, **AS_GIVEN, **overrides)
    result = train_continual(cfg, dataset=ds)
    final = result.acc_matrix[-1]
    out = {"final_acc": final.tolist(), "acc": float(np.mean(final)), "train_seconds": sum(result.task_seconds),
           "eval_seconds": result.eval_seconds,
           **mask_statistics(result.sparsity.masks, "head.weight")}
    trainable = [u.get("trainable_share") for u in result.updates]
    if trainable and trainable[0] is not None:
        out["trainable_share"] = [[u["trainable_share"] for u in result.updates if u["task"] == t]
                                  for t in range(NUM_TASKS)]
    return out


# ---------------------------------------------------------------------- driver
def one(args) -> None:
    """Child process: one run of one side; writes its JSON."""
    init, growth = args.setting.split("/")
    start = time.perf_counter()
    if args.side == "authors":
        result = run_authors(Path(args.authors), Path(args.data), init, growth, args.seed)
    else:
        overrides = json.loads(args.overrides or "{}")
        result = run_cldst(Path(args.data), init, growth, args.seed, **overrides)
    result["seconds_in_process"] = time.perf_counter() - start
    Path(args.result).write_text(json.dumps(result))


def result_path(out: Path, side: str, setting: str, seed: int, tag: str) -> Path:
    return out / f"{side}{tag}-{setting.replace('/', '-')}-s{seed}.json"


def job(out: Path, side: str, setting: str, seed: int, args) -> Job:
    """One run of one side, in its own working directory (the authors' code writes files where it runs)."""
    path = result_path(out, side, setting, seed, args.tag if side == "cldst" else "")
    workdir = out / "work" / path.stem
    cmd = [sys.executable, str(Path(__file__).resolve()), "_one", "--side", side, "--setting", setting,
           "--seed", str(seed), "--epochs", str(SETTING["epochs"]), "--data", str(out / "images.pt"),
           "--result", str(path), "--authors", str(args.authors),
           "--overrides", args.overrides or "{}"]
    return Job(cmd, path, cwd=workdir, log=workdir / "log.txt")


def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images.pt").exists():
        export_images(out / "images.pt")

    def done(path: Path, wall: float) -> None:
        result = json.loads(path.read_text())
        result["wall_seconds"] = wall
        path.write_text(json.dumps(result))
        print(f"done {path.name}: ACC {result['acc']:.1f}, {wall:.0f} s", flush=True)

    jobs = [job(out, side, setting, seed, args)
            for setting in args.settings for seed in args.seeds for side in args.sides]
    run_jobs(jobs, workers=args.workers, env=one_thread_env(args.threads) if args.threads else dict(os.environ),
             on_done=done)


def _fmt(values) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else f"{np.mean(values):.1f}"


def report(args) -> str:
    """The markdown table: per setting, each quantity on both sides and Welch's p."""
    out = Path(args.out)
    lines = []
    for setting in args.settings:
        sides = {}
        for side in ("authors", "cldst"):
            tag = args.tag if side == "cldst" else ""
            runs = [json.loads(p.read_text()) for s in args.seeds
                    if (p := result_path(out, side, setting, s, tag)).exists()]
            sides[side] = runs
        a, c = sides["authors"], sides["cldst"]
        if not a or not c:
            continue
        rows = [("ACC", [r["acc"] for r in a], [r["acc"] for r in c], 1.0)]
        rows += [(f"final accuracy, task {t}", [r["final_acc"][t] for r in a], [r["final_acc"][t] for r in c], 1.0)
                 for t in range(NUM_TASKS)]
        rows += [(f"reuse share, task {t + 1}", [r["reuse"][t] for r in a], [r["reuse"][t] for r in c], 100.0)
                 for t in range(NUM_TASKS - 1)]
        rows += [("used fraction, all masked weights", [r["used"] for r in a], [r["used"] for r in c], 100.0),
                 ("used fraction, classifier", [r["head_used"] for r in a], [r["head_used"] for r in c], 100.0)]
        lines += [f"\n### {setting} ({len(a)} seeds authors, {len(c)} seeds cldst; shares in %)\n",
                  "| quantity | authors' code | cldst `--preset authors` | Δ (cldst − authors) | Welch p |",
                  "|---|---|---|---|---|"]
        for name, xa, xc, scale in rows:
            xa, xc = np.array(xa) * scale, np.array(xc) * scale
            w = welch(xc, xa)
            lines.append(f"| {name} | {_fmt(xa)} | {_fmt(xc)} | {w.diff:+.1f} | {w.p:.2f} |")
        ta = [r.get("wall_seconds", np.nan) for r in a]
        tc = [r.get("wall_seconds", np.nan) for r in c]
        lines.append(f"| wall time per run, s (median) | {np.median(ta):.0f} | {np.median(tc):.0f} | "
                     f"ratio {np.median(ta) / np.median(tc):.2f}x | |")
    text = "\n".join(lines)
    print(text)
    return text


def ablation_tag(name: str) -> str:
    return "-abl-" + name.replace("=", "-")


def run_ablations(args) -> None:
    base = dict(vars(args))
    for name, overrides in ABLATIONS.items():
        run_all(argparse.Namespace(**{**base, "sides": ["cldst"], "tag": ablation_tag(name),
                                      "overrides": json.dumps(overrides)}))


def ablation_report(args) -> str:
    """ACC of the preset with one behaviour switched back, against the authors' code."""
    out = Path(args.out)

    def accs(side: str, setting: str, tag: str) -> list[float]:
        return [json.loads(p.read_text())["acc"] for s in args.seeds
                if (p := result_path(out, side, setting, s, tag)).exists()]

    lines = ["| cldst's preset, except | " + " | ".join(f"ACC {s} (Δ vs authors, Welch p)" for s in args.settings) + " |",
             "|---|" + "---|" * len(args.settings)]
    for name in ["(none: the preset)", *ABLATIONS]:
        tag = args.tag if name.startswith("(") else ablation_tag(name)
        cells = []
        for setting in args.settings:
            a, c = accs("authors", setting, ""), accs("cldst", setting, tag)
            w = welch(c, a)
            cells.append(f"{np.mean(c):.1f} ({w.diff:+.1f}, p {w.p:.2f})" if c else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    return text


def timing(args) -> None:
    """Whole-run wall time of each side, alternating, one run at a time with torch's default threads
    (run it on an otherwise idle machine); results are not cached."""
    out = Path(args.out) / "timing"
    out.mkdir(parents=True, exist_ok=True)
    if not (Path(args.out) / "images.pt").exists():
        export_images(Path(args.out) / "images.pt")
    walls: dict[str, list[float]] = {"authors": [], "cldst": []}
    parts = []
    for i in range(args.timing):
        for side in ("authors", "cldst"):
            path = out / f"{side}-{i}.json"
            path.unlink(missing_ok=True)
            workdir = out / f"work-{side}-{i}"
            workdir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "_one", "--side", side, "--setting",
                   args.settings[0], "--seed", "0", "--data", str(Path(args.out) / "images.pt"), "--result", str(path),
                   "--authors", str(args.authors), "--overrides", "{}"]
            start = time.perf_counter()
            with open(workdir / "log.txt", "w") as log:
                subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=True)
            walls[side].append(time.perf_counter() - start)
            if side == "cldst":
                parts.append(json.loads(path.read_text()))
    a, c = np.median(walls["authors"]), np.median(walls["cldst"])
    print(f"wall time per run ({args.settings[0]}, seed 0, {args.timing} alternating runs each, median): "
          f"authors {a:.1f} s, cldst {c:.1f} s, ratio {a / c:.2f}x")
    train = np.median([r["train_seconds"] for r in parts])
    evaluate = np.median([r["eval_seconds"] for r in parts])
    print(f"cldst's run: {train:.1f} s training, {evaluate:.1f} s evaluating, "
          f"{c - train - evaluate:.1f} s start-up (interpreter, imports, data) and record")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    child = sub.add_parser("_one")
    for name in ("--side", "--setting", "--data", "--result", "--authors", "--overrides"):
        child.add_argument(name)
    child.add_argument("--seed", type=int)
    child.add_argument("--epochs", type=int)
    p.add_argument("--authors", type=Path, help="a clone of muratonuryildirim/CL-with-DST")
    p.add_argument("--out", default="/tmp/cldst-side-by-side", help="results (cached per run) and working dirs")
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--settings", default=",".join(SETTINGS), help="init/growth pairs")
    p.add_argument("--sides", default="authors,cldst")
    p.add_argument("--workers", type=int, default=2, help="runs at a time (1 for wall-time figures)")
    p.add_argument("--threads", type=int, default=0, help="OMP threads per run (0: torch's default)")
    p.add_argument("--tag", default="", help="suffix of cldst's result files (to compare variants)")
    p.add_argument("--overrides", default="", help="JSON of Config fields changed on cldst's side")
    p.add_argument("--epochs", type=int, default=SETTING["epochs"],
                   help=f"epochs per task on both sides (default {SETTING['epochs']}; use another --out per value)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--timing", type=int, default=0, metavar="N",
                   help="only time N alternating runs of each side (first setting, seed 0), one at a time")
    p.add_argument("--ablations", action="store_true",
                   help="also run the preset with each of the authors' behaviours switched back, one at a time")
    args = p.parse_args(argv)
    SETTING["epochs"] = args.epochs
    if args.command == "_one":
        one(args)
        return
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.settings = args.settings.split(",")
    args.sides = args.sides.split(",")
    if args.timing:
        timing(args)
        return
    if not args.report_only:
        if "authors" in args.sides and (args.authors is None or not (args.authors / "cifar100.py").is_file()):
            raise SystemExit("--authors must name a clone of muratonuryildirim/CL-with-DST (with cifar100.py)")
        run_all(args)
        if args.ablations:
            run_ablations(args)
    report(args)
    if args.ablations:
        print()
        ablation_report(args)


if __name__ == "__main__":
    main()
