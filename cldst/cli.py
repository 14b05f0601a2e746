"""Command line: `cldst run | sweep | preflight | collect | figures | demo | experiments`.

Every Config field is a flag of `cldst run` (`--num_tasks 10`, also `--num-tasks`); the authors'
names are accepted (`--sparse_init`, `--init`, `--net_name`, `--death`, `--death_rate`,
`--num_classes_per_task`, `--dataset miniImageNet`, `--growth random_unfired`, `--net_name vgg16`).
Booleans take a value (`--save_masks false`) or stand alone for true. User errors print one line
and exit 2; a failed run exits 1.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import signal
import sys
import threading
import traceback
from dataclasses import fields
from pathlib import Path

from cldst import checks
from cldst.config import PRESETS, Config, coerce, field_help
from cldst.errors import CldstError, ConfigError, Interrupted, one_line
from cldst.paths import runs_dir

# The authors' flag names (their cifar100.py / miniImageNet100.py and README).
ALIASES = {"sparse_init": ["--init"], "arch": ["--net_name"], "drop": ["--death"], "drop_fraction": ["--death_rate"]}


# A small run that shows everything (5 tasks, 120 topology updates, the record) in about a minute on a
# 2-core CPU: the README's quick start and the last lines of `cldst run --help` (both measured).
QUICK_START = ("cldst run --num_tasks 5 --num_classes 100 --image_size 16 --width 16 --variant authors "
               "--train_per_class 200 --test_per_class 50 --epochs 2 --batch_size 32 --lr 0.003 "
               "--update_frequency 10 --density 0.1")


class Parser(argparse.ArgumentParser):
    """argparse with one more courtesy: a misspelled flag gets the nearest real one suggested."""

    def error(self, message: str) -> None:
        wrong = re.findall(r"(--?[\w-]+)", message.split("unrecognized arguments:", 1)[1]) \
            if "unrecognized arguments:" in message else []
        known = [o for action in self._actions for o in action.option_strings]
        for sub in (a for a in self._actions if isinstance(a, argparse._SubParsersAction)):
            known += [o for p in sub.choices.values() for action in p._actions for o in action.option_strings]
        hints = []
        for flag in wrong:
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            hints.append(f"{flag}: did you mean {close[0]}?" if close else f"{flag}: no such flag")
        if hints:
            message = "unrecognized arguments: " + "; ".join(hints)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults, helps = Config(), field_help()
    for f in fields(Config):
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else []) + ALIASES.get(f.name, [])
        text = f"{helps[f.name]} (default: {getattr(defaults, f.name)!r})".replace("%", "%%")
        kwargs = {"dest": f.name, "default": None, "help": text, "metavar": f.name.upper()}
        if str(f.type) == "bool":
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        parser.add_argument(*names, **kwargs)
    parser.add_argument("--preset", choices=list(PRESETS), help="start from a named group of settings "
                        "(authors: the authors' code where it changes numbers, docs/authors_code.md)")


def config_from_args(args: argparse.Namespace) -> Config:
    base = PRESETS[args.preset] if getattr(args, "preset", None) else {}
    given = {f.name: coerce(f.name, getattr(args, f.name), f.type) for f in fields(Config)
             if getattr(args, f.name, None) is not None}
    return Config(**{**base, **given}).validate()


def cmd_run(args) -> int:
    cfg = config_from_args(args)  # first: a bad value is one line before anything heavy is imported
    checks.check_all([cfg])
    from cldst import records, sweep

    path = records.run_dir(cfg)
    # One run is a sweep of one: the same lock, record checks, worker and signal handling. Its kernel
    # writes what it is about to train and each finished task to progress.log; shown here as it comes.
    done = threading.Event()
    tail = threading.Thread(target=_follow, args=(path / records.PROGRESS, done), daemon=True)
    tail.start()
    try:
        report = sweep.run_sweep([cfg], workers=1, progress=False, force=args.force)
    finally:
        done.set()
        tail.join(timeout=2)
    rid = cfg.run_id()
    if rid in report.failed:
        print(f"error: {report.failed[rid]}", file=sys.stderr)
        return 1
    if rid in report.held:
        print(f"held by another process: {path} is being executed there; re-run when it is done", file=sys.stderr)
        return 1
    print(f"already complete: {path}" if rid in report.skipped else f"record: {path}")
    m = records.load_metrics(path)
    print(f"ACC {_num(m['acc'])}  BWT {_num(m['bwt'])}  FWT(authors) {_num(m['fwt_authors'])}  "
          f"FWT(standard) {_num(m['fwt_standard'])}  train {_num(m.get('train_seconds'), '.1f')}s  "
          f"topology updates {m.get('topology_updates', '?')}")
    for warning in m.get("warnings", []):  # records written before warnings were kept have none
        print(f"warning: {warning}")
    return 0


def _follow(path: Path, done: threading.Event) -> None:
    """Print the lines added to `path` (which may not exist yet, and is recreated when a run is redone)
    until `done` is set, then the rest."""
    seen = 0
    while True:
        finished = done.wait(0.3)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = ""
        if len(text) < seen:  # a new attempt started the file again
            seen = 0
        complete = text[seen:].rsplit("\n", 1)[0] if "\n" in text[seen:] else ""
        if complete:
            print(complete, flush=True)
            seen += len(complete) + 1
        if finished:
            return


def _num(value, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def parse_overrides(items: list[str]) -> dict:
    """`--set FIELD=VALUE` items -> {field: typed value}, with one-line errors."""
    known = {f.name: f for f in fields(Config)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set {item!r} must be FIELD=VALUE, e.g. --set precision=bf16")
        if name not in known:
            raise ConfigError(f"--set: unknown field {name!r}; see `cldst run --help` for the fields")
        out[name] = coerce(name, value, known[name].type)
    return out


def cmd_sweep(args) -> int:
    from cldst import experiments  # torch-free: every check below answers before the sweep is imported

    names = experiments.experiments_of(args.profile) if args.experiments == ["all"] else args.experiments
    for name in names:
        experiments.get_experiment(name)
    seeds = checks.parse_seeds(args.seeds) if args.seeds else None
    overrides = parse_overrides(args.overrides)
    cfgs = [c.replace(**overrides).validate() if overrides else c
            for n in names for c in experiments.configs(n, args.profile, seeds)]
    gpus = checks.check_all(cfgs, root=args.root, workers=args.workers, executor=args.executor,
                            gpus=[g for g in args.gpus.split(",") if g])
    resources = _cluster_resources(args)
    from cldst import sweep

    runs = len(experiments.distinct(cfgs))  # a run two experiments share is executed once
    print(f"{runs} runs: {', '.join(names)} (profile {args.profile}, {args.workers} worker(s), {args.executor})")
    if not sweep_preflight(args, cfgs):  # before any run is handed out (issue 22)
        return 1
    report = sweep.run_sweep(cfgs, workers=args.workers, root=args.root, executor=args.executor,
                             progress=not args.quiet, gpus=gpus, slurm=resources, detach=getattr(args, "detach", False))
    print(report.summary())
    if report.queued:
        print(f"{len(report.queued)} run(s) left to Slurm: `cldst status {args.root or runs_dir()}` shows them, "
              "--wait follows them; `cldst sweep` of the same runs resubmits only what ends without a result")
    for rid in report.held:
        print(f"held by another process: {rid} (being executed there; not touched)")
    for reason in report.failed.values():  # each reason starts with its run id
        print(f"FAILED {reason}")
    return 1 if report.failed else 0


def cmd_status(args) -> int:
    """Where the runs a Slurm sweep of this runs directory submitted stand (see executors.ledger)."""
    import time

    from cldst.executors import cluster

    root = Path(args.root) if args.root else runs_dir()
    if not root.is_dir():
        raise ConfigError(f"runs directory {root} does not exist")
    shown = ""
    while True:
        table = cluster.states(root)
        if not table:
            print(f"{root}: no Slurm submissions here (a sweep with --executor slurm notes its jobs in "
                  f"{root / '_submitit'})")
            return 0
        by = {s: [r for r in table if r.state == s] for s in ("pending", "running", "done", "failed")}
        line = cluster.status_text([r.detail for r in by["pending"]], len(by["running"]), len(by["done"]),
                                   len(by["failed"]))
        if line != shown:
            print(f"{len(table)} run(s) submitted to Slurm from {root}: {line}", flush=True)
            shown = line
        if not args.wait or not (by["pending"] or by["running"]):
            break
        time.sleep(args.every)
    for run in by["failed"]:
        print(f"FAILED {run.detail}")
    if by["failed"]:
        print("`cldst sweep` of the same runs submits the failed ones again")
    return 1 if by["failed"] else 0


# ---------------------------------------------------------------------- preflight (issue 22)
def _grid(args) -> list[tuple[str, Config]]:
    """(experiment, config) of the grid the sweep options name, as the experiments list them."""
    from cldst import experiments

    names = experiments.experiments_of(args.profile) if args.experiments == ["all"] else args.experiments
    seeds = checks.parse_seeds(args.seeds) if args.seeds else None
    overrides = parse_overrides(args.overrides)
    return [(n, c.replace(**overrides) if overrides else c) for n in names
            for c in experiments.configs(n, args.profile, seeds)]


def _preflight_setting(args):
    """The device the runs will use, how many run at once and, on SLURM, the Resources each run asks for:
    one run per GPU given, the array parallelism on SLURM (its runs use cuda when they ask for GPUs),
    every worker on a CPU (each with its share of the cores), else one."""
    gpus = checks.check_gpus([g for g in args.gpus.split(",") if g], args.executor)
    device = "cuda" if gpus and args.device == "auto" else args.device
    if gpus:
        return device, len(gpus), None
    if args.executor == "slurm":
        resources = _cluster_resources(args)
        return ("cuda" if resources.uses_gpus and device == "auto" else device,
                resources.array_parallelism or args.workers, resources)
    if args.executor != "local":
        return device, args.workers, None
    import torch

    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return device, args.workers if on_cpu else 1, None


def _run_preflight(args, named, out, **options):
    """cldst.preflight.run here; with --executor slurm and a device check, as one short job on the kind of
    node the runs ask for (executors.cluster.preflight_job), its lines printed here."""
    from cldst import preflight

    device, parallel, resources = _preflight_setting(args)
    options = {"profile": args.profile, "device": device, "root": args.root, "parallel": parallel, **options}
    if resources is not None and options.get("device_check", True):
        from cldst.executors import cluster

        return cluster.preflight_job(named, resources, options, args.root, out=out)
    return preflight.run(named, **options, out=out, write=False)


def cmd_preflight(args) -> int:
    from cldst import preflight

    named = _grid(args)
    report = _run_preflight(args, named, lambda line: print(line, flush=True),
                            device_check=not args.no_device_check, steps=args.steps)
    good, _ = preflight.check_configs(named)
    if good:
        preflight.write_report(report, good[0][1], args.root)
    return 0 if report.ok else 1


def sweep_preflight(args, cfgs: list[Config]) -> bool:
    """What `cldst sweep` checks before it hands out runs: the configurations and data always, the device
    (each shape of the runs not yet complete, briefly) unless --skip-device-check: here, or on SLURM as
    one short job on the runs' kind of node. True when all passed."""
    from cldst import records

    todo = [c for c in cfgs if records.record_status(records.run_dir(c, args.root)) != records.COMPLETE]
    if not todo:
        return True
    device_check = not args.skip_device_check
    # only its summary is printed (preflight.json keeps the full check's table), but for the job's own line
    out = (lambda line: print(line, flush=True) if line.startswith("preflight: as Slurm job") else None)
    report = _run_preflight(args, [(args.profile, c) for c in todo], out, device_check=device_check,
                            overhead=False, steps=1)
    for d in report.data:
        if d.state == "downloadable":
            print(f"data {d.dataset}: {d.state}, {d.detail}")
    print(f"preflight: {len(report.shapes)} shape(s) of {report.runs} run(s) to do checked on the device"
          f"{' (device check skipped)' if not device_check else ''}: {'ok' if report.ok else 'FAILED'}")
    for failure in report.failures:
        print(failure.line())
    return report.ok


