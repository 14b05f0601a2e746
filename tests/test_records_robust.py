"""Records that are damaged, held by another process or written on a full disk: what `record_status`,
`execute_run`, `run_sweep`, `collect` and the CLI make of them. Notebooks are stood in for (in this
process by a fake `notebook.execute`, in spawned workers by `fake_execute_run`), so these tests take
seconds; tests/test_sweep_reliability.py executes the real notebook."""

import dataclasses
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from papermill.exceptions import PapermillExecutionError

from cldst import notebook, records, sweep
from cldst.collect import collect, find_records
from cldst.config import Config
from cldst.errors import DataError
from cldst.paths import runs_dir
from cldst.train import train_continual

TINY = dict(dataset="synth100", num_tasks=2, image_size=16, width=4, batch_size=64, train_per_class=6,
            test_per_class=4, epochs=1, update_frequency=2, lr=1e-3, variant="cifar", progress=False, experiment="e2e")
ENOSPC_TEXT = os.strerror(errno.ENOSPC)


@pytest.fixture(scope="module")
def result():
    return train_continual(Config(**TINY))


@pytest.fixture
def record(tmp_path, result) -> Path:
    """A complete record of the TINY run under tmp_path/runs, as the notebook writes it."""
    path = records.save_result(result, records.run_dir(result.config, tmp_path / "runs"))
    (path / "run.ipynb").write_text("{}")
    return path


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_metrics(path: Path, **changes) -> None:
    m = json.loads((path / records.METRICS).read_text())
    for key, value in changes.items():
        if value is KeyError:
            del m[key]
        else:
            m[key] = value
    (path / records.METRICS).write_text(json.dumps(m))


def other_seed(path: Path) -> None:
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "seed": 7}))


# name -> (damage, the exact status, or its start where a parser's message follows)
CORRUPTIONS = {
    "truncated metrics": (lambda p: truncate(p / "metrics.json"), "corrupt: metrics.json is not valid JSON ("),
    "empty object": (lambda p: (p / "metrics.json").write_text("{}"),
                     "corrupt: metrics.json lacks run_id, acc, bwt, fwt_authors, fwt_standard, acc_matrix, incremental_acc"),
    "null": (lambda p: (p / "metrics.json").write_text("null"), "corrupt: metrics.json holds NoneType, not an object"),
    "list": (lambda p: (p / "metrics.json").write_text("[1]"), "corrupt: metrics.json holds list, not an object"),
    "no acc_matrix": (lambda p: edit_metrics(p, acc_matrix=KeyError), "corrupt: metrics.json lacks acc_matrix"),
    "acc not a number": (lambda p: edit_metrics(p, acc="high"), "corrupt: metrics.json acc is 'high', not a number"),
    "curve not a list": (lambda p: edit_metrics(p, incremental_acc=None),
                         "corrupt: metrics.json incremental_acc is NoneType, not a list"),
    "other run's metrics": (lambda p: edit_metrics(p, run_id="someone-else"),
                            "corrupt: metrics.json is of run 'someone-else' but config.json of run "),
    "config of another run": (other_seed, "corrupt: metrics.json is of run "),
    "truncated config": (lambda p: truncate(p / "config.json"), "corrupt: config.json: "),
    "masks deleted": (lambda p: (p / "masks.pt").unlink(),
                      "corrupt: masks.pt is missing (the config has save_masks=true)"),
    "masks truncated": (lambda p: truncate(p / "masks.pt"), "corrupt: masks.pt cannot be read ("),
    "masks empty": (lambda p: (p / "masks.pt").write_bytes(b""), "corrupt: masks.pt cannot be read ("),
    "masks of another kind": (lambda p: __import__("torch").save({"x": 1}, p / "masks.pt"),
                              "corrupt: masks.pt is not a cldst masks file (expected format 'cldst-masks-v1')"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_record_status_names_what_is_wrong(record, case):
    damage, expected = CORRUPTIONS[case]
    assert records.record_status(record) == "complete"
    damage(record)
    status = records.record_status(record)
    assert status.startswith(expected), status
    assert len(status.splitlines()) == 1
    assert not records.is_complete(record)
    # collect decides with the same function: what a sweep would redo is never collected
    found = find_records(record.parent)
    assert found.complete == [] and found.unreadable == {record: status}


def test_partial_and_masks_not_saved(record, result):
    (record / "masks.pt").unlink()
    cfg = json.loads((record / "config.json").read_text())
    (record / "config.json").write_text(json.dumps({**cfg, "save_masks": False}))  # not part of the run id
    assert records.record_status(record) == "complete"
    os.replace(record / records.METRICS, record / records.PENDING)  # the notebook ran, the sweep did not finalize
    assert records.record_status(record) == "partial"
    assert records.record_status(record.parent / "never-started") == "partial"


# ---------------------------------------------------------------------- execute_run (in this process)
@pytest.fixture
def fake_notebook(monkeypatch, result):
    """notebook.execute standing in for papermill: what the training notebook writes, with the parameters
    it is given (record_dir, defer_metrics), and the calls counted."""
    calls = []

    def execute(source, target, parameters, *, cwd, kernel_name=None, extra=None, warm=False):
        calls.append({"parameters": parameters, "extra": extra, "cwd": cwd})
        Path(target).write_text("{}")
        with records.progress_log(extra["record_dir"]):  # as the training notebook does
            logging.getLogger("cldst.train").info("about to run")
        records.save_result(result, extra["record_dir"], defer=extra["defer_metrics"])

    monkeypatch.setattr(notebook, "execute", execute)
    return calls


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_execute_run_redoes_a_corrupt_record(record, result, fake_notebook, case):
    reference = json.loads((record / records.METRICS).read_text())
    CORRUPTIONS[case][0](record)
    root = record.parent.parent
    assert sweep.execute_run(result.config, str(root)) == "done"
    assert len(fake_notebook) == 1
    assert fake_notebook[0]["extra"] == {"record_dir": str(record), "defer_metrics": True}
    assert "record_dir" not in fake_notebook[0]["parameters"]  # the Config fields only
    assert records.record_status(record) == "complete"
    assert json.loads((record / records.METRICS).read_text()) == reference
    assert sorted(p.name for p in record.iterdir()) == [
        "capacity.csv", "config.json", "environment.json", "masks.pt", "metrics.json", "progress.log", "run.ipynb",
        "updates.csv"]


def test_execute_run_never_writes_into_a_complete_record(record, result, fake_notebook):
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in record.iterdir()}
    assert sweep.execute_run(result.config, str(record.parent.parent)) == "complete"
    assert fake_notebook == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in record.iterdir()} == before


