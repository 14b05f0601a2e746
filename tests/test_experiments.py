"""The experiment registry: every paper artifact's grid, scaled by profiles."""

import pytest

from cldst import experiments
from cldst.errors import ConfigError
from cldst.train import Trainer


def test_paper_grid_sizes():
    sizes = {name: len(experiments.configs(name, "paper")) for name in experiments.EXPERIMENTS}
    # 2 inits x 4 growths x 3 densities x 3 seeds per table scenario
    assert sizes == {
        "cifar100-20": 72, "miniimagenet-10": 72, "cifar100-10": 72, "cifar100-5": 72,
        "adaptive": 12, "update-frequency": 72, "sparsity": 72, "mobilenetv2": 72, "vgg": 72,
        "batchnorm": 18,  # ours: ERK x 3 densities x 2 BatchNorms x 3 seeds
    }
    assert sum(sizes.values()) == 606


def test_paper_profile_matches_the_paper_setup():
    cfgs = experiments.configs("cifar100-20", "paper")
    assert {c.epochs for c in cfgs} == {25}
    assert {c.num_tasks for c in cfgs} == {20}
    assert {c.density for c in cfgs} == {0.2, 0.1, 0.05}
    assert {c.seed for c in cfgs} == {0, 1, 2}
    assert {c.epochs for c in experiments.configs("cifar100-10", "paper")} == {100}
    assert {c.dataset for c in experiments.configs("miniimagenet-10", "paper")} == {"miniimagenet"}
    adaptive = {c.growth for c in experiments.configs("adaptive", "paper")}
    assert "0:random,5:gradient" in adaptive and {"random", "gradient"} <= adaptive
    assert {c.update_frequency for c in experiments.configs("update-frequency", "paper")} == {50, 100, 200, 400}


def test_run_ids_differ_within_each_experiment():
    """Within one experiment every configuration is another run (the pool across experiments:
    tests/test_run_identity.py)."""
    for name in experiments.EXPERIMENTS:
        cfgs = experiments.configs(name, "paper")
        assert len({c.run_id() for c in cfgs}) == len(cfgs), name


def test_smoke_profile_scales_without_changing_the_grid():
    smoke = experiments.configs("cifar100-10", "smoke")
    assert len(smoke) == 24
    assert {c.dataset for c in smoke} == {"synth100"}
    assert {c.experiment for c in smoke} == {"smoke"}  # the profile's pool of runs
    assert {c.update_frequency for c in experiments.configs("update-frequency", "smoke")} == {1, 2, 3, 6}
    assert {c.update_frequency for c in experiments.configs("cifar100-10", "paper")} == {experiments.UPDATE_FREQUENCY}


def test_every_smoke_run_gets_topology_updates():
    """The smoke profile exercises DST itself: no run's tasks are shorter than its update frequency."""
    shapes = {}  # one Trainer per distinct (tasks, epochs, update frequency, batch, data size)
    for cfg in experiments.all_configs("smoke"):
        key = (cfg.num_tasks, cfg.epochs, cfg.update_frequency, cfg.batch_size, cfg.train_per_class)
        shapes.setdefault(key, cfg)
    assert len(shapes) >= 5
    for cfg in shapes.values():
        assert Trainer(cfg).updates_per_task() >= 1, cfg.run_id()


def test_unknown_names():
    with pytest.raises(ConfigError, match="experiment 'table9' is not one of: cifar100-20"):
        experiments.configs("table9")
    with pytest.raises(ConfigError, match="profile 'huge' is not one of: paper, cpu, smoke"):
        experiments.configs("adaptive", "huge")
    with pytest.raises(ConfigError, match="profile 'cpu' is sized for experiments cifar100-10, adaptive, batchnorm, "
                                          "not 'vgg'"):
        experiments.configs("vgg", "cpu")


def test_cpu_profile_runs_validate_and_every_one_updates_its_topology():
    """The cpu profile carries the findings: 3 seeds of the three experiments behind them, and every
    run does dynamic sparse training (no task shorter than its update frequency)."""
    cfgs = experiments.all_configs("cpu")
    assert experiments.experiments_of("cpu") == ["cifar100-10", "adaptive", "batchnorm"]
    assert len(cfgs) == (24 + 4 + 6) * 3 and {c.seed for c in cfgs} == {0, 1, 2}
    assert {c.dataset for c in cfgs} == {"synth100"} and {c.variant for c in cfgs} == {"authors"}
    for cfg in {(c.num_tasks, c.update_frequency, c.batch_size, c.train_per_class, c.epochs): c for c in cfgs}.values():
        trainer = Trainer(cfg)
        steps = trainer.steps_per_task(0)
        assert trainer.updates_per_task() >= 5, (steps, cfg.update_frequency)