CLUSTER_OPTIONS = {  # `cldst sweep` option -> (help, type); each is a field of executors.slurm.Resources
    "partition": ("Slurm partition", str), "time": ("time limit per run, e.g. 04:00:00 (default 1 day)", str),
    "cpus-per-task": ("CPUs per run, also its thread count (default 1)", int), "mem": ("memory per run, e.g. 8G", str),
    "gpus-per-task": ("GPUs per run (runs then use device=cuda)", int), "gres": ("generic resources, e.g. gpu:a100:1", str),
    "account": ("Slurm account", str), "qos": ("Slurm QoS", str),
    "array-parallelism": ("most runs executing at once (default: --workers)", int),
}


def _add_cluster_options(sp) -> None:
    group = sp.add_argument_group("cluster (--executor slurm)",
                                  "Options over a cluster profile file (TOML with these keys, '-' as '_'): "
                                  "--cluster-profile, else <runs directory>/cluster.toml if there is one.")
    group.add_argument("--cluster-profile", metavar="FILE", help="cluster profile file (TOML)")
    for name, (helptext, kind) in CLUSTER_OPTIONS.items():
        group.add_argument(f"--{name}", type=kind, help=helptext)
    group.add_argument("--sbatch", action="append", default=[], metavar="--OPTION[=VALUE]",
                       help="an extra sbatch option, e.g. --sbatch=--constraint=a100 (repeatable)")


