"""run_grid / train_grid: back-ends agree byte for byte, failures are retried once, cached points are
never recomputed, and bad input gives one-line errors (the SLURM back-end is in test_slurm.py)."""

import os
import queue
from pathlib import Path

import pytest
import torch

from reprobust import dispatch, run
from reprobust.cache import Cache
from reprobust.dispatch import GridFailed, run_grid, train_grid
from reprobust.paths import REPO_ROOT

SMOKE_SPECS = [{"data": {"name": "digits", "n_train": 200, "n_test": 50}, "model": {"name": "mlp"},
                "train": {"epochs": 1, "batch_size": 64}, "seed": s} for s in range(3)]


# Grid functions must be top-level in an importable module (spawn workers import them by name).
def record_square(cfg):
    """x², and a marker file per call so tests can count the calls (also across processes)."""
    folder = Path(cfg["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob(f"call-{cfg['x']}-*")))
    (folder / f"call-{cfg['x']}-{n}-{os.getpid()}").touch()
    if cfg.get("fail") == "always" or (cfg.get("fail") == "once" and n == 0):
        raise RuntimeError(f"planned failure for x={cfg['x']}")
    return cfg["x"] ** 2


def calls(folder, x):
    return len(list(Path(folder).glob(f"call-{x}-*")))


def cache_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and "_jobs" not in p.parts}


def test_processes_gives_byte_identical_models_to_inline_and_never_recomputes(tmp_path, capsys):
    inline, procs = Cache(tmp_path / "inline"), Cache(tmp_path / "procs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU numerics depend on the thread count: compare at equal counts
    try:
        a = train_grid(SMOKE_SPECS, executor="inline", cache=inline)
    finally:
        torch.set_num_threads(threads)
    b = train_grid(SMOKE_SPECS, executor="processes", cache=procs, jobs=2, threads=1)
    files = cache_bytes(inline.root)
    assert len([f for f in files if f.endswith(".pt")]) == len(SMOKE_SPECS)
    assert files == cache_bytes(procs.root)  # same keys, byte-identical model files and metadata
    for m_a, m_b in zip(a, b):
        for (k, v), (k2, v2) in zip(m_a.state_dict().items(), m_b.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
    assert "3 points: 0 cached" in capsys.readouterr().out
    # all points cached: nothing is dispatched (no pool, no file rewritten)
    stamps = {p: p.stat().st_mtime_ns for p in Path(procs.root).rglob("*.pt")}
    train_grid(SMOKE_SPECS, executor="processes", cache=procs, jobs=2)
    assert "3 points: 3 cached, 0 pending, 0 running, 0 done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in Path(procs.root).rglob("*.pt")} == stamps


def test_only_uncached_points_are_computed(tmp_path):
    cfgs = [{"dir": str(tmp_path / "calls"), "x": x} for x in (1, 2, 3)]
    done = {2}
    out = run_grid(record_square, cfgs, cache_dir=tmp_path, is_done=lambda c: c["x"] in done)
    assert out == [1, 4, 9]
    # the cached point is loaded (fn evaluated here once, as a cache read), never dispatched
    assert [calls(tmp_path / "calls", x) for x in (1, 2, 3)] == [1, 1, 1]
    assert run_grid(record_square, cfgs, cache_dir=tmp_path, is_done=lambda c: True, collect=False) is None
    assert [calls(tmp_path / "calls", x) for x in (1, 2, 3)] == [1, 1, 1]


def test_identical_configs_are_computed_once(tmp_path):
    cfg = {"dir": str(tmp_path / "calls"), "x": 4}
    assert run_grid(record_square, [cfg, dict(cfg), cfg], cache_dir=tmp_path) == [16, 16, 16]
    assert calls(tmp_path / "calls", 4) == 1


def test_inline_failed_point_is_retried_once_and_reported_with_its_log(tmp_path, capsys):
    cfgs = [{"dir": str(tmp_path / "calls"), "x": 1}, {"dir": str(tmp_path / "calls"), "x": 2, "fail": "once"}]
    assert run_grid(record_square, cfgs, cache_dir=tmp_path) == [1, 4]
    assert calls(tmp_path / "calls", 1) == 1 and calls(tmp_path / "calls", 2) == 2
    err = capsys.readouterr().err
    assert "point 1 failed (attempt 1/2, retrying once): RuntimeError: planned failure for x=2" in err
    log = Path(err.split("log: ")[1].split()[0])
    assert log.is_file() and "planned failure for x=2" in log.read_text() and "Traceback" in log.read_text()


def test_point_failing_twice_raises_with_log_path(tmp_path):
    cfgs = [{"dir": str(tmp_path / "calls"), "x": 5, "fail": "always"}]
    with pytest.raises(GridFailed, match=r"1 of 1 grid points failed 2 times; first: point 0: RuntimeError") as e:
        run_grid(record_square, cfgs, cache_dir=tmp_path)
    assert calls(tmp_path / "calls", 5) == 2  # retried exactly once
    log = Path(e.value.failures[0][1])
    assert log.is_file() and log.name.endswith("attempt2.log") and str(log) in str(e.value)
    # retries=0: no second attempt; points are numbered by their position in the grid
    grid = [{"dir": str(tmp_path / "calls"), "x": 8}, dict(cfgs[0], x=6)]
    with pytest.raises(GridFailed, match="1 of 2 grid points failed 1 times; first: point 1: RuntimeError"):
        run_grid(record_square, grid, cache_dir=tmp_path, retries=0, is_done=lambda c: c["x"] == 8)
    assert calls(tmp_path / "calls", 6) == 1 and calls(tmp_path / "calls", 8) == 0


def test_processes_retries_once_in_a_fresh_worker(tmp_path, capsys):
    d = str(tmp_path / "calls")
    cfgs = [{"dir": d, "x": 2, "fail": "once"}, {"dir": d, "x": 3, "fail": "always"}, {"dir": d, "x": 4}]
    with pytest.raises(GridFailed, match="1 of 3 grid points failed 2 times; first: point 1") as e:
        run_grid(record_square, cfgs, executor="processes", jobs=1, cache_dir=tmp_path)
    assert [calls(d, x) for x in (2, 3, 4)] == [2, 2, 1]
    assert set(e.value.failures) == {1} and Path(e.value.failures[1][1]).is_file()
    out = capsys.readouterr()
    assert "attempt 2/2" in out.out and "giving up" in out.err
    # worker processes wrote the markers (not this process)
    assert any(not p.name.endswith(f"-{os.getpid()}") for p in Path(d).iterdir())


@pytest.mark.parametrize("kwargs,msg", [
    ({"executor": "sbatch"}, "unknown executor 'sbatch'; valid choices: inline, processes, slurm"),
    ({"executor": "inline", "retries": -1}, "retries=-1 is out of range"),
    ({"executor": "processes", "jobs": 0}, "jobs=0 is out of range"),
    ({"executor": "slurm", "cluster_config": {"partiton": "gpu"}}, "unknown cluster config key 'partiton'"),
    ({"executor": "slurm", "cluster_config": {"mem_gb": -1}}, "cluster config mem_gb=-1 is out of range"),
    ({"executor": "slurm", "cluster_config": "/nonexistent/cluster.yaml"}, "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, kwargs, msg):
    with pytest.raises(ValueError) as e:
        run_grid(record_square, [{"dir": str(tmp_path), "x": 1}], cache_dir=REPO_ROOT / ".cache", **kwargs)
    assert msg in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_executor_default_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_EXECUTOR, "nowhere")
    with pytest.raises(ValueError, match="unknown executor 'nowhere'"):
        run_grid(record_square, [{"dir": str(tmp_path), "x": 1}])
    monkeypatch.setenv(dispatch.ENV_EXECUTOR, "inline")
    assert run_grid(record_square, [{"dir": str(tmp_path), "x": 3}], cache_dir=tmp_path) == [9]


def test_processes_refuses_functions_workers_cannot_import(tmp_path):
    with pytest.raises(ValueError, match="cannot be pickled"):
        run_grid(lambda c: c, [1], executor="processes", cache_dir=tmp_path)


def test_slurm_refuses_a_cache_under_tmp_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv(dispatch.ENV_ALLOW_LOCAL_PATHS, raising=False)
    with pytest.raises(ValueError) as e:
        run_grid(record_square, [{"dir": str(tmp_path), "x": 1}], executor="slurm", cache_dir="/tmp/some-cache")
    assert "cache dir '/tmp/some-cache' is on a machine-local filesystem (/tmp)" in str(e.value)
    assert "allow_local_paths" in str(e.value) and len(str(e.value).splitlines()) == 1
    shared = Path("/srv/lab/reprobust-cache")  # only checked, never created (the clone itself may live in /tmp)
    with pytest.raises(ValueError, match=r"job folder '/dev/shm/jobs' is on a machine-local filesystem \(/dev/shm\)"):
        dispatch.check_shared_paths(shared, "/dev/shm/jobs")
    dispatch.check_shared_paths(shared, shared / "_jobs")  # shared: fine
    assert dispatch.local_paths_allowed({"allow_local_paths": True})
    assert not dispatch.local_paths_allowed({"allow_local_paths": False})
    monkeypatch.setenv(dispatch.ENV_ALLOW_LOCAL_PATHS, "1")
    assert dispatch.local_paths_allowed({}) and not dispatch.local_paths_allowed({}, allow_local_paths=False)


def test_example_cluster_config_is_valid():
    cfg = dispatch.load_cluster_config(REPO_ROOT / "cluster.example.yaml")
    assert set(cfg) <= set(dispatch.CLUSTER_KEYS)
    assert cfg["partition"] == "gpu" and cfg["gpus_per_node"] == 1 and cfg["allow_local_paths"] is False
    assert dispatch.load_cluster_config(None)["timeout_min"] == dispatch.DEFAULT_CLUSTER["timeout_min"]


def test_gpu_pinning_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert dispatch.visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert dispatch.visible_gpus() == []
    q = queue.Queue()
    q.put("5")
    threads = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    try:
        dispatch._worker_init(q, 1)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_runner_exports_the_executor_for_the_notebooks(monkeypatch, tmp_path):
    monkeypatch.setenv(dispatch.ENV_EXECUTOR, "inline")
    monkeypatch.setenv(dispatch.ENV_CLUSTER_CONFIG, "")
    example = REPO_ROOT / "cluster.example.yaml"
    assert run.main(["--executor", "processes", "--cluster-config", str(example), "--list",
                     "--notebooks-dir", str(tmp_path)]) == 0
    assert os.environ[dispatch.ENV_EXECUTOR] == "processes"
    assert os.environ[dispatch.ENV_CLUSTER_CONFIG] == str(example)


@pytest.mark.parametrize("args,msg", [
    (["--executor", "cloud"], "unknown executor 'cloud'; valid choices: inline, processes, slurm"),
    (["--executor", "slurm", "--cache-dir", "/tmp/rc"], "cache dir '/tmp/rc' is on a machine-local filesystem"),
    (["--cluster-config", "/nonexistent.yaml"], "cluster config '/nonexistent.yaml' does not exist"),
])
def test_runner_rejects_bad_dispatch_options_in_one_line(capsys, args, msg, monkeypatch):
    monkeypatch.delenv(dispatch.ENV_ALLOW_LOCAL_PATHS, raising=False)
    monkeypatch.delenv(dispatch.ENV_CLUSTER_CONFIG, raising=False)
    assert run.main(args + ["--list"]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_gpu_slots_interleave_workers_per_gpu():
    assert dispatch.gpu_slots(["0", "1"], 2) == ["0", "1", "0", "1"]
    assert dispatch.gpu_slots(["3"], 1) == ["3"]
    assert dispatch.gpu_slots([], 3) == []
    with pytest.raises(ValueError, match="workers_per_gpu=0"):
        dispatch.gpu_slots(["0"], 0)


def report_gpu(cfg):
    """(pid, CUDA_VISIBLE_DEVICES) of the worker that ran this point, after a short wait so that every
    worker takes a point."""
    import time

    time.sleep(cfg["wait"])
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_processes_put_workers_per_gpu_workers_on_each_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # ids only: the workers never touch CUDA
    out = run_grid(report_gpu, [{"x": i, "wait": 4.0} for i in range(4)], executor="processes",
                   cache_dir=tmp_path, workers_per_gpu=2, threads=1, progress=False)
    by_pid = dict(out)
    assert len(by_pid) == len(set(out))  # a worker keeps its GPU
    per_gpu = {g: sum(v == g for v in by_pid.values()) for g in ("0", "1")}
    # More than one worker per GPU (up to four workers; one may start late and find no work), never three.
    assert len(by_pid) >= 3 and set(by_pid.values()) <= {"0", "1"} and max(per_gpu.values()) == 2
    monkeypatch.setenv("REPROBUST_WORKERS_PER_GPU", "1")
    out = run_grid(report_gpu, [{"x": i, "wait": 0.0} for i in range(4)], executor="processes",
                   cache_dir=tmp_path, threads=1, progress=False)
    assert sorted(set(g for _, g in out)) == ["0", "1"] and len(set(p for p, _ in out)) <= 2