def test_execute_run_skips_a_run_another_process_holds(tmp_path, result, fake_notebook):
    root = tmp_path / "runs"
    path = records.run_dir(result.config, root)
    lock = records.try_lock(path)  # a second lock of one file is refused, within a process too
    assert lock is not None and records.lock_path(path) == root / "e2e" / ".locks" / f"{path.name}.lock"
    try:
        assert records.try_lock(path) is None
        assert sweep.execute_run(result.config, str(root)) == "held"
        assert fake_notebook == [] and not path.exists()
    finally:
        lock.release()
    assert sweep.execute_run(result.config, str(root)) == "done"
    assert records.lock_path(path).is_file(), "redoing the record must not remove its lock"
    assert sorted(p.name for p in path.parent.iterdir()) == [".locks", path.name]


def test_finalize_removes_a_stale_error_txt(record, result, monkeypatch):
    def execute(source, target, parameters, *, cwd, kernel_name=None, extra=None, warm=False):
        Path(target).write_text("{}")
        records.save_result(result, extra["record_dir"], defer=True)
        (Path(extra["record_dir"]) / "error.txt").write_text("from some other execution")

    monkeypatch.setattr(notebook, "execute", execute)
    (record / records.METRICS).unlink()
    assert sweep.execute_run(result.config, str(record.parent.parent)) == "done"
    assert records.is_complete(record) and not (record / "error.txt").exists()


# ---------------------------------------------------------------------- a full disk
def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, ENOSPC_TEXT)


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "masks.pt"

    def write(tmp):
        tmp.write_bytes(b"half")
        full_disk()

    with pytest.raises(OSError) as info:
        records.atomic_write(target, write)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(target))
    assert str(info.value) == f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '{target}'"
    assert list(tmp_path.iterdir()) == []


