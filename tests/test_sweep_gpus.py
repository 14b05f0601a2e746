"""Several runs share one GPU: sweep workers are spread over the listed GPUs round-robin."""

import multiprocessing as mp
import os

import pytest

from cldst.errors import ConfigError
from cldst.sweep import _init_worker, run_sweep


def test_workers_are_spread_over_gpus_round_robin(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # monkeypatch restores both after the test
    slot = mp.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(5):  # five workers starting, as a pool of five would start them
        _init_worker(3, ("0", "2"), slot)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "2", "0", "2", "0"]
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert slot.value == 5


def test_no_gpus_leaves_cuda_visible_devices_alone(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _init_worker(2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


@pytest.mark.parametrize("gpus, message", [(["0", "a"], "gpus='0,a' must be comma-separated GPU indices"),
                                           (["-1"], "gpus='-1' must be comma-separated GPU indices")])
def test_bad_gpu_list_is_refused(gpus, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep([], gpus=gpus)
