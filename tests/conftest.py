"""Test-wide settings: one thread per test process (pytest runs two processes on this 2-core machine;
two threads each would make every op wait on the other process), inherited by notebook kernels."""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("CLDST_OFFLINE", "1")  # tests never download

import torch  # noqa: E402

torch.set_num_threads(1)