def _cluster_resources(args):
    """The Resources of a slurm sweep from its profile file and options; one line if given elsewhere."""
    from cldst.executors import slurm

    # (cldst demo sweeps through cmd_sweep without these options)
    options = {name.replace("-", "_"): getattr(args, name.replace("-", "_"), None) for name in CLUSTER_OPTIONS}
    options["extra"] = tuple(getattr(args, "sbatch", ()))
    profile = getattr(args, "cluster_profile", None)
    if args.executor != "slurm":
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v not in (None, ())]
        given += ["--cluster-profile"] if profile else []
        if given:
            raise ConfigError(f"{', '.join(given)}: only for --executor slurm")
        return None
    return slurm.resolve(profile, Path(args.root) if args.root else runs_dir(), options)


def cmd_collect(args) -> int:
    from cldst.collect import find_records, write_collected

    found = find_records(args.root)
    out = write_collected(args.root, args.out, found)  # names each record it leaves out, one line each
    print(f"collected into {out}: {found.counts()}")
    return 0


def _profile_of_records(runs: Path) -> str:
    """The profile whose records a runs directory holds, when `cldst figures` is not told: the one that
    has any; "paper" where none has; one line naming them where several have."""
    from cldst.experiments import PROFILES

    held = [p for p in PROFILES if (runs / p).is_dir() and next((runs / p).rglob("config.json"), None)]
    if len(held) > 1:
        raise ConfigError(f"figures: {runs} holds records of the profiles {', '.join(held)}; name one with --profile")
    profile = held[0] if held else "paper"
    print(f"profile: {profile} ({'the one with records' if held else 'no profile has records'} under {runs})")
    return profile


