"""The SLURM back-end against a real single-node SLURM on localhost (munged + slurmctld + slurmd).

Opt-in (it installs Debian's slurm-wlm and munge when missing and starts daemons as root): set
``REPROBUST_TEST_SLURM=1`` (``.ci/run`` does) or select the marker with ``pytest -m slurm``.
Whatever this machine cannot do is a skip that states the exact reason (see tests/local_slurm.py).
"""

import os
from pathlib import Path

import pytest
import torch

from reprobust.cache import Cache
from reprobust.dispatch import run_grid, train_grid

pytestmark = pytest.mark.slurm

TESTS_DIR = Path(__file__).resolve().parent
SPECS = [{"data": {"name": "digits", "n_train": 200, "n_test": 50}, "model": {"name": "mlp"},
          "train": {"epochs": 1, "batch_size": 64}, "seed": s} for s in range(4)]
# One CPU per task (two tasks at once on the 2-CPU node); poll the queue every second.
CLUSTER = {"allow_local_paths": True, "cpus_per_task": 1, "mem_gb": 0.5, "timeout_min": 10,
           "array_parallelism": 2, "poll_interval_s": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def slurm(request, tmp_path_factory):
    markexpr = request.config.getoption("markexpr", default="") or ""
    if os.environ.get("REPROBUST_TEST_SLURM") != "1" and "slurm" not in markexpr:
        pytest.skip("opt-in: set REPROBUST_TEST_SLURM=1 or run `pytest -m slurm` (installs slurm-wlm/munge "
                    "and starts munged, slurmctld and slurmd as root)")
    from local_slurm import LocalSlurm, SlurmUnavailable

    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as e:
        pytest.skip(f"cannot run a local SLURM here: {e}")
    yield cluster
    cluster.stop()
    assert all(p.poll() is not None for p in cluster.procs.values())


def _cache_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and "_jobs" not in p.parts}


def test_smoke_grid_through_submitit_job_array_matches_inline(slurm, tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(CLUSTER["cpus_per_task"])  # CPU numerics depend on the thread count
    try:
        reference = train_grid(SPECS, executor="inline", cache=Cache(tmp_path / "inline"))
    finally:
        torch.set_num_threads(threads)
    shared = Cache(tmp_path / "shared")
    models = train_grid(SPECS, executor="slurm", cache=shared, cluster_config=CLUSTER)
    out = capsys.readouterr().out
    assert "[train_grid/slurm] 4 points: 0 cached" in out and "submitted job" in out
    assert "0 pending, 0 running, 4 done, 0 failed" in out
    # the cached model files are byte-identical to the ones trained in this process
    files = _cache_files(shared.root)
    assert len([f for f in files if f.endswith(".pt")]) == len(SPECS)
    assert files == _cache_files(tmp_path / "inline")
    for a, b in zip(reference, models):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # one job array of 4 tasks, at most 2 running at once, each task with its own log
    scripts = list((shared.root / "_jobs").rglob("*_submission.sh"))
    assert len(scripts) == 1 and "#SBATCH --array=0-3%2" in scripts[0].read_text()
    assert len(list((shared.root / "_jobs").rglob("*_0_log.out"))) == len(SPECS)

    # everything cached: nothing is submitted again
    train_grid(SPECS, executor="slurm", cache=shared, cluster_config=CLUSTER)
    assert "4 points: 4 cached, 0 pending, 0 running, 0 done, 0 failed" in capsys.readouterr().out
    assert len(list((shared.root / "_jobs").rglob("*_submission.sh"))) == 1


def test_failed_task_is_reported_with_its_log_and_retried_once(slurm, tmp_path, capsys, monkeypatch):
    # the jobs import the grid function from tests/test_dispatch.py (sbatch exports this environment)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    from test_dispatch import calls, record_square

    d = str(tmp_path / "calls")
    cfgs = [{"dir": d, "x": 2, "fail": "once"}, {"dir": d, "x": 3}]
    assert run_grid(record_square, cfgs, executor="slurm", cache_dir=tmp_path / "cache",
                    cluster_config=CLUSTER, name="flaky") == [4, 9]
    assert calls(d, 2) == 2 and calls(d, 3) == 1
    # the calls ran in SLURM jobs, not in this process
    assert not any(p.name.endswith(f"-{os.getpid()}") for p in Path(d).iterdir())
    captured = capsys.readouterr()
    assert "point 0 failed (attempt 1/2, retrying once): RuntimeError: planned failure for x=2" in captured.err
    log = Path(captured.err.split("log: ")[1].split()[0])
    assert log.is_file() and log.suffix == ".err" and "planned failure for x=2" in log.read_text()
    assert "attempt 2/2" in captured.out
