"""Before a grid burns device-hours: prove each configuration runs on the target device, say what it costs.

`cldst preflight EXPERIMENTS --profile P` (and `cldst sweep`, before it hands out runs) does, in order:
  1. configurations   every one validated (Config.validate), duplicates by run id counted once;
  2. data             each dataset the grid needs: embedded, present and complete (CIFAR-100's tarball
                      against the md5 its source publishes; miniImageNet's zip, for which Kaggle publishes
                      none, by its listing: 100 class folders of images), or downloadable (with its size).
                      Nothing is downloaded;
  3. device           (the costly part) every distinct shape of the grid (network x input shape x device,
                      `shape_key`) built on the target device with synthetic images of the right size, then:
                      training steps of task 0, a topology update with each growth criterion the grid uses,
                      the switch to task 1 (task 0's weights frozen), steps of task 1 and an evaluation of
                      both tasks; after each, the sparsity invariants (exact per-layer mask counts and
                      density, frozen weights bitwise unchanged, task 0's subnetwork and accuracy unchanged).
                      Measured: step time, evaluation time per image, update time, peak memory
                      (CUDA: torch.cuda.max_memory_allocated; CPU: the process's resident memory, sampled
                      every 10 ms, above what it was before the check), the masks' bytes per task, and the
                      per-run overhead of the notebook (two tiny runs through it, as a sweep runs them),
                      and the CPU cores other processes used meanwhile (their load slows what is measured);
  4. cost             from those measurements (cldst.cost): device-hours per experiment and in total, the
                      wall time with the sweep's parallelism, the disk its records will take against the
                      free space of the runs directory.
One table on screen, `preflight.json` beside the runs, one FAILED line per configuration that fails.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cldst import cost
from cldst.config import Config
from cldst.errors import CldstError, one_line
from cldst.machine_load import OtherLoad

STEPS = 3  # timed training steps of each task per shape (after one untimed warm-up step)
BUSY_CORES = 0.5  # others' load (CPU cores) from which the device check's line says its times include it
CIFAR_BYTES = 169_001_437  # cifar-100-python.tar.gz as its source serves it (161 MiB)


@dataclass
class Failure:
    what: str  # the run id, or the dataset
    cause: str  # one line

    def line(self) -> str:
        return f"FAILED {self.what}: {self.cause}"


@dataclass
class DataCheck:
    dataset: str
    root: str
    state: str  # embedded | present | downloadable | missing | damaged
    detail: str
    download_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.state in ("embedded", "present", "downloadable")


@dataclass
class ShapeCheck:
    shape: str  # the shape, in words
    device: str
    runs: int  # configurations of the grid with this shape
    example: str  # the run id whose configuration was checked
    ok: bool = False
    error: str = ""
    step_s: float = math.nan
    eval_image_s: float = math.nan
    update_s: dict[str, float] = field(default_factory=dict)
    peak_bytes: int = 0
    memory: str = ""  # what peak_bytes measures
    mask_task_bytes: int = 0
    layers: int = 0
    seconds: float = 0.0  # the whole check

    def rates(self, overhead_s: float) -> cost.Rates:
        return cost.Rates(step_s=self.step_s, eval_image_s=self.eval_image_s, update_s=self.update_s,
                          overhead_s=overhead_s, mask_task_bytes=self.mask_task_bytes, layers=self.layers)


@dataclass
class Report:
    profile: str
    device: str
    listed: int  # configurations as the experiments list them
    runs: int  # distinct runs
    failures: list[Failure] = field(default_factory=list)
    data: list[DataCheck] = field(default_factory=list)
    shapes: list[ShapeCheck] = field(default_factory=list)
    overhead_s: float | None = None  # per run, measured (0 when not asked)
    startup_s: float | None = None  # per worker: its process and first kernel, measured
    other_load_cores: float | None = None  # CPU cores other processes used during the device check
    cost: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


# ---------------------------------------------------------------------- 1. configurations
def check_configs(named: Sequence[tuple[str, Config]]) -> tuple[list[tuple[str, Config]], list[Failure]]:
    """The valid (experiment, config) pairs and one Failure per invalid one."""
    good, failures = [], []
    for name, cfg in named:
        try:
            good.append((name, cfg.validate()))
        except CldstError as exc:
            failures.append(Failure(f"{name} {_describe_config(cfg)}", str(exc)))
    return good, failures


def _describe_config(cfg: Config) -> str:
    try:
        return cfg.run_id()
    except Exception:  # a value too broken to name the run by
        return f"{cfg.dataset}-{cfg.arch}-seed{cfg.seed}"


# ---------------------------------------------------------------------- 2. data
def check_data(cfgs: Sequence[Config]) -> list[DataCheck]:
    """Each distinct (dataset, data root) of `cfgs`: present, downloadable or missing. Downloads nothing."""
    from cldst.paths import data_dir

    out, seen = [], set()
    for cfg in cfgs:
        root = Path(cfg.data_root).expanduser() if cfg.data_root else data_dir()
        if (cfg.dataset, root) in seen:
            continue
        seen.add((cfg.dataset, root))
        check = {"synth100": lambda r: DataCheck("synth100", str(r), "embedded", "generated in each run, nothing to fetch"),
                 "cifar100": _check_cifar100, "miniimagenet": _check_miniimagenet}[cfg.dataset]
        out.append(check(root))
    return out


def _check_cifar100(root: Path) -> DataCheck:
    from cldst.data import cifar100

    folder, archive = root / cifar100.FOLDER, root / cifar100.ARCHIVE
    if folder.is_dir():
        missing = [m for m in cifar100.MEMBERS if not (folder / m).is_file()]
        if missing:
            return DataCheck("cifar100", str(root), "damaged", f"{folder}: file(s) {', '.join(missing)} missing")
        return DataCheck("cifar100", str(root), "present", f"{folder}/ with train, test, meta (the source publishes "
                         "a checksum of the tarball only; the loader checks every array's shape and labels)")
    if archive.is_file():
        digest = hashlib.md5()
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != cifar100.MD5:
            return DataCheck("cifar100", str(root), "damaged",
                             f"{archive}: md5 {digest.hexdigest()} is not the published {cifar100.MD5}; delete it")
        return DataCheck("cifar100", str(root), "present", f"{archive}: md5 matches the published one")
    if os.environ.get("CLDST_OFFLINE") == "1":
        return DataCheck("cifar100", str(root), "missing", f"not in {root} and CLDST_OFFLINE=1 forbids the download; "
                         f"put {cifar100.ARCHIVE} ({cifar100.URL}) there")
    return DataCheck("cifar100", str(root), "downloadable",
                     f"{cost.size(CIFAR_BYTES)} from {cifar100.URL} into {root} (md5 checked on download)", CIFAR_BYTES)


def _check_miniimagenet(root: Path) -> DataCheck:
    import zipfile

    from cldst.data import miniimagenet
    from cldst.errors import DataError

    try:
        archive = miniimagenet.find_zip(root)
    except DataError as exc:
        return DataCheck("miniimagenet", str(root), "missing", f"{exc} (it cannot be downloaded for you: Kaggle "
                         "needs a login)")
    try:
        with zipfile.ZipFile(archive) as zf:
            classes = miniimagenet.list_classes(zf, archive)
    except (DataError, zipfile.BadZipFile, OSError) as exc:
        return DataCheck("miniimagenet", str(root), "damaged", one_line(exc))
    images = sum(len(v) for v in classes.values())
    if len(classes) != 100:
        return DataCheck("miniimagenet", str(root), "damaged", f"{archive}: {len(classes)} class folders, expected 100")
    return DataCheck("miniimagenet", str(root), "present",
                     f"{archive}: 100 class folders, {images} images (Kaggle publishes no checksum: the listing is "
                     "checked here, every image's CRC when the first run decodes it)")


# ---------------------------------------------------------------------- 3. device
SHAPE_FIELDS = ("arch", "width", "variant", "bn", "head", "num_classes", "num_tasks", "batch_size",
                "eval_batch_size", "precision", "channels_last", "compile")


def shape_key(cfg: Config) -> tuple:
    """What decides whether a run fits and how fast it goes on a device: the network, its input and its
    tasks (heads, per-task BatchNorms). Not the data's content, the seed or the sparsity settings."""
    return (*(getattr(cfg, f) for f in SHAPE_FIELDS), cost.image_size(cfg))