def cmd_figures(args, experiments: list[str] | None = None) -> int:
    """Every artifact of a profile from its records, then the report; `experiments`: say what is missing
    only for these (the demo builds each artifact from one profile)."""
    from cldst import analysis
    from cldst.analysis.report import build_report
    from cldst.collect import find_records
    from cldst.experiments import ARTIFACTS
    from cldst.paths import figures_dir, tables_dir

    # --root is the runs directory (as for sweep); a profile's runs live under <root>/<profile>/. Another
    # runs directory's artifacts go beside its records, never over the repository's figures/ and tables/
    # (CLDST_FIGURES / CLDST_TABLES, when set, still win; the analysis kernels inherit them).
    if args.root:
        os.environ.setdefault("CLDST_FIGURES", str(Path(args.root) / "figures"))
        os.environ.setdefault("CLDST_TABLES", str(Path(args.root) / "tables"))
    if args.profile is None:
        args.profile = _profile_of_records(Path(args.root) if args.root else runs_dir())
    root = (Path(args.root) if args.root else runs_dir()) / args.profile
    missing = analysis.build_all(profile=args.profile, root=root, out_dir=root / "analysis")  # its collect names each record left out
    print(f"records under {root}: {find_records(root).counts()}")
    failed = analysis.failed_notebooks(missing)
    for line in failed:  # a failure is never filtered: the run of `cldst figures` failed
        print(f"FAILED {line}", file=sys.stderr)
    for line in (line for line in missing if line not in failed):
        name = line.split(":", 1)[0]
        if experiments is None or (name in ARTIFACTS and ARTIFACTS[name].experiment in experiments):
            print(f"missing: {line}")
    for kind, folder in (("figures", figures_dir()), ("tables", tables_dir())):
        stems = {p.stem for p in folder.glob(f"{args.profile}_*")}
        print(f"{kind}: {len(stems)} {args.profile}_* artifacts in {folder}")
    report = build_report(runs_root=Path(args.root) if args.root else None)
    print(f"report: {report} (every figure, table and finding, each from the most informative profile)")
    return 1 if failed else 0


