"""The Config: one source of truth for notebook parameters, CLI flags and run records."""

import ast
from dataclasses import fields

import papermill
import pytest

from cldst.cli import build_parser, config_from_args
from cldst.config import Config, field_help, parameters_cell, preset
from cldst.errors import ConfigError
from cldst.paths import NOTEBOOKS_DIR


def test_train_notebook_parameters_cell_is_generated_from_config():
    """One source: the field comments in config.py. Regenerate the cell with
    `.venv/bin/python -c "from cldst.config import write_parameters_cell; write_parameters_cell()"`."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS_DIR / "train.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1 and cells[0].source == parameters_cell()
    assert all(field_help().values()), "every Config field needs a one-line comment"
    assert not [h for h in field_help().values() if "=" in h], "papermill cannot read a help text with '='"


def test_train_notebook_parameters_are_exactly_the_config_fields():
    params = papermill.inspect_notebook(str(NOTEBOOKS_DIR / "train.ipynb"))
    defaults = Config()
    assert list(params) == [f.name for f in fields(Config)]
    for name, info in params.items():
        assert ast.literal_eval(info["default"]) == getattr(defaults, name), name


def test_run_id_is_a_pure_function_of_identity_fields():
    a = Config(density=0.2, growth="gradient", seed=1)
    assert a.run_id() == Config(density=0.2, growth="gradient", seed=1).run_id()
    assert a.run_id() != a.replace(seed=2).run_id()
    assert a.run_id() != a.replace(lr=0.01).run_id()
    # bookkeeping fields do not change what a run computes
    assert a.run_id() == a.replace(experiment="other", device="cpu", progress=False, save_masks=False).run_id()
    assert a.run_id().startswith("synth100-T10-resnet18-ERK-gradient-d0.2-s1-")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sparse_init": "erk2"}, "sparse_init='erk2' is not one of: uniform, ERK"),
        ({"density": 0.0}, "density=0.0 must be in (0, 1]"),
        ({"density": 1.5}, "density=1.5 must be in (0, 1]"),
        ({"num_tasks": 7}, "num_tasks=7 does not divide num_classes=100 (allowed: 1, 2, 4, 5, 10, 20, 25, 50, 100)"),
        ({"num_classes_per_task": 20}, "num_classes_per_task=20 must equal num_classes/num_tasks = 10"),
        ({"dataset": "mnist"}, "dataset='mnist' is not one of: synth100, cifar100, miniimagenet"),
        ({"growth": "magic"}, "growth"),
        ({"epochs": 0}, "epochs=0 must be a positive integer"),
        ({"t_end": 0.0}, "t_end=0.0 must be in (0, 1]"),
        ({"head": "multi", "eval_logits": "all"}, "eval_logits='all' needs head='shared'"),
        ({"experiment": "../x"}, "experiment='../x'"),
    ],
)
def test_bad_values_give_one_clear_line(changes, message):
    with pytest.raises(ConfigError) as info:
        Config(**changes).validate()
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_aliases_and_case():
    assert Config(dataset="miniImageNet100").dataset == "miniimagenet"
    assert Config(dataset="CIFAR100").dataset == "cifar100"
    assert Config(sparse_init="erk").sparse_init == "ERK"


def test_from_dict_rejects_unknown_and_coerces():
    cfg = Config.from_dict({"density": "0.05", "epochs": "3", "save_masks": "false"})
    assert (cfg.density, cfg.epochs, cfg.save_masks) == (0.05, 3, False)
    with pytest.raises(ConfigError, match="unknown field"):
        Config.from_dict({"densty": 0.1})
    with pytest.raises(ConfigError, match="epochs='x' must be an integer"):
        Config.from_dict({"epochs": "x"})


def test_cli_accepts_the_authors_flags():
    argv = ("run --dataset cifar100 --num_tasks 20 --num_classes 100 --num_classes_per_task 5 "
            "--sparse_init uniform --growth unfired --density 0.05 --epochs 25 --update_frequency 100 --seed 2").split()
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.dataset, cfg.num_tasks, cfg.num_classes_per_task, cfg.sparse_init, cfg.growth) == (
        "cifar100", 20, 5, "uniform", "unfired")
    assert (cfg.density, cfg.epochs, cfg.update_frequency, cfg.seed) == (0.05, 25, 100, 2)
    cfg = config_from_args(build_parser().parse_args("run --init ERK --save-masks false --progress".split()))
    assert (cfg.sparse_init, cfg.save_masks, cfg.progress) == ("ERK", False, True)


def test_authors_preset():
    cfg = preset("authors", density=0.2)
    assert (cfg.variant, cfg.eval_logits, cfg.new_weights, cfg.drop_fraction_min) == ("authors", "all", "zero", 0.005)
    assert (cfg.weight_init, cfg.reuse, cfg.drop_count, cfg.score_fill, cfg.update_at_end, cfg.checkpoint,
            cfg.eval_batch_size) == ("torch", "authors", "ceil", "authors", True, "best_train", 128)
    cfg = config_from_args(build_parser().parse_args("run --preset authors --eval_logits task".split()))
    assert (cfg.variant, cfg.eval_logits) == ("authors", "task")


def test_the_authors_flag_and_value_names_are_accepted():
    args = ("run --net_name vgg16 --death magnitude --death_rate 0.3 --growth random_unfired --init erk "
            "--num_classes_per_task 10 --dataset miniImageNet")
    cfg = config_from_args(build_parser().parse_args(args.split()))
    assert (cfg.arch, cfg.drop, cfg.drop_fraction, cfg.growth, cfg.sparse_init, cfg.dataset) == (
        "vgg", "magnitude", 0.3, "unfired", "ERK", "miniimagenet")
    assert Config(growth="0:random_unfired,5:gradient").growth == "0:unfired,5:gradient"


def test_a_criterion_registered_after_import_validates():
    from cldst.sparse import registry

    with pytest.raises(ConfigError, match="growth 'later_growth' is not one of"):
        Config(growth="later_growth").validate()
    try:
        registry.register_growth("later_growth")(lambda n, candidates, ctx: candidates)
        registry.register_drop("later_drop")(lambda n, active, weight: active)
        Config(growth="0:random,3:later_growth", drop="later_drop").validate()
    finally:  # other tests list the registries
        registry.GROWTH.pop("later_growth", None)
        registry.DROP.pop("later_drop", None)
