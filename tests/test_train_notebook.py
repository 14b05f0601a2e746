"""notebooks/train.ipynb as a learner meets it: its progress moves within a task, and the kernel's
interrupt (JupyterLab's stop button sends SIGINT) ends a run with one line, not a traceback."""

import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow

RUN = """
from cldst.config import Config
from cldst.train import train_continual
cfg = Config(num_tasks=2, image_size=16, width=4, train_per_class=200, test_per_class=2, epochs=50, batch_size=16,
             update_frequency=10, progress=False)
print("training", flush=True)
train_continual(cfg)
"""


def test_an_interrupted_run_ends_with_one_line():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute(RUN)
        deadline = time.monotonic() + 120
        error, started = None, False
        while time.monotonic() < deadline and error is None:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and "training" in content.get("text", "") and not started:
                started = True
                time.sleep(3)  # inside the first task's epochs (about a minute of them)
                km.interrupt_kernel()
            elif kind == "error":
                error = content
        assert started and error is not None, "no interrupt error within 2 minutes"
        assert error["ename"] == "TrainingInterrupted"
        assert error["traceback"] == ["TrainingInterrupted: interrupted during task 1 of 2: the run was not kept; "
                                      "run the cell again to start over"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


def test_the_progress_bar_moves_with_every_training_step():
    from cldst.config import Config
    from cldst.train import Trainer

    cfg = Config(num_tasks=2, image_size=16, width=4, train_per_class=5, test_per_class=2, epochs=2, batch_size=16,
                 update_frequency=2, progress=False)
    trainer = Trainer(cfg)
    bar = Bar()
    trainer.sparsity.begin_task(0, trainer.steps_per_task(0))
    trainer.train_task(0, bar)
    # 50 classes x 5 images = 250 = 15 * 16 + 10: 16 batches an epoch, 2 epochs
    assert bar.n == trainer.steps_per_task(0) == 32
