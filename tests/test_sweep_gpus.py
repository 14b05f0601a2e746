"""Several runs share one GPU: sweep workers are spread over the listed GPUs round-robin. Each worker is
set up in a spawned process, as the sweep's pool sets it up, never inside pytest's own process."""

import multiprocessing as mp
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from cldst.errors import ConfigError
from cldst.executors.local import _init_worker

NAMES = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_CACHE_DIR")


def _probe(threads, gpus, slot, out):
    """A spawned worker: set up as the sweep's pool does, then report what its runs would see."""
    _init_worker(threads, gpus, slot)
    env = {n: os.environ.get(n) for n in NAMES}
    cache = env["TORCHINDUCTOR_CACHE_DIR"]
    out.put((env, os.path.isdir(cache), signal.getsignal(signal.SIGINT) not in (signal.SIG_DFL, signal.SIG_IGN),
             signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL))


def spawn_workers(n, threads, gpus, env=None):
    ctx = mp.get_context("spawn")
    slot, out = ctx.Value("i", 0), ctx.SimpleQueue()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # inherited by the spawned children only; restored at once
    try:
        procs = [ctx.Process(target=_probe, args=(threads, gpus, slot, out)) for _ in range(n)]
        for p in procs:
            p.start()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return [out.get() for _ in range(n)], slot.value


def test_workers_are_spread_over_gpus_round_robin():
    before = {n: os.environ.get(n) for n in NAMES}
    seen, started = spawn_workers(3, 3, ("0", "2"))
    assert Counter(env["CUDA_VISIBLE_DEVICES"] for env, *_ in seen) == {"0": 2, "2": 1}
    assert started == 3
    for env, cache_existed, sigint_caught, sigterm_caught in seen:
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
        assert cache_existed and sigint_caught and sigterm_caught
        assert Path(env["TORCHINDUCTOR_CACHE_DIR"]).name.startswith("cldst-compile-")
        assert not Path(env["TORCHINDUCTOR_CACHE_DIR"]).exists(), "a worker that ends removes its compile cache"
    assert {n: os.environ.get(n) for n in NAMES} == before, "pytest's own process is left as it was"


def test_no_gpus_leaves_cuda_visible_devices_alone():
    seen, started = spawn_workers(1, 2, (), env={"CUDA_VISIBLE_DEVICES": "7"})
    assert seen[0][0]["CUDA_VISIBLE_DEVICES"] == "7" and seen[0][0]["OMP_NUM_THREADS"] == "2"
    assert started == 0


@pytest.mark.parametrize("gpus, message", [(["0", "a"], "gpus='0,a' must be comma-separated GPU indices"),
                                           (["-1"], "gpus='-1' must be comma-separated GPU indices")])
def test_bad_gpu_list_is_refused(gpus, message):
    from cldst.sweep import run_sweep  # here: the spawned workers above need not import the sweep

    with pytest.raises(ConfigError, match=message):
        run_sweep([], gpus=gpus)