def test_torch_save_on_a_full_disk_is_enospc(tmp_path, monkeypatch):
    """torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos"."""
    def write(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(OSError) as info:
        records.atomic_write(tmp_path / "masks.pt", write)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tmp_path / "masks.pt"))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # space left: some other failure, as it was
        records.atomic_write(tmp_path / "masks.pt", write)
    assert list(tmp_path.iterdir()) == []


def test_save_result_on_a_full_disk(tmp_path, result, monkeypatch):
    monkeypatch.setattr(type(result.sparsity), "save_masks", full_disk)
    path = tmp_path / "run"
    with pytest.raises(OSError) as info:
        records.save_result(result, path, defer=True)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path / "masks.pt"))
    names = sorted(p.name for p in path.iterdir())
    assert names == ["capacity.csv", "config.json", "environment.json", "updates.csv"]  # whole files, no tmp
    assert all((path / n).stat().st_size > 0 for n in names)
    assert records.record_status(path) == "partial"


@pytest.mark.parametrize("where", ["worker", "kernel"])
def test_execute_run_on_a_full_disk(tmp_path, result, monkeypatch, where):
    """papermill's own write of run.ipynb fails in the worker (an OSError naming no file); a record
    file fails in the kernel (papermill passes the OSError on as text). Either is DiskFull, names a
    path, and leaves neither an empty file nor an error.txt (the disk has no room for it)."""
    root = tmp_path / "runs"
    path = records.run_dir(result.config, root)
    masks = path / "masks.pt"

    def execute(source, target, parameters, *, cwd, kernel_name=None, extra=None, warm=False):
        Path(target).write_text("")  # papermill's notebook write cut short
        if where == "worker":
            full_disk()
        raise PapermillExecutionError(3, 3, "record = save_result(...)", "OSError",
                                      f"[Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '{masks}'", [])

    monkeypatch.setattr(notebook, "execute", execute)
    written = records.atomic_write

    def atomic_write(target, write):
        if target.name == "error.txt":
            full_disk()
        written(target, write)

    monkeypatch.setattr(records, "atomic_write", atomic_write)
    with pytest.raises(sweep.DiskFull) as info:
        sweep.execute_run(result.config, str(root))
    expected = {"worker": f"OSError: [Errno {errno.ENOSPC}] {ENOSPC_TEXT} (writing {path / 'run.ipynb'})",
                "kernel": f"OSError: [Errno {errno.ENOSPC}] {ENOSPC_TEXT}: '{masks}'"}[where]
    assert str(info.value) == f"{result.config.run_id()}: {expected}"
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]
    assert records.record_status(path) == "partial"


# ---------------------------------------------------------------------- sweeps (spawned workers)
def fake_execute_run(cfg, root=None, force=False):
    """Stands in for sweep.execute_run in a spawned worker: leaves a marker of the call, then fails on a
    full disk (CLDST_TEST_FULL=1) or writes a complete record copied from CLDST_TEST_TEMPLATE."""
    cfg = Config.from_dict(cfg)
    root = Path(root or runs_dir())  # `cldst run` passes none: CLDST_RUNS, as the real execute_run
    path = records.run_dir(cfg, root)
    (root / "calls").mkdir(parents=True, exist_ok=True)
    (root / "calls" / cfg.run_id()).touch()
    if os.environ.get("CLDST_TEST_FULL") == "1":
        raise sweep.DiskFull(f"{cfg.run_id()}: OSError: [Errno 28] No space left on device: '{path}/masks.pt'")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(os.environ["CLDST_TEST_TEMPLATE"], path)
    records.write_json(path / "config.json", cfg.to_dict())
    edit_metrics(path, run_id=cfg.run_id())
    return sweep.DONE


def seeds(n: int) -> list[Config]:
    return [Config(**TINY, seed=s) for s in range(n)]