def cmd_demo(args) -> int:
    """The findings at CPU scale, every other artifact at smoke scale, the report, and where the time went.

    The cpu profile runs the experiments behind the paper's findings (3 seeds each); the smoke profile
    runs every other experiment once, as a pipeline check; then the figures, tables and findings of
    both, and figures/index.html."""
    import time

    from cldst import experiments
    from cldst.collect import collect

    start = time.perf_counter()
    cpu = experiments.experiments_of("cpu")
    plan = [("cpu", cpu), ("smoke", [n for n in experiments.experiments_of("smoke") if n not in cpu])]
    code, walls = 0, {}
    for profile, names in plan:
        t0 = time.perf_counter()
        args.experiments, args.profile, args.seeds, args.executor = names, profile, None, "local"
        code = max(code, cmd_sweep(args))
        walls[profile] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for profile, names in plan:
        args.profile = profile
        code = max(code, cmd_figures(args, experiments=names))  # a failed analysis notebook fails the demo
    analysis_wall = time.perf_counter() - t0
    root = Path(args.root) if args.root else runs_dir()
    lines = []
    for profile, _ in plan:
        runs, _ = collect(root / profile, warn=False)  # cldst figures named the records it left out
        train = float(runs["train_seconds"].sum()) if len(runs) else 0.0
        evaluate = float(runs["eval_seconds"].sum()) if len(runs) else 0.0
        busy = walls[profile] * args.workers  # worker-seconds the sweep had
        lines.append(f"  {profile:6s} {len(runs):4d} runs in {walls[profile] / 60:5.1f} min with {args.workers} workers: "
                     f"training {train / busy:4.0%}, evaluation {evaluate / busy:4.0%}, "
                     f"kernel, notebook, data and record {max(busy - train - evaluate, 0) / busy:4.0%} of the workers' time")
    install = _install_seconds()
    total = time.perf_counter() - start
    print("where the demo's time went:")
    if install is not None:
        print(f"  install {install / 60:5.1f} min (make install, the first time)")
    print("\n".join(lines))
    print(f"  analysis {analysis_wall / 60:5.1f} min (notebooks, figures, tables, findings, report)")
    print(f"  total    {total / 60:5.1f} min" + (f" + {install / 60:.1f} min install" if install is not None else ""))
    return code


