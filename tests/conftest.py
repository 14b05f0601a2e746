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

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.hookimpl(trylast=True)  # after pytest-xdist's worker has added each test's group to its id
def pytest_collection_modifyitems(config, items):
    """Tests of one xdist_group share something that cannot be shared at once (the Slurm test cluster,
    the notebook kernels): with --dist loadgroup they must run in one worker, one after another. Some
    pytest releases break pytest-xdist's grouping silently (9.2 with xdist 3.8): refuse to run then."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    ungrouped = [item.nodeid for item in items if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(f"pytest-xdist's --dist loadgroup does not group tests under this pytest "
                                f"(e.g. {ungrouped[0]}); install the pinned versions: pip install -c constraints.txt "
                                "pytest pytest-xdist")