def describe_shape(cfg: Config) -> str:
    extras = [f"bn={cfg.bn}"] if cfg.bn != "batch" else []
    extras += [f"head={cfg.head}"] if cfg.head != "shared" else []
    extras += [cfg.precision] if cfg.precision != "fp32" else []
    extras += ["channels_last"] if cfg.channels_last else []
    extras += ["compile"] if cfg.compile else []
    return (f"{cfg.arch} w{cfg.width} {cfg.variant} {cost.image_size(cfg)}px b{cfg.batch_size} T{cfg.num_tasks}"
            + "".join(f" {e}" for e in extras))


def synthetic_dataset(cfg: Config, steps: int):
    """Random images of the run's size, enough for `steps` batches of one task and one test batch."""
    import torch

    from cldst.data import ImageDataset

    per_task = cost.classes_per_task(cfg)
    train = math.ceil(steps * cfg.batch_size / per_task)
    test = math.ceil((cfg.eval_batch_size or cfg.batch_size) / per_task)
    size, n = cost.image_size(cfg), cfg.num_classes
    g = torch.Generator().manual_seed(0)

    def images(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 256, (n * k, 3, size, size), dtype=torch.uint8, generator=g)
        return x, torch.arange(n).repeat_interleave(k)

    (train_x, train_y), (test_x, test_y) = images(train), images(test)
    return ImageDataset("synthetic", train_x, train_y, test_x, test_y, [f"c{i}" for i in range(n)],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


class _PeakMemory:
    """Peak memory of the block: CUDA's allocator peak, or on CPU the process's resident set sampled every
    10 ms, above where it was when the block began."""

    def __init__(self, device) -> None:
        self.device = device

    def __enter__(self) -> _PeakMemory:
        import psutil
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "torch.cuda.max_memory_allocated"
            return self
        self.kind = "CPU resident memory above the start, sampled every 10 ms"
        proc = psutil.Process()
        self.start = self.peak = proc.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
            return
        self._stop.set()
        self._thread.join()
        self.bytes = int(self.peak - self.start)


def check_shape(cfg: Config, device: str, growths: Sequence[str], runs: int = 1, steps: int = STEPS) -> ShapeCheck:
    """Build `cfg`'s network on `device` and take it through task 0, a topology update per growth
    criterion, the switch to task 1 and evaluations, checking the sparsity invariants after each."""
    import torch

    from cldst.data import train_batches
    from cldst.train import Trainer, resolve_device

    result = ShapeCheck(describe_shape(cfg), device, runs, cfg.run_id())
    start = time.perf_counter()
    try:
        dev = resolve_device(device)
        result.device = str(dev)
        with _PeakMemory(dev) as peak:
            check = cfg.replace(device=device, progress=False, epochs=1)
            trainer = Trainer(check, dataset=synthetic_dataset(check, steps + 1))
            _run_checks(trainer, dev, growths, steps, result, train_batches, torch)
        result.peak_bytes, result.memory = peak.bytes, peak.kind
        result.ok = True
    except Exception as exc:  # any failure of this shape is the finding: said in one line
        result.error = one_line(exc)
        if os.environ.get("CLDST_DEBUG"):
            traceback.print_exc()
    result.seconds = time.perf_counter() - start
    return result


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _run_checks(trainer, dev, growths, steps, result, train_batches, torch) -> None:
    sp, cfg = trainer.sparsity, trainer.cfg
    total = sum(sp.counts.values())
    numel = sum(p.numel() for p in sp.params.values())
    result.layers = len(sp.params)

    def check_masks(where: str) -> None:
        sp.check_invariants()  # non-zero only inside the mask, frozen values in place, exact counts
        counts = {name: int(m.sum()) for name, m in sp.mask.items()}
        wrong = [name for name in counts if counts[name] != sp.counts[name]]
        if wrong:
            raise AssertionError(f"{where}: layer {wrong[0]} has {counts[wrong[0]]} weights in its mask, "
                                 f"not {sp.counts[wrong[0]]}")
        if sum(counts.values()) / numel != total / numel:
            raise AssertionError(f"{where}: mask density {sum(counts.values()) / numel} != {total / numel}")

    def train(t: int, optimizer) -> float:
        """One untimed warm-up step, then `steps` timed ones; seconds per step (median)."""
        data = trainer.tasks[t]
        batches = train_batches(data.train_x, data.train_y, cfg.batch_size, mean=trainer.data.mean,
                                std=trainer.data.std, generator=trainer.generator, channels_last=cfg.channels_last)
        times = []
        for step, (x, y) in enumerate(batches, start=1):
            t0 = time.perf_counter()
            loss, _, _ = trainer.train_step(x, y, t, optimizer, step, update=False)
            _sync(dev)
            times.append(time.perf_counter() - t0)
            if not torch.isfinite(loss):
                raise AssertionError(f"task {t}, step {step}: loss {loss.item()} is not finite")
            if step == steps + 1:
                break
        check_masks(f"after task {t}'s steps")
        return statistics.median(times[1:]) if len(times) > 1 else times[0]

    def evaluate(t: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        acc = trainer.evaluate_task(t)
        _sync(dev)
        return acc, (time.perf_counter() - t0) / len(trainer.tasks[t].test_y)

    total_steps = 100 * (steps + 1)  # a long task: the drop fraction stays near its start
    sp.begin_task(0, total_steps)
    check_masks("task 0's initial mask")
    optimizer = trainer.optimizer(0)
    step_s = [train(0, optimizer)]
    for growth in growths:  # the criteria the grid uses, each a real update of task 0's topology
        sp.set_growth(growth)
        t0 = time.perf_counter()
        sp.update_topology(sp.drop_fraction(steps), optimizer)
        _sync(dev)
        result.update_s[growth] = time.perf_counter() - t0
        check_masks(f"after a topology update ({growth} growth)")
    sp.end_task()
    trainer.recalibrate_norms(0)
    evaluate(0)  # warm-up
    acc0, eval_s = evaluate(0)
    task0 = {name: torch.where(sp.masks[0][name], sp.values[name], 0.0).clone() for name in sp.params}
    with tempfile.TemporaryDirectory() as tmp:  # what one task's mask takes in a record
        sp.save_masks(Path(tmp) / "one.pt")
        one = (Path(tmp) / "one.pt").stat().st_size
    sp.begin_task(1, total_steps)
    check_masks("task 1's initial mask")
    step_s.append(train(1, trainer.optimizer(1)))
    sp.end_task()
    trainer.recalibrate_norms(1)
    changed = [name for name in sp.params if not torch.equal(torch.where(sp.masks[0][name], sp.values[name], 0.0),
                                                             task0[name])]
    if changed:
        raise AssertionError(f"task 1 changed task 0's frozen weights (layer {changed[0]})")
    acc1, eval1 = evaluate(1)
    again, _ = evaluate(0)
    if cfg.bn != "standard" and again != acc0:  # a BatchNorm shared by all tasks may change task 0's
        raise AssertionError(f"task 0's accuracy changed after task 1: {acc0} -> {again}")
    with tempfile.TemporaryDirectory() as tmp:
        sp.save_masks(Path(tmp) / "two.pt")
        result.mask_task_bytes = (Path(tmp) / "two.pt").stat().st_size - one
    result.step_s = statistics.median(step_s)
    result.eval_image_s = statistics.median([eval_s, eval1])


def measure_overhead(device: str) -> tuple[float, float]:
    """Seconds a run spends outside training and evaluation when a sweep executes it (notebook kernel,
    imports, data load, record, figures), and what a worker's first run costs more (its kernel starts):
    two tiny runs through the notebook (the second in the first's warm kernel, as a sweep worker runs
    them); the second minus the same run called directly, and the first minus the second."""
    from cldst.sweep import execute_run
    from cldst.train import train_continual

    cfg = Config(device=device, progress=False, dataset="synth100", num_tasks=2, train_per_class=2,
                 test_per_class=2, epochs=1, width=4, image_size=16, batch_size=32, update_frequency=2).validate()
    saved = os.environ.get("CLDST_OFFLINE")
    os.environ["CLDST_OFFLINE"] = "1"
    try:
        with tempfile.TemporaryDirectory(prefix="cldst-preflight-") as root:
            train_continual(cfg)  # loads synth100 in this process first, as every kernel does
            notebook = []
            for i in range(2):  # a new experiment each time: a complete run would be skipped
                t0 = time.perf_counter()
                execute_run(cfg.replace(experiment=f"preflight{i}"), root)
                notebook.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            train_continual(cfg)
            direct = time.perf_counter() - t0
    finally:
        if saved is None:
            os.environ.pop("CLDST_OFFLINE", None)
        else:
            os.environ["CLDST_OFFLINE"] = saved
    return max(0.0, notebook[1] - direct), max(0.0, notebook[0] - notebook[1])


# ---------------------------------------------------------------------- the whole preflight
def run(named: Sequence[tuple[str, Config]], *, profile: str, device: str = "auto", root: str | Path | None = None,
        parallel: int = 1, threads: int = 0, device_check: bool = True, overhead: bool = True, steps: int = STEPS,
        out=print, write: bool = True) -> Report:
    """Check (experiment, config) pairs; print the table; write preflight.json beside the runs (write).
    `parallel` runs at once; on a CPU each gets `threads` threads (0: its share of this machine's cores)."""
    start = time.perf_counter()
    good, failures = check_configs(named)
    distinct = list({cfg.run_id(): (name, cfg) for name, cfg in reversed(good)}.values())[::-1]
    report = Report(profile, device, len(named), len({c.run_id() for _, c in good}), failures)
    out(f"preflight: {report.runs} distinct runs ({report.listed} listed) of "
        f"{len({n for n, _ in named})} experiment(s), profile {profile}; {len(failures)} invalid")

    report.data = check_data([c for _, c in distinct])
    for d in report.data:
        out(f"data {d.dataset:12s} {d.state}: {d.detail}")
    for d in (d for d in report.data if not d.ok):
        for name, cfg in distinct:
            if cfg.dataset == d.dataset:
                report.failures.append(Failure(f"{name} {cfg.run_id()}", f"data {d.state}: {d.detail}"))

    if device_check and good:
        threads, before = _threads_like_a_worker(device, parallel, threads)
        try:
            _device_part(distinct, good, report, device, root, parallel, steps, overhead, threads, out)
        finally:
            if threads:
                import torch

                torch.set_num_threads(before)
    report.seconds = time.perf_counter() - start
    for f in report.failures:
        out(f.line())
    out(f"preflight {'passed' if report.ok else 'FAILED'} in {report.seconds:.0f} s"
        + ("" if report.ok else f": {len(report.failures)} configuration(s) fail"))
    if good and write:
        write_report(report, good[0][1], root, out)
    return report


def write_report(report: Report, cfg: Config, root, out=print) -> None:
    """preflight.json beside the runs of `cfg`'s profile."""
    from cldst import records

    path = records.run_dir(cfg, root).parent / "preflight.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    records.write_json(path, _jsonable(report))
    out(f"written: {path}")


def run_collected(named: Sequence[tuple[str, Config]], options: dict) -> tuple[Report, list[str]]:
    """`run` with its lines kept, not printed, and nothing written: what a preflight job on a cluster node
    executes (executors.cluster.preflight_job); the sweep's own process prints the lines and writes the file."""
    lines: list[str] = []
    return run(named, **options, out=lines.append, write=False), lines


def _device_part(distinct, good, report: Report, device: str, root, parallel: int, steps: int, overhead: bool,
                 threads: int, out) -> None:
    groups: dict[tuple, list[Config]] = {}
    for _, cfg in distinct:
        groups.setdefault(shape_key(cfg), []).append(cfg)
    out(f"device check: {len(groups)} distinct shape(s) on {_device_name(device)}, {steps} steps per task"
        + (f", {threads} CPU thread(s) as each of {parallel} sweep worker(s) gets" if threads else ""))
    shape_of: dict[tuple, ShapeCheck] = {}
    with OtherLoad() as other:
        for key, cfgs in groups.items():
            growths = sorted(set().union(*(cost.growth_criteria(c) for c in cfgs)))
            check = check_shape(cfgs[0], device, growths, runs=len(cfgs), steps=steps)
            shape_of[key] = check
            report.shapes.append(check)
            out(_shape_line(check))
            if not check.ok:
                report.failures += [Failure(f"{name} {cfg.run_id()}", f"{check.shape} on {check.device}: {check.error}")
                                    for name, cfg in distinct if shape_key(cfg) == key]
    report.other_load_cores = other.cores
    out(other.line("the device check") + (
        ": the times above include their load, and so does the cost below (a quieter machine runs faster)"
        if other.cores is not None and other.cores >= BUSY_CORES else ""))
    if all(s.ok for s in report.shapes):
        report.overhead_s, report.startup_s = measure_overhead(device) if overhead else (0.0, 0.0)
        grid = cost.grid_cost(good, lambda c: shape_of[shape_key(c)].rates(report.overhead_s))
        report.cost = _cost_table(grid, parallel, root, [c for _, c in distinct], report, out)


def _device_name(device: str) -> str:
    """The device `device` resolves to here, in words (or what it asked for, when it cannot)."""
    import torch

    from cldst.train import resolve_device

    try:
        dev = resolve_device(device)
    except CldstError:
        return device
    return f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "cpu"


def _threads_like_a_worker(device: str, parallel: int, threads: int = 0) -> tuple[int, int]:
    """On a CPU, measure what one of `parallel` sweep workers gets: `threads` if given (a cluster job's
    CPUs), else its share of the cores (cldst.sweep sets OMP_NUM_THREADS so); 0 (unchanged) on a GPU.
    Returns it and the number before."""
    import torch

    from cldst.train import resolve_device

    try:
        if resolve_device(device).type != "cpu":
            return 0, 0
    except CldstError:
        return 0, 0  # check_shape says why, per shape
    threads, before = threads or max(1, (os.cpu_count() or 1) // max(parallel, 1)), torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads, before


def _shape_line(s: ShapeCheck) -> str:
    if not s.ok:
        return f"  {s.shape:44s} {s.runs:4d} runs  FAILED: {s.error}"
    updates = ", ".join(f"{g} {1e3 * v:.0f}" for g, v in s.update_s.items())
    return (f"  {s.shape:44s} {s.runs:4d} runs  step {1e3 * s.step_s:7.1f} ms  eval {1e6 * s.eval_image_s:7.1f} us/image"
            f"  update ms: {updates}  peak {cost.size(s.peak_bytes)}  ok ({s.seconds:.1f} s)")


def _cost_table(grid: cost.GridCost, parallel: int, root, cfgs: list[Config], report: Report, out) -> dict[str, Any]:
    import shutil

    from cldst import records

    runs_root = records.run_dir(cfgs[0], root).parent
    probe = next((p for p in [runs_root, *runs_root.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    out(f"cost on {report.shapes[0].device if report.shapes else report.device} (measured above; per-run overhead "
        f"{report.overhead_s:.1f} s):")
    out(f"  {'experiment':18s}{'runs':>6}{'train':>9}{'topology':>10}{'eval':>8}{'overhead':>10}{'total':>9}{'disk':>10}")
    rows = {}
    for name, c in [*grid.experiments.items(), ("TOTAL (distinct)", grid.total)]:
        n = grid.runs.get(name, grid.distinct_runs)
        out(f"  {name:18s}{n:>6}{cost.hours(c.train_s):>9}{cost.hours(c.topology_s):>10}{cost.hours(c.eval_s):>8}"
            f"{cost.hours(c.overhead_s):>10}{cost.hours(c.total_s):>9}{cost.size(c.disk_bytes):>10}")
        rows[name] = {"runs": n, **asdict(c), "total_s": c.total_s}
    wall = grid.wall_s(parallel, report.startup_s or 0.0)
    out(f"  device time {grid.total.total_s / 3600:.2f} h; wall with {parallel} run(s) at once: {cost.hours(wall)} "
        f"(longest run {cost.hours(grid.longest_run_s)}, worker start {report.startup_s or 0.0:.1f} s); disk {cost.size(grid.total.disk_bytes)} of "
        f"{cost.size(free)} free in {probe}")
    if grid.total.disk_bytes > free:
        report.failures.append(Failure(str(runs_root), f"the records need {cost.size(grid.total.disk_bytes)}, "
                                                        f"{cost.size(free)} free"))
    return {"experiments": rows, "parallel": parallel, "wall_s": wall, "device_s": grid.total.total_s,
            "disk_bytes": grid.total.disk_bytes, "free_bytes": free, "longest_run_s": grid.longest_run_s}


def _jsonable(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["ok"] = report.ok

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.loads(json.dumps(clean(data), default=str))