def _install_seconds() -> float | None:
    """What `make install` recorded of its own duration, if it did."""
    path = Path(sys.prefix) / ".install_seconds"
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def cmd_experiments(args) -> int:
    from cldst import experiments

    for name, e in experiments.EXPERIMENTS.items():
        runs = e.size() * len(experiments.PROFILES["paper"].seeds)
        print(f"{name:18s} {', '.join(e.artifacts):16s} {runs:4d} paper runs  {e.title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cldst", description="Continual learning with dynamic sparse training.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one configuration through notebooks/train.ipynb",
                         description="Run one configuration through notebooks/train.ipynb; its record goes to "
                                     "papermill_runs/<experiment>/<run id>/. Every field of cldst.config.Config "
                                     "is a flag. The defaults are a quick run (10 synth100 tasks at 16 px, width 16, 2 epochs, "
                                     "12 topology updates per task); the paper's "
                                     "run is `cldst sweep cifar100-10 --profile paper`.",
                         epilog=f"A quick start (about a minute on a 2-core CPU): {QUICK_START}",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_flags(run)
    run.add_argument("--force", action="store_true", help="redo the run even if its record is complete")
    run.set_defaults(func=cmd_run)

    for name, func, helptext in [("sweep", cmd_sweep, "execute an experiment's grid"),
                                 ("demo", cmd_demo, "the findings at CPU scale (cpu profile, 3 seeds), every other "
                                                    "artifact at smoke scale, then figures, tables and the report")]:
        sp = sub.add_parser(name, help=helptext)
        if name == "sweep":
            sp.add_argument("experiments", nargs="+", help="experiment names, or 'all'")
            sp.add_argument("--profile", default="paper")
            sp.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
            sp.add_argument("--executor", default="local", help="local | submitit-local | slurm")
            _add_cluster_options(sp)
            sp.add_argument("--detach", action="store_true",
                            help="with --executor slurm: submit and return; `cldst status` follows the runs")
        sp.add_argument("--workers", type=int, default=2)
        sp.add_argument("--gpus", default="",
                        help="GPU indices to spread the workers over, e.g. 0,1 (with --workers 8: 4 runs per GPU)")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a Config field in every run, e.g. --set precision=bf16 --set compile=true "
                             "(fields that change results change the run ids; device/data_root do not)")
        sp.add_argument("--root", help="runs directory (default: papermill_runs/)")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--skip-device-check", "--no-preflight", action="store_true",
                        help="before the runs, check configurations and data only, not each shape on the device")
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="the device the preflight checks each shape on (default: auto)")
        sp.set_defaults(func=func)

    pf = sub.add_parser("preflight", help="check every configuration, its data and each shape on the device; "
                                          "say what the grid costs",
                        description="Before a sweep: every configuration validated, its data present or "
                                    "downloadable, each distinct network x input shape built and trained a few "
                                    "steps on the device (sparsity invariants checked), and the grid's cost from "
                                    "those measurements. Writes preflight.json beside the runs; exits 1 if "
                                    "anything fails.")
    pf.add_argument("experiments", nargs="+", help="experiment names, or 'all'")
    pf.add_argument("--profile", default="paper")
    pf.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
    pf.add_argument("--executor", default="local", help="local | submitit-local | slurm (sets the parallelism)")
    pf.add_argument("--workers", type=int, default=2, help="runs at once (SLURM: the array parallelism)")
    pf.add_argument("--gpus", default="", help="GPU indices the sweep will use, e.g. 0,1")
    pf.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="the device to check on")
    pf.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="change a Config field in every run, as for sweep")
    pf.add_argument("--root", help="runs directory (default: papermill_runs/)")
    pf.add_argument("--steps", type=int, default=3, help="timed training steps per task and shape (default 3)")
    pf.add_argument("--no-device-check", action="store_true", help="only the configurations and the data")
    _add_cluster_options(pf)  # with --executor slurm the check runs as one job on the node kind these ask for
    pf.set_defaults(func=cmd_preflight)

    st = sub.add_parser("status", help="where the runs a Slurm sweep submitted stand (after --detach or a lost shell)",
                        description="Reads the job ledgers a Slurm sweep keeps in <runs>/_submitit, the records and "
                                    "Slurm's queue: pending (with Slurm's reason), running, done, failed (with "
                                    "Slurm's state and the job's log). Exits 1 if any failed.")
    st.add_argument("root", nargs="?", help="runs directory (default: papermill_runs/)")
    st.add_argument("--wait", action="store_true", help="follow until no run is pending or running")
    st.add_argument("--every", type=float, default=10.0, help="seconds between looks with --wait (default 10)")
    st.set_defaults(func=cmd_status)

    col = sub.add_parser("collect", help="gather run records into tidy tables")
    col.add_argument("--root")
    col.add_argument("--out")
    col.set_defaults(func=cmd_collect)

    fig = sub.add_parser("figures", help="build every figure and table from the collected runs")
    fig.add_argument("--profile", help="whose records (default: the one profile with records under the runs "
                                       "directory; paper where none has)")
    fig.add_argument("--root")
    fig.set_defaults(func=cmd_figures)

    ex = sub.add_parser("experiments", help="list the experiments and what they reproduce")
    ex.set_defaults(func=cmd_experiments)
    return p


def main(argv: list[str] | None = None) -> int:
    """Errors are one line (user input: exit 2; a failure: exit 1); with -v, also their full traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except Interrupted as exc:  # the sweep ended its workers and kernels; say what is left
        _ignore_signals()  # a second Ctrl-C while the interpreter exits would print a traceback
        print(exc, file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # before or after a sweep's own handling (loading data, collecting)
        _ignore_signals()
        print("interrupted; re-run to resume", file=sys.stderr)
        return 128 + signal.SIGINT
    except CldstError as exc:
        return _error(args, str(exc), 2)
    except RuntimeError as exc:  # a failure the code names in its message
        return _error(args, str(exc), 1)
    except Exception as exc:  # a bug: its type says more than its message alone
        return _error(args, f"{one_line(exc)} (cldst -v ... shows the traceback)", 1)


def _error(args, message: str, code: int) -> int:
    if args.verbose:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
