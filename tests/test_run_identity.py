"""Run identity outlives the code, and one pool of runs per profile: each configuration executed once.

The fixture `fixtures/records_2026-12/` is a real record written by the code of December 2026 (a 2-task
synth100 run, before the pool layout: <profile>/<experiment>/<run id>); its files are never rewritten.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from cldst import config as config_module
from cldst import experiments, records, sweep
from cldst.analysis.paper import select_runs
from cldst.collect import collect
from cldst.config import ADDED_FIELDS, ID_FIELDS, Config, check_identity_fields

FIXTURES = Path(__file__).parent / "fixtures" / "records_2026-12"
OLD_RECORD = FIXTURES / "smoke" / "cifar100-10" / "synth100-T2-resnet18-ERK-random-d0.2-s0-20137b41ee"
OLD_ID = OLD_RECORD.name


def test_a_record_written_by_earlier_code_is_complete_and_keeps_its_id():
    assert records.record_status(OLD_RECORD) == records.COMPLETE
    assert records.load_config(OLD_RECORD).run_id() == OLD_ID == json.loads((OLD_RECORD / "metrics.json").read_text())["run_id"]


@dataclasses.dataclass
class WithNewField(Config):
    """Config as it would be after a developer adds a field that changes the numbers."""

    lr_warmup: int = 5  # a new field whose default is NOT what runs did before it existed (0: no warm-up)


def test_adding_a_registered_field_changes_no_id_and_keeps_old_records_complete(monkeypatch):
    plain = Config().run_id()  # before the field exists
    monkeypatch.setitem(ADDED_FIELDS, "lr_warmup", 0)  # 0 reproduces the behaviour before the field
    check_identity_fields(WithNewField)  # registered: accepted
    monkeypatch.setattr(records, "Config", WithNewField)  # record_status reads config.json with it
    assert records.record_status(OLD_RECORD) == records.COMPLETE
    old = records.load_config(OLD_RECORD)
    assert old.lr_warmup == 0  # read as what the run did, not as today's default (5)
    assert old.run_id() == OLD_ID
    # a new run with the field at its new default, or any value but 0, is another run
    assert old.replace(lr_warmup=5).run_id() != OLD_ID
    assert WithNewField().run_id() != plain
    assert WithNewField(lr_warmup=0).run_id() == plain


def test_an_unregistered_field_is_refused_at_import():
    with pytest.raises(TypeError, match="lr_warmup: add each to ADDED_FIELDS"):
        check_identity_fields(WithNewField)


def test_run_ids_of_the_paper_grid_are_those_of_the_first_ids():
    """The ids hash ID_FIELDS exactly as the first ids hashed every non-bookkeeping field: a known id
    (the fixture's) and the hash written out here agree, for a config with every field set."""
    import hashlib

    cfg = records.load_config(OLD_RECORD)
    # the record's own config.json: every field Config had when it was written
    written = json.loads((OLD_RECORD / "config.json").read_text())
    fields = {k: v for k, v in written.items() if k not in Config.NON_IDENTITY}
    assert tuple(sorted(fields)) == tuple(sorted(ID_FIELDS))
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    assert cfg.run_id().endswith("-" + digest)


def test_the_paper_grid_is_573_distinct_runs_and_a_sweep_plans_each_once(tmp_path):
    cfgs = experiments.all_configs("paper")
    assert len(cfgs) == 606  # as the experiments list them
    distinct = {c.run_id() for c in cfgs}
    assert len(distinct) == 573
    report, todo = sweep.plan(cfgs, str(tmp_path))
    assert len(todo) == 573 and {c.run_id() for c in todo} == distinct
    # the shared runs: batchnorm's bn=batch cells, adaptive's fixed random and gradient, ΔT 400
    # the repeats: batchnorm's bn=batch cells (9 runs), adaptive's fixed random and gradient (6), ΔT 400 of
    # update-frequency (18) are all cifar100-10 runs: 33 listings of 21 runs (ERK 90% random is in all four)
    repeats = [c.run_id() for c in experiments.configs("batchnorm", "paper") if c.bn == "batch"]
    repeats += [c.run_id() for c in experiments.configs("adaptive", "paper") if c.growth in ("random", "gradient")]
    repeats += [c.run_id() for c in experiments.configs("update-frequency", "paper") if c.update_frequency == 400]
    assert len(repeats) == 9 + 6 + 18 == 606 - 573 and len(set(repeats)) == 21
    assert set(repeats) <= {c.run_id() for c in experiments.configs("cifar100-10", "paper")}
    assert len({c.run_id() for c in experiments.all_configs("cpu")}) == 87


def test_the_sweeps_bar_counts_distinct_runs(tmp_path, monkeypatch):
    """The cpu grid lists 102 configurations, 87 distinct runs: the bar says 87, as the CLI's line does
    (it said 102 and ended at 87/102). The executor is replaced: only the bar is looked at."""
    import io

    from cldst import executors

    cfgs = experiments.all_configs("cpu")
    seen = {}
    monkeypatch.setattr(executors, "run", lambda name, batch, **kw: seen.update(total=batch.bar.total, todo=len(batch.todo)))
    monkeypatch.setattr(sweep, "tqdm", lambda **kw: __import__("tqdm").tqdm(**kw, file=io.StringIO()))
    sweep.run_sweep(cfgs, root=str(tmp_path), check_data=False)
    assert len(cfgs) == 102 and seen == {"total": 87, "todo": 87}


def test_a_shared_run_is_read_by_every_experiment_that_selects_it(tmp_path):
    cfg = next(c for c in experiments.configs("batchnorm", "cpu") if c.bn == "batch" and c.density == 0.2)
    path = records.run_dir(cfg, tmp_path)
    assert path == tmp_path / "cpu" / cfg.run_id()
    shutil.copytree(OLD_RECORD, path)
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    metrics = json.loads((path / "metrics.json").read_text())
    (path / "metrics.json").write_text(json.dumps({**metrics, "run_id": cfg.run_id()}))
    assert records.record_status(path) == records.COMPLETE
    runs, curves = collect(tmp_path)
    assert len(runs) == 1
    for name in ("batchnorm", "cifar100-10"):
        assert list(select_runs(runs, name, "cpu")["run_id"]) == [cfg.run_id()]
        assert len(select_runs(curves, name, "cpu")) == 2  # its two tasks, once
    assert select_runs(runs, "adaptive", "cpu").empty  # adaptive runs ERK at 90% sparsity, this run is at 80%
    assert select_runs(runs, "cifar100-10", "smoke").empty  # another profile's pool


def test_a_complete_record_of_the_old_layout_is_moved_into_the_pool_not_rerun(tmp_path):
    old = tmp_path / "smoke" / "cifar100-10" / OLD_ID
    shutil.copytree(OLD_RECORD, old)
    cfg = records.load_config(old).replace(experiment="smoke")  # what configs() now gives
    report, todo = sweep.plan([cfg], str(tmp_path))
    assert todo == [] and report.skipped == [OLD_ID]
    assert not old.exists() and records.record_status(tmp_path / "smoke" / OLD_ID) == records.COMPLETE


def test_the_identity_registry_is_complete():
    names = {f.name for f in dataclasses.fields(Config)}
    assert names == set(ID_FIELDS) | set(ADDED_FIELDS) | set(Config.NON_IDENTITY)
    assert config_module.check_identity_fields() is None
