"""Test-wide settings: one thread per test process (pytest runs two processes on this 2-core machine;
two threads each would make every op wait on the other process), inherited by notebook kernels."""

import atexit
import os
import shutil
import tempfile

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("CLDST_OFFLINE", "1")  # tests never download

# torch.compile's caches in a directory of this test process alone (pytest-xdist runs several): a
# process must never read another's half-written inductor entry. Sweep workers make their own below it.
_compile_cache = tempfile.mkdtemp(prefix=f"cldst-test-compile-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _compile_cache
os.environ["TRITON_CACHE_DIR"] = os.path.join(_compile_cache, "triton")
atexit.register(shutil.rmtree, _compile_cache, ignore_errors=True)

import torch  # noqa: E402

torch.set_num_threads(1)
