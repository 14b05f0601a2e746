"""The task-incremental training loop, stated explicitly.

Per task t (task id known at train and test time):
  1. the sparse engine draws task t's mask (exact per-layer counts, over free and frozen positions);
  2. a fresh Adam (lr 1e-3, x0.1 at 1/2 and 3/4 of the epochs) trains the task's free weights:
     forward, backward, `sparsity.step(optimizer, step)` (zero frozen scores if asked, optimizer step,
     restore frozen values and keep inactive weights at 0, topology update on schedule);
  3. the mask is stored and its free weights become frozen;
  4. task t is evaluated with its own mask and head; row t of the accuracy matrix holds it and the earlier
     tasks' entries, which cannot have changed (their weights are frozen, and fingerprints taken when they
     ended are checked at the end), except with a BatchNorm shared by all tasks: then every task seen so
     far is evaluated again.
Before task 0 the random network is evaluated on every task (FWT baseline) and before each task t its
freshly drawn, untrained subnetwork is evaluated on task t (standard FWT). After the last task the
authors' FWT evaluates task i's subnetwork on every later task's data.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cldst import metrics
from cldst.config import Config
from cldst.data import (
    ImageDataset,
    TaskData,
    batch_bounds,
    eval_batches,
    load_dataset,
    make_split,
    task_tensors,
    train_batches,
)
from cldst.errors import ConfigError, TrainingInterrupted
from cldst.models import ContinualNet, build_model
from cldst.sparse import ContinualSparsity, capacity_over_tasks, is_update_step

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Everything a run produces; `metrics()` is what goes into metrics.json."""

    config: Config
    acc_matrix: np.ndarray  # [T, T] percent; A[t, i] after training task t on task i, NaN for i > t
    fwt_matrix: np.ndarray  # [T, T] percent; F[i, j] = task i's subnetwork on task j's data (i < j)
    pre_acc: np.ndarray  # [T] accuracy on task t before training it (its mask drawn, untrained)
    baseline_acc: np.ndarray  # [T] accuracy of the random network on each task
    growth_per_task: list[str]
    task_seconds: list[float]  # training time per task (excluding evaluation)
    eval_seconds: float
    final_loss: list[float]  # mean training loss of each task's last epoch
    train_accuracy: list[list[float]]  # per task, per epoch: accuracy on the (augmented) training batches
    updates: list[dict[str, Any]]  # topology-update statistics
    capacity: pd.DataFrame  # task, layer, used_fraction, ... after each task
    trainable_start: list[float]  # share of each task's mask that is free (trainable) when it is drawn
    trainable_end: list[float]  # the same after the task's last topology update
    sparsity: ContinualSparsity = field(repr=False)
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)  # what the run's user should know (also logged)

    def metrics(self) -> dict[str, Any]:
        A = self.acc_matrix
        total = self.capacity[self.capacity["layer"] == "all"] if len(self.capacity) else self.capacity
        return {
            **metrics.summary(A, self.fwt_matrix, self.pre_acc, self.baseline_acc),
            "incremental_acc": metrics.incremental_accuracy(A).tolist(),
            "acc_matrix": _nan_to_none(A),
            "fwt_matrix": _nan_to_none(self.fwt_matrix),
            "pre_acc": self.pre_acc.tolist(),
            "baseline_acc": self.baseline_acc.tolist(),
            "growth_per_task": self.growth_per_task,
            "used_fraction": total["used_fraction"].tolist() if len(total) else [],
            "trainable_share_start": self.trainable_start,
            "trainable_share_end": self.trainable_end,
            "task_seconds": self.task_seconds,
            "train_seconds": float(sum(self.task_seconds)),
            "eval_seconds": self.eval_seconds,
            "final_loss": self.final_loss,
            "train_accuracy": self.train_accuracy,
            "topology_updates": len(self.updates),
            "warnings": self.warnings,
            "device": self.device,
        }


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if math.isnan(v) else float(v) for v in row] for row in a]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA device is available (use device=auto or cpu)")
    return torch.device(name)