def test_sweep_redoes_corrupt_records_and_skips_complete_ones(tmp_path, record, monkeypatch):
    root = tmp_path / "runs"
    template = tmp_path / "template"
    shutil.move(record, template)
    cases = ["truncated metrics", "empty object", "null", "masks truncated", "masks deleted"]
    cfgs = seeds(len(cases) + 2)  # then one complete record, one partial (never started)
    for cfg, case in zip(cfgs, cases + ["complete"]):
        path = records.run_dir(cfg, root)
        shutil.copytree(template, path)
        records.write_json(path / "config.json", cfg.to_dict())
        edit_metrics(path, run_id=cfg.run_id())
        if case != "complete":
            CORRUPTIONS[case][0](path)
    monkeypatch.setenv("CLDST_TEST_TEMPLATE", str(template))
    monkeypatch.setattr(sweep, "execute_run", fake_execute_run)

    report = sweep.run_sweep(cfgs, workers=1, root=root, progress=False)
    ids = [c.run_id() for c in cfgs]
    assert report.skipped == [ids[-2]]
    assert list(report.redone) == ids[:-2]
    for rid, case in zip(ids, cases):
        assert report.redone[rid].startswith(CORRUPTIONS[case][1]), report.redone[rid]
    assert sorted(report.done) == sorted(ids[:-2] + ids[-1:]) and report.failed == {}
    assert sorted(p.name for p in (root / "calls").iterdir()) == sorted(ids[:-2] + ids[-1:])
    assert all(records.is_complete(records.run_dir(c, root)) for c in cfgs)


