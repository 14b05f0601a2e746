"""The training loop on tiny real runs: schedule, determinism, isolation, topology updates, the record."""

import json
import logging
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from cldst import records
from cldst.config import Config, preset
from cldst.sparse import load_masks
from cldst.train import Trainer, lr_milestones, train_continual

# 4 tasks of 25 synth100 classes, 2 training images per class: 50 per task, batch 16 -> 4 steps per
# epoch, 3 epochs -> 12 steps per task; a width-4 network on 16 px images (seconds per run).
TINY = dict(dataset="synth100", num_tasks=4, image_size=16, width=4, batch_size=16, train_per_class=2,
            test_per_class=2, epochs=3, update_frequency=5, lr=1e-2, variant="cifar", progress=False, experiment="unit")
STEPS = 3 * math.ceil(25 * 2 / 16)  # 12


@pytest.mark.parametrize("epochs, milestones", [(100, [50, 75]), (25, [12, 18]), (4, [2, 3]), (2, [1]), (1, [])])
def test_lr_drops_at_half_and_three_quarters(epochs, milestones):
    assert lr_milestones(epochs) == milestones


# the rate of each epoch of a task, lr 1e-3, as the run's own scheduler sets it (hand-computed)
@pytest.mark.parametrize("rule, epochs, rates", [
    ("distinct", 1, [1e-3]), ("authors", 1, [1e-5]),  # authors: milestones [0, 0], x0.1 twice from the start
    ("distinct", 2, [1e-3, 1e-4]), ("authors", 2, [1e-3, 1e-5]),  # [1, 1]: x0.1 twice at epoch 1
    ("distinct", 4, [1e-3, 1e-3, 1e-4, 1e-5]), ("authors", 4, [1e-3, 1e-3, 1e-4, 1e-5]),  # [2, 3]: the same
])
def test_the_authors_milestone_rule_differs_at_one_and_two_epochs(rule, epochs, rates):
    cfg = Config(**{**TINY, "epochs": epochs, "lr": 1e-3, "lr_milestones": rule})
    trainer = Trainer(cfg)
    seen = []
    trainer.train_step = lambda x, y, t, optimizer, step, **kw: (  # record the rate, skip the arithmetic
        seen.append(optimizer.param_groups[0]["lr"]) or (torch.zeros(()), torch.zeros_like(y), None))
    trainer.sparsity.begin_task(0, trainer.steps_per_task(0))
    trainer.train_task(0)
    per_epoch = [seen[i * len(seen) // epochs] for i in range(epochs)]
    np.testing.assert_allclose(per_epoch, rates, rtol=1e-12)
    assert Config(**{**TINY, "lr_milestones": "distinct"}).run_id() == Config(**TINY).run_id()  # the old behaviour
    assert preset("authors").lr_milestones == "authors"


@pytest.mark.parametrize("bn", ["batch", "task"])  # batch statistics (authors) or one BN per task
def test_a_run_is_deterministic_isolated_and_updates_on_schedule(bn):
    cfg = Config(**TINY, growth="gradient", sparse_init="uniform", density=0.2, bn=bn)
    trainer = Trainer(cfg)
    first, second = trainer.run(), train_continual(cfg)
    A = first.acc_matrix
    assert A.shape == (4, 4) and np.isnan(A[np.triu_indices(4, k=1)]).all()
    # same seed, same everything: the accuracy matrix and every task's mask bit for bit
    np.testing.assert_array_equal(A, second.acc_matrix)
    for a, b in zip(first.sparsity.masks, second.sparsity.masks):
        assert all(torch.equal(a[name], b[name]) for name in a)
    # parameter isolation, BN that no later task changes, deterministic evaluation: no forgetting at all.
    # Rows after task i copy A[i, i] (fingerprint-guarded), so the check is a FRESH evaluation of every
    # task with the final network, compared with its accuracy right after it was trained
    fresh = [trainer.evaluate_task(i) for i in range(4)]
    assert fresh == [A[i, i] for i in range(4)]
    assert len({A[i, i] for i in range(4)}) > 1  # not all one value (a constant would pass trivially)
    assert first.metrics()["bwt"] == 0.0
    # updates at steps 5 and 10 of each task's 12 (never at 0 nor at the end)
    assert [(u["task"], u["step"]) for u in first.updates] == [(t, s) for t in range(4) for s in (5, 10)]
    assert first.metrics()["topology_updates"] == 8 and first.metrics()["warnings"] == []
    assert first.growth_per_task == ["gradient"] * 4
    # another seed draws other masks
    other = train_continual(cfg.replace(seed=1))
    assert not torch.equal(other.sparsity.masks[0]["head.weight"], first.sparsity.masks[0]["head.weight"])


def test_too_few_steps_for_an_update_and_density_1_are_said_not_hidden(caplog):
    cfg = Config(**{**TINY, "num_tasks": 2, "epochs": 1, "update_frequency": 100})  # 100 images: 7 steps
    trainer = Trainer(cfg)
    (message,) = trainer.run_warnings()
    assert message.startswith("update_frequency=100 but a task has only 7 optimizer steps")
    with caplog.at_level(logging.INFO, logger="cldst.train"):
        result = trainer.run()
    assert message in caplog.text
    assert caplog.messages[0] == (
        "about to run resnet18 width 4 (cifar variant): 0.05M parameters, 0.005M in each task's mask (ERK density "
        "0.1); 2 tasks of 50 classes of synth100 (16 px, 100 training images per task); 7 steps per task (1 epoch "
        "of 7 batches of 16), 0 topology updates per task (every 100 steps, growth random)")
    tasks = [m for m in caplog.messages if m.startswith("task ")]
    assert [m[: len("task 1/2 done in ")] for m in tasks] == ["task 1/2 done in ", "task 2/2 done in "]
    assert f"its accuracy {result.acc_matrix[1, 1]:.2f}%, mean over tasks 1-2 {result.metrics()['acc']:.2f}%" in tasks[1]
    assert result.updates == [] and result.metrics()["topology_updates"] == 0
    assert result.metrics()["warnings"] == [message]  # kept in metrics.json; `cldst run` prints it
    # an update at step 6 of 7 still happens; at step 7, the task's end, none does
    assert Trainer(cfg.replace(update_frequency=6)).updates_per_task() == 1
    assert Trainer(cfg.replace(update_frequency=6)).run_warnings() == []
    assert Trainer(cfg.replace(update_frequency=7)).updates_per_task() == 0  # step 7 is the last
    assert Trainer(cfg.replace(update_frequency=7, update_at_end=True)).updates_per_task() == 1
    # density 1: said, and so is a task too short for an update (it used to hide behind density 1)
    dense = Trainer(cfg.replace(density=1.0)).run_warnings()
    assert [w.split("=")[0] for w in dense] == ["update_frequency", "density"]
    assert dense[1].startswith("density=1: task 0's mask is the whole backbone")


def test_the_record_holds_every_file_readable_and_metrics_last(tmp_path):
    cfg = Config(**{**TINY, "num_tasks": 2, "update_frequency": 100})  # no update: updates.csv keeps its header
    result = train_continual(cfg)
    path = records.save_result(result, tmp_path / "run")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["capacity.csv", "config.json", "environment.json", "masks.pt", "metrics.json", "updates.csv"]
    assert list(pd.read_csv(path / "updates.csv").columns) == records.UPDATE_COLUMNS
    for name in names:  # not owner-only: results are shared on clusters
        assert (path / name).stat().st_mode & 0o777 == 0o666 & ~_umask(), name
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["acc"] == result.metrics()["acc"] and metrics["run_id"] == cfg.run_id()
    assert records.load_config(path) == cfg
    masks = load_masks(path / "masks.pt")
    assert len(masks) == 2
    assert all(torch.equal(masks[t][n], result.sparsity.masks[t][n].cpu()) for t in range(2) for n in masks[t])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_per_task_bn_statistics_are_recomputed_from_the_final_weights():
    cfg = Config(**{**TINY, "num_tasks": 2, "bn": "task"})
    trainer = Trainer(cfg)
    norms = trainer.net.task_norms
    untouched = [{k: v.clone() for k, v in norm.norms[1].state_dict().items()} for norm in norms]
    trainer.sparsity.begin_task(0, trainer.steps_per_task(0))
    trainer.train_task(0)
    passes = math.ceil(len(trainer.tasks[0].train_y) / cfg.batch_size)  # 100 images, batch 16: 7
    for norm, before in zip(norms, untouched):
        bn = norm.norms[0]
        assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == passes  # one pass, then reset
        assert all(torch.equal(v, before[k]) for k, v in norm.norms[1].state_dict().items())  # task 1's
    # a pure function of the final weights: spoil the statistics, recalibrate, get them back bit for bit
    stats = [(norm.norms[0].running_mean.clone(), norm.norms[0].running_var.clone()) for norm in norms]
    for norm in norms:
        norm.norms[0].running_mean.fill_(3.0)
    trainer.recalibrate_norms(0)
    for norm, (mean, var) in zip(norms, stats):
        assert torch.equal(norm.norms[0].running_mean, mean) and torch.equal(norm.norms[0].running_var, var)


@pytest.mark.slow
def test_compile_matches_eager_and_compiles_the_same_graphs_for_any_number_of_tasks():
    """compile=True compiles the backbone alone: its graphs do not depend on the task, so a run of more
    tasks adds none (compiling the whole net recompiled per task and hit torch's recompile limit)."""
    from torch._dynamo.utils import counters

    # lr 1e-3: at 1e-2 float rounding differences grow into other topology picks within a few steps
    cfg = Config(**{**TINY, "num_tasks": 2, "epochs": 2, "update_frequency": 3, "lr": 1e-3})
    graphs = {}
    for tasks in (2, 4):
        torch._dynamo.reset()
        counters.clear()
        compiled = train_continual(cfg.replace(num_tasks=tasks, compile=True))
        graphs[tasks] = counters["stats"]["unique_graphs"]
    assert graphs[2] == graphs[4] >= 1
    eager = train_continual(cfg.replace(num_tasks=4))
    np.testing.assert_allclose(compiled.final_loss, eager.final_loss, rtol=1e-4)
    assert np.nanmax(np.abs(compiled.acc_matrix - eager.acc_matrix)) <= 1.0  # at most one test image of 100
    torch._dynamo.reset()


def test_steps_per_task_equal_the_batches_the_iterator_yields():
    # 25 classes x 9 images = 225 = 14 * 16 + 1: the lone last image joins the 14th batch, so an epoch
    # is 14 steps (ceil(225 / 16) = 15 would put the schedule's horizon one step per epoch too late)
    trainer = Trainer(Config(**{**TINY, "train_per_class": 9}))
    batches = sum(1 for _ in trainer_batches(trainer, 0)) * trainer.cfg.epochs
    assert trainer.steps_per_task(0) == batches == 3 * 14


def trainer_batches(trainer: Trainer, t: int):
    from cldst.data import train_batches

    data = trainer.tasks[t]
    return train_batches(data.train_x, data.train_y, trainer.cfg.batch_size, mean=trainer.data.mean,
                         std=trainer.data.std, generator=torch.Generator().manual_seed(0))


def test_eval_batch_size_is_its_own_field():
    trainer = Trainer(Config(**{**TINY, "test_per_class": 5, "eval_batch_size": 0}))  # 125 test images per task
    seen = []
    trainer.net.backbone.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    trainer.accuracy(0, trainer.tasks[0])
    assert seen == [16] * 7 + [13]  # 0: the training batch size
    seen.clear()
    trainer.cfg.eval_batch_size = 50
    trainer.accuracy(0, trainer.tasks[0])
    assert seen == [50, 50, 25]


def test_checkpoint_best_train_keeps_the_epoch_with_the_best_training_accuracy(monkeypatch):
    # at lr 0.1 training accuracy peaks before the last epoch (checked below, so the test
    # cannot pass vacuously). The weights and mask of every epoch's end are recorded in passing.
    cfg = Config(**{**TINY, "num_tasks": 2, "epochs": 5, "lr": 0.1, "checkpoint": "best_train"})
    kept = []
    step = torch.optim.lr_scheduler.MultiStepLR.step

    def record_then_step(scheduler, *args, **kwargs):
        kept.append(({k: v.clone() for k, v in trainer.net.state_dict().items()},
                     {k: m.clone() for k, m in trainer.sparsity.mask.items()}))
        return step(scheduler, *args, **kwargs)

    trainer = Trainer(cfg)
    monkeypatch.setattr(torch.optim.lr_scheduler.MultiStepLR, "step", record_then_step)
    trainer.sparsity.begin_task(0, trainer.steps_per_task(0))
    trainer.train_task(0)
    accuracy = trainer.train_accuracy[0]
    best = int(np.argmax(accuracy))  # the first of equal maxima, as strict ">" keeps it
    assert len(accuracy) == 5 and best < 4, accuracy
    kept = kept[1:]  # MultiStepLR steps once when it is made: then once per epoch
    weights, mask = kept[best]
    assert all(torch.equal(v, weights[k]) for k, v in trainer.net.state_dict().items())
    assert all(torch.equal(m, mask[k]) for k, m in trainer.sparsity.mask.items())
    assert not all(torch.equal(m, kept[-1][1][k]) for k, m in trainer.sparsity.mask.items())  # not the last
    trainer.sparsity.end_task()
    trainer.sparsity.check_invariants()


def test_earlier_tasks_are_not_evaluated_again_unless_a_shared_batchnorm_can_change_them(monkeypatch):
    calls = []
    evaluate = Trainer.evaluate_task
    monkeypatch.setattr(Trainer, "evaluate_task", lambda self, t: calls.append(t) or evaluate(self, t))
    cfg = Config(**{**TINY, "num_tasks": 4})
    result = train_continual(cfg)
    assert calls == [0, 1, 2, 3]  # each task once; its later entries reuse it (fingerprints checked)
    assert not np.isnan(result.acc_matrix[np.tril_indices(4)]).any()
    calls.clear()
    shared = train_continual(cfg.replace(bn="standard"))
    assert calls == [0, 0, 1, 0, 1, 2, 0, 1, 2, 3]  # a shared BatchNorm keeps training: every task seen again
    assert shared.acc_matrix.shape == (4, 4) and not np.isnan(shared.acc_matrix[3]).any()


def test_a_changed_subnetwork_is_caught_not_reused(monkeypatch):
    """Reusing A[i, i] rests on task i's weights being frozen; the fingerprints check it at the end."""
    end_task = Trainer.__init__

    def spoil_after_task_0(self, *args, **kwargs):
        end_task(self, *args, **kwargs)
        original = self.sparsity.end_task

        def end_and_spoil():
            original()
            if len(self.sparsity.masks) == 2:  # after task 1: write into task 0's frozen weights
                name = next(iter(self.sparsity.values))
                self.sparsity.values[name][self.sparsity.masks[0][name]] += 1.0
        self.sparsity.end_task = end_and_spoil

    monkeypatch.setattr(Trainer, "__init__", spoil_after_task_0)
    with pytest.raises(RuntimeError, match=r"the subnetworks of tasks \[0\] changed after they were trained"):
        train_continual(Config(**{**TINY, "num_tasks": 2}))