def lr_milestones(epochs: int, rule: str = "distinct") -> list[int]:
    """Epochs at which the learning rate is multiplied by 0.1: 1/2 and 3/4 of the task's epochs.

    distinct: each once, none at 0. authors: [E // 2, 3E // 4] as the authors' code gives them to
    MultiStepLR, which multiplies once per listing, 0 included: at E=1 ([0, 0]) the rate is lr/100 from
    the first step, at E=2 ([1, 1]) lr then lr/100 (distinct: lr, then lr/10). From E=3 on both agree."""
    marks = [epochs // 2, (3 * epochs) // 4]
    return marks if rule == "authors" else sorted({m for m in marks if m > 0})


def prepare_data(cfg: Config) -> ImageDataset:
    ds = load_dataset(
        cfg.dataset,
        root=cfg.data_root or None,
        image_size=cfg.image_size or None,
        train_per_class=cfg.train_per_class,
        test_per_class=cfg.test_per_class,
        download=os.environ.get("CLDST_OFFLINE") != "1",  # tests and air-gapped clusters set CLDST_OFFLINE=1
    )
    if ds.num_classes != cfg.num_classes:
        raise ConfigError(f"num_classes={cfg.num_classes} but dataset {cfg.dataset!r} has {ds.num_classes} classes")
    return ds


class Trainer:
    """Holds the pieces of one run; `run()` executes the whole task sequence."""

    def __init__(self, cfg: Config, dataset: ImageDataset | None = None):
        self.cfg = cfg.validate()
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.data = dataset if dataset is not None else prepare_data(cfg)
        self.split = make_split(self.data.num_classes, cfg.num_tasks, cfg.class_order, cfg.class_order_seed)
        self.net: ContinualNet = build_model(
            cfg.arch,
            num_classes=cfg.num_classes,
            num_tasks=cfg.num_tasks,
            width=cfg.width,
            variant=cfg.variant,
            bn=cfg.bn,
            head=cfg.head,
            weight_init=cfg.weight_init,
        ).to(self.device)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if cfg.compile:
            # Only the backbone, in place (parameter names unchanged): it does not see the task id, so
            # its graphs serve every task. Compiling the whole net specialized on the task's head slice
            # and recompiled per task, past torch's recompile limit (from there on it ran eager).
            # On CPU, inductor's own switch to channels-last convolutions aborts the process in
            # oneDNN's convolution backward (torch 2.13, a 1x1 stride-2 shortcut at a symbolic batch
            # size): the layout stays what the run asked for (cfg.channels_last).
            options = {"layout_optimization": False} if self.device.type == "cpu" else None
            self.net.backbone.compile(options=options)
            if self.net.task_norms:
                log.warning("compile with bn='task': the backbone routes to the task's BatchNorms, so torch "
                            "recompiles it for every task (and runs eager past its recompile limit)")
        self.sparsity = ContinualSparsity(
            self.net.maskable_parameters(),
            density=cfg.density,
            init=cfg.sparse_init,
            growth=cfg.growth,
            drop=cfg.drop,
            update_frequency=cfg.update_frequency,
            alpha=cfg.drop_fraction,
            t_end=cfg.t_end,
            drop_min=cfg.drop_fraction_min,
            frozen_grad=cfg.frozen_grad,
            new_weights=cfg.new_weights,
            seed=cfg.seed,
            reuse=cfg.reuse,
            drop_count=cfg.drop_count,
            score_fill=cfg.score_fill,
            update_at_end=cfg.update_at_end,
        )
        self.tasks: list[TaskData] = [
            task_tensors(self.data, self.split, t, self.device) for t in range(cfg.num_tasks)
        ]
        self.updates: list[dict[str, Any]] = []  # topology-update statistics, filled by train_task
        self.train_accuracy: list[list[float]] = []  # per task, per epoch (percent), filled by train_task
        # One CPU generator drives shuffling and augmentation: same seed, same batches.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else contextlib.nullcontext()
        )

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def accuracy(self, head_task: int, data: TaskData) -> float:
        """Top-1 accuracy (percent) of the current weights with `head_task`'s head on `data`'s test set.

        Labels are local to `data`'s task. With eval_logits="all" (authors) the argmax runs over all
        logits of the shared head and must land on the task's own slice."""
        cfg, net = self.cfg, self.net
        net.eval()
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        offset = head_task * self.split.classes_per_task
        for x, y in eval_batches(
            data.test_x, data.test_y, cfg.eval_batch_size or cfg.batch_size, mean=self.data.mean,
            std=self.data.std, channels_last=cfg.channels_last,
        ):
            with self.autocast:
                if cfg.eval_logits == "all":
                    pred = net.all_logits(x, head_task).argmax(1) - offset
                else:
                    pred = net(x, head_task).argmax(1)
            correct += (pred == y).sum()
        net.train()
        return 100.0 * correct.item() / len(data.test_y)

    def evaluate_task(self, t: int) -> float:
        """Task t with its own subnetwork (mask) and head."""
        with self.sparsity.use_task(t):
            return self.accuracy(t, self.tasks[t])

    def fingerprint(self, t: int) -> str:
        """A hash of everything finished task t computes with: its frozen weights and, with bn="task", its
        BatchNorm. Equal fingerprints, deterministic evaluation: the same accuracy, so row t of the
        accuracy matrix reuses the earlier rows' entries instead of evaluating every task again."""
        digest = hashlib.sha256()
        for name, values in self.sparsity.values.items():
            digest.update(values[self.sparsity.masks[t][name]].detach().cpu().numpy().tobytes())
        for norm in self.net.task_norms:
            for tensor in norm.norms[t].state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ training
    def train_task(self, t: int, steps_bar: Iterator | None = None) -> tuple[float, float]:
        cfg, data, net, sparsity = self.cfg, self.tasks[t], self.net, self.sparsity
        optimizer = self.optimizer(t)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, lr_milestones(cfg.epochs, cfg.lr_milestones), gamma=0.1)
        net.train()
        step, start = 0, time.perf_counter()
        epoch_loss = torch.zeros((), device=self.device)
        # Training accuracy per epoch (on device: one sync per epoch). checkpoint="best_train" (authors)
        # keeps the weights and mask of the epoch where it was best.
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        best, snapshot, accuracies = -1.0, None, []
        for epoch in range(cfg.epochs):
            epoch_loss.zero_()
            correct.zero_()
            batches = seen = 0
            for x, y in train_batches(
                data.train_x, data.train_y, cfg.batch_size, mean=self.data.mean, std=self.data.std,
                generator=self.generator, channels_last=cfg.channels_last,
            ):
                step += 1
                loss, pred, stats = self.train_step(x, y, t, optimizer, step)
                if steps_bar is not None:
                    steps_bar.update(1)
                if stats is not None:
                    self.updates.append({"task": t, **stats})
                epoch_loss += loss
                batches += 1
                correct += (pred == y).sum()
                seen += len(y)
            scheduler.step()
            accuracies.append(100.0 * correct.item() / seen)
            if cfg.checkpoint == "best_train" and accuracies[-1] > best:  # strictly better, as the authors'
                best = accuracies[-1]
                snapshot = (copy.deepcopy(net.state_dict()), sparsity.state_dict()) if epoch < cfg.epochs - 1 else None
        if snapshot is not None:  # an earlier epoch was best: back to its weights and mask
            net.load_state_dict(snapshot[0])
            sparsity.load_state_dict(snapshot[1])
        self.recalibrate_norms(t)
        self.train_accuracy.append(accuracies)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, (epoch_loss / max(batches, 1)).item()

    def optimizer(self, t: int) -> torch.optim.Optimizer:
        """Task t's fresh Adam over what the task trains."""
        # fused: one kernel for all of Adam's updates (4.5x faster than the per-tensor loop torch picks on
        # CPU for a width-16 ResNet-18); the arithmetic is Adam's, rounded in another order
        return torch.optim.Adam(self.net.task_parameters(t), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                                fused=self.device.type in ("cpu", "cuda"))

    def train_step(self, x: torch.Tensor, y: torch.Tensor, t: int, optimizer: torch.optim.Optimizer, step: int,
                   *, update: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any] | None]:
        """One training step of task t on a batch: forward, loss, backward, `sparsity.step` (frozen stay
        frozen; the topology update on schedule unless update=False). Returns the detached loss, the
        predictions (local labels; over all logits with eval_logits="all", as the authors count training
        accuracy) and the update's statistics or None. `step` is 1-based within the task."""
        with self.autocast:
            if self.cfg.eval_logits == "all":  # the task's logits are a slice of all of them (bitwise as net(x, t))
                offset = t * self.split.classes_per_task
                logits_all = self.net.all_logits(x, t)
                logits = logits_all[:, offset : offset + self.split.classes_per_task]
            else:
                logits = self.net(x, t)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        stats = self.sparsity.step(optimizer, step, update=update)
        pred = logits_all.detach().argmax(1) - offset if self.cfg.eval_logits == "all" else logits.detach().argmax(1)
        return loss.detach(), pred, stats

    @torch.no_grad()
    def recalibrate_norms(self, t: int) -> None:
        """bn="task": re-estimate task t's BatchNorm statistics with its final weights.

        During training the running statistics are a momentum average over batches that saw older
        weights; a short task (few steps) leaves them far from what the final weights produce. One
        pass over the task's training images with a cumulative average sets them to the mean of the
        batch statistics under the final weights. The images are cropped and flipped as in training:
        the layers after each BN learned with those statistics (unaugmented ones cost 10 points of
        accuracy in a 10-epoch synth100 check). No-op for other BNs."""
        norms = [norm.norms[t] for norm in self.net.task_norms]
        if not norms:
            return
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the pass
        data = self.tasks[t]
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + t)  # leaves the training stream alone
        for x, _ in train_batches(data.train_x, data.train_y, self.cfg.batch_size, mean=self.data.mean,
                                  std=self.data.std, generator=generator, channels_last=self.cfg.channels_last):
            with self.autocast:
                self.net(x, t)  # train mode: BN t normalizes with, and accumulates, batch statistics
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum

    def steps_per_task(self, t: int) -> int:
        """Optimizer steps of task t: the batches train_batches yields per epoch, times the epochs."""
        return self.cfg.epochs * len(batch_bounds(len(self.tasks[t].train_y), self.cfg.batch_size))

    def updates_per_task(self, t: int = 0) -> int:
        """How many topology updates task t gets (the schedule's update steps within its steps)."""
        cfg, steps = self.cfg, self.steps_per_task(t)
        return sum(is_update_step(s, cfg.update_frequency, steps, cfg.t_end, cfg.update_at_end)
                   for s in range(cfg.update_frequency, steps + 1, cfg.update_frequency))

    def run_warnings(self) -> list[str]:
        """What the user of this run should know before it starts: degenerate settings, said in one line each."""
        cfg, out = self.cfg, []
        steps = min(self.steps_per_task(t) for t in range(cfg.num_tasks))
        if min(self.updates_per_task(t) for t in range(cfg.num_tasks)) == 0:
            out.append(f"update_frequency={cfg.update_frequency} but a task has only {steps} optimizer steps "
                       f"(t_end={cfg.t_end:g}): no topology update happens, this is static sparse training; "
                       "lower update_frequency or raise epochs")
        if cfg.density >= 1:
            out.append("density=1: task 0's mask is the whole backbone, so every later task can only reuse "
                       "frozen weights and trains nothing but its share of the head; use density < 1")
        return out

    def describe(self) -> str:
        """One line: the network, the tasks and the schedule this run is about to train."""
        cfg, sp = self.cfg, self.sparsity
        params = sum(p.numel() for p in self.net.parameters())
        mask = sum(sp.counts.values())
        steps = self.steps_per_task(0)
        batches = steps // cfg.epochs
        return (f"about to run {cfg.arch} width {cfg.width} ({cfg.variant} variant): {params / 1e6:.2f}M parameters, "
                f"{mask / 1e6:.3f}M in each task's mask ({cfg.sparse_init} density {cfg.density:g}); "
                f"{cfg.num_tasks} tasks of {self.split.classes_per_task} classes of {cfg.dataset} "
                f"({self.data.image_size} px, {len(self.tasks[0].train_y)} training images per task); "
                f"{steps} steps per task ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} of {batches} batches "
                f"of {cfg.batch_size}), {self.updates_per_task(0)} topology updates per task "
                f"(every {cfg.update_frequency} steps, growth {cfg.growth})")

    def run(self) -> RunResult:
        cfg, T = self.cfg, self.cfg.num_tasks
        self._task = 0  # the task in progress (a disabled tqdm does not count, so the message cannot ask it)
        tasks_bar = tqdm(range(T), desc="tasks", disable=not cfg.progress, leave=True)
        # every training step of the run: moves within a task, and its rate gives the time left
        steps_bar = tqdm(total=sum(self.steps_per_task(t) for t in range(T)), desc="training steps, all tasks",
                         unit="step", disable=not cfg.progress, leave=False)
        try:
            return self._run(T, tasks_bar, steps_bar)
        except KeyboardInterrupt:  # a notebook's interrupt: one line (a sweep ends its kernels otherwise)
            raise TrainingInterrupted(f"interrupted during task {self._task + 1} of {T}: the run was not "
                                      "kept; run the cell again to start over") from None
        finally:
            steps_bar.close()
            tasks_bar.close()

    def _run(self, T: int, tasks_bar, steps_bar) -> RunResult:
        cfg = self.cfg
        log.info("%s", self.describe())
        warnings = self.run_warnings()
        for warning in warnings:
            log.warning("%s", warning)
        A = np.full((T, T), np.nan)
        pre, baseline = np.full(T, np.nan), np.full(T, np.nan)
        task_seconds, losses, growths, trainable_start, trainable_end, fingerprints = [], [], [], [], [], []
        self.updates, self.train_accuracy = [], []  # fresh lists: an earlier RunResult keeps its own
        eval_time = 0.0
        for t in tasks_bar:
            self._task = t
            task_start = time.perf_counter()
            self.sparsity.begin_task(t, self.steps_per_task(t))
            growths.append(self.sparsity.current_growth)
            trainable_start.append(self.sparsity.trainable_share())
            t0 = time.perf_counter()
            if t == 0:  # the random network (task 0's initial mask) on every task
                baseline[:] = [self.accuracy(i, self.tasks[i]) for i in range(T)]
            pre[t] = self.accuracy(t, self.tasks[t])
            eval_time += time.perf_counter() - t0
            seconds, loss = self.train_task(t, steps_bar)
            task_seconds.append(seconds)
            losses.append(loss)
            trainable_end.append(self.sparsity.trainable_share())
            self.sparsity.end_task()
            fingerprints.append(self.fingerprint(t))
            t0 = time.perf_counter()
            if cfg.bn == "standard" or t == 0:  # a BatchNorm shared by all tasks changes theirs: measure again
                A[t, : t + 1] = [self.evaluate_task(i) for i in range(t + 1)]
            else:  # what task i computes cannot have changed (checked below by fingerprint): same batches, same result
                A[t, :t], A[t, t] = A[t - 1, :t], self.evaluate_task(t)
            eval_time += time.perf_counter() - t0
            tasks_bar.set_postfix(acc=f"{np.mean(A[t, : t + 1]):.1f}")
            log.info("task %d/%d done in %.1f s (training %.1f s): its accuracy %.2f%%, mean over tasks 1-%d %.2f%%, "
                     "last-epoch loss %.3f", t + 1, T, time.perf_counter() - task_start, seconds, A[t, t], t + 1,
                     np.mean(A[t, : t + 1]), loss)
        changed = [t for t in range(T) if self.fingerprint(t) != fingerprints[t]]
        if changed:  # parameter isolation broken: never expected, so never silent
            raise RuntimeError(f"the subnetworks of tasks {changed} changed after they were trained")
        t0 = time.perf_counter()
        Fm = np.full((T, T), np.nan)
        for i in range(T):
            with self.sparsity.use_task(i):
                for j in range(i + 1, T):
                    Fm[i, j] = self.accuracy(i, self.tasks[j])
        eval_time += time.perf_counter() - t0
        return RunResult(
            config=cfg,
            acc_matrix=A,
            fwt_matrix=Fm,
            pre_acc=pre,
            baseline_acc=baseline,
            growth_per_task=growths,
            task_seconds=task_seconds,
            eval_seconds=eval_time,
            final_loss=losses,
            train_accuracy=self.train_accuracy,
            updates=self.updates,
            capacity=capacity_over_tasks(self.sparsity.masks),
            trainable_start=trainable_start,
            trainable_end=trainable_end,
            sparsity=self.sparsity,
            device=str(self.device),
            warnings=warnings,
        )


def train_continual(cfg: Config, dataset: ImageDataset | None = None) -> RunResult:
    """Run one configuration end to end and return its results (nothing is written)."""
    return Trainer(cfg, dataset).run()