def test_sweep_starts_no_run_after_a_full_disk(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    cfgs = seeds(3)
    monkeypatch.setenv("CLDST_TEST_FULL", "1")
    monkeypatch.setattr(sweep, "execute_run", fake_execute_run)
    report = sweep.run_sweep(cfgs, workers=1, root=root, progress=False)
    first = cfgs[0].run_id()
    assert list(report.failed) == [first]
    assert report.disk_full == report.failed[first] == (
        f"{first}: OSError: [Errno 28] No space left on device: '{records.run_dir(cfgs[0], root)}/masks.pt'")
    assert report.not_started == [c.run_id() for c in cfgs[1:]]
    assert [p.name for p in (root / "calls").iterdir()] == [first]
    assert report.summary() == "0 run, 0 already complete, 1 failed, 2 not started"


# ---------------------------------------------------------------------- collect, figures, run
def bad_records(root: Path, record: Path) -> dict[str, Path]:
    """Under root/<experiment>/: the complete `record`, three unreadable ones and a partial one."""
    out = {"complete": record}
    experiment = json.loads((record / "config.json").read_text())["experiment"]
    for seed, case in enumerate(["truncated metrics", "empty object", "null", "partial"], start=1):
        cfg = Config(**{**TINY, "seed": seed, "experiment": experiment})
        path = records.run_dir(cfg, root)
        shutil.copytree(record, path)
        records.write_json(path / "config.json", cfg.to_dict())
        edit_metrics(path, run_id=cfg.run_id())
        if case == "partial":
            (path / records.METRICS).unlink()
        else:
            CORRUPTIONS[case][0](path)
        out[case] = path
    return out


def test_collect_names_each_record_it_leaves_out(record, caplog):
    paths = bad_records(record.parent.parent, record)
    found = find_records(record.parent.parent)
    assert found.complete == [record] and sorted(found.unreadable) == sorted(
        paths[c] for c in ("truncated metrics", "empty object", "null"))
    assert found.partial == [paths["partial"]]
    assert found.counts() == "1 collected, 3 unreadable, 1 partial"
    with caplog.at_level("WARNING"):
        runs, curves = collect(record.parent.parent)
    assert list(runs["run_id"]) == [json.loads((record / "metrics.json").read_text())["run_id"]]
    assert len(curves) == 2
    lines = sorted(r.getMessage() for r in caplog.records)
    assert lines == sorted([
        f"unreadable record {paths['truncated metrics']}: "
        + records.record_status(paths["truncated metrics"]).partition(": ")[2],
        f"unreadable record {paths['empty object']}: metrics.json lacks run_id, acc, bwt, fwt_authors, "
        "fwt_standard, acc_matrix, incremental_acc",
        f"unreadable record {paths['null']}: metrics.json holds NoneType, not an object",
        f"partial record {paths['partial']}: no metrics.json (failed, killed or still running)",
    ])


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cldst.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_collect_and_figures_count_what_they_leave_out(tmp_path, result):
    root = tmp_path / "runs"
    smoke = dataclasses.replace(result, config=result.config.replace(experiment="smoke/e2e"))
    record = records.save_result(smoke, records.run_dir(smoke.config, root))
    paths = bad_records(root, record)
    out = run_cli("collect", "--root", str(root), "--out", str(tmp_path / "collected"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"collected into {tmp_path / 'collected'}: 1 collected, 3 unreadable, 1 partial"
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == 4 and all(w.startswith(("WARNING unreadable record ", "WARNING partial record "))
                                      for w in warnings), out.stderr
    assert all(any(str(paths[c]) in w for w in warnings) for c in paths if c != "complete")
    assert "Traceback" not in out.stderr

    env = {"CLDST_FIGURES": str(tmp_path / "figures"), "CLDST_TABLES": str(tmp_path / "tables")}
    out = run_cli("figures", "--profile", "smoke", "--root", str(root), env=env)  # a profile's runs: <root>/smoke
    assert out.returncode == 0, out.stderr
    assert f"records under {root / 'smoke'}: 1 collected, 3 unreadable, 1 partial" in out.stdout.splitlines()
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 4, out.stderr


def test_cli_run_redoes_a_corrupt_record_and_says_so(tmp_path, record, monkeypatch, capsys, caplog):
    from cldst.cli import main

    monkeypatch.setenv("CLDST_RUNS", str(record.parent.parent))
    template = tmp_path / "template"
    shutil.copytree(record, template)
    monkeypatch.setenv("CLDST_TEST_TEMPLATE", str(template))
    monkeypatch.setattr(sweep, "execute_run", fake_execute_run)
    truncate(record / "metrics.json")
    argv = ["run", *[f"--{k}={v}" for k, v in TINY.items()]]
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{record}: corrupt: metrics.json is not valid JSON (")
    assert messages[0].endswith("; redoing it")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"record: {record}" and out[1].startswith("ACC ")
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"already complete: {record}"
    assert [p.name for p in (record.parent.parent / "calls").iterdir()] == [record.name]  # executed once


def test_cli_run_of_a_held_run_touches_nothing(tmp_path, monkeypatch, capsys):
    from cldst.cli import main

    monkeypatch.setenv("CLDST_RUNS", str(tmp_path / "runs"))
    path = records.run_dir(Config(**TINY), tmp_path / "runs")
    lock = records.try_lock(path)  # this process plays the other sweep; the run's worker is another process
    try:
        assert main(["run", *[f"--{k}={v}" for k, v in TINY.items()]]) == 1
    finally:
        lock.release()
    assert capsys.readouterr().err == (
        f"held by another process: {path} is being executed there; re-run when it is done\n")
    assert not path.exists()


# ---------------------------------------------------------------------- data
def test_a_failed_download_leaves_no_data_folder(tmp_path, monkeypatch):
    import pooch

    def retrieve(url, known_hash, fname, path, progressbar):
        os.makedirs(path, exist_ok=True)  # what pooch does before it downloads
        raise ConnectionError("network unreachable")

    monkeypatch.delenv("CLDST_OFFLINE", raising=False)
    monkeypatch.setattr(pooch, "retrieve", retrieve)
    cfg = Config(**{**TINY, "dataset": "cifar100", "data_root": str(tmp_path / "new" / "data")})
    with pytest.raises(DataError, match="download failed"):
        sweep.ensure_datasets([cfg])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()  # a folder that was there stays
    with pytest.raises(DataError):
        sweep.ensure_datasets([cfg.replace(data_root=str(tmp_path / "mine"))])
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]


def _environment_in_a_process(**env) -> dict:
    code = "import json; from cldst import records; print(json.dumps(records.environment_info()))"
    clean = {k: v for k, v in os.environ.items() if k not in records.ISA_CAPS}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif("avx2" not in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""),
                    reason="needs an x86 CPU with AVX2 (to cap torch's kernels at it)")
def test_a_record_says_which_cpu_instruction_set_computed_it():
    """Another ISA gives a CPU run other numbers (on an AVX-512 host the cpu profile's fixed-gradient runs
    of `adaptive` mean 47.66 by default and 49.53 capped at AVX2), so environment.json keeps the ISA torch's
    kernels used, and the caps that chose it."""
    capped = _environment_in_a_process(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert capped["cpu_capability"] == "AVX2"
    assert (capped["ATEN_CPU_CAPABILITY"], capped["ONEDNN_MAX_CPU_ISA"]) == ("avx2", "AVX2")
    free = _environment_in_a_process()
    assert free["cpu_capability"] in ("AVX2", "AVX512") and not set(records.ISA_CAPS) & set(free)
    assert free["cpu_model"] == capped["cpu_model"] and free["cpu_model"]
