"""Dispatch an experiment grid (many independent, cached grid points) to where it can run fastest.

Every expensive grid point in this project is a pure function of its configuration that writes its
result into the shared :class:`~reprobust.cache.Cache` (e.g. :func:`reprobust.train.trained_model`).
:func:`run_grid` computes a list of such points with one of three back-ends:

``inline`` (default)
    in this process, one point after the other.
``processes``
    a local pool of worker processes (``spawn`` start method, so no CUDA or thread state is inherited);
    when GPUs are visible each worker sees exactly one of them through ``CUDA_VISIBLE_DEVICES``.
``slurm``
    a SLURM job array submitted through `submitit <https://github.com/facebookincubator/submitit>`_
    (``AutoExecutor`` + ``map_array``, with ``slurm_array_parallelism`` as the cap on simultaneously
    running tasks). Partition, GPUs, time and memory come from a small YAML file (see
    ``cluster.example.yaml``). The cache and the job folder must live on a filesystem the compute
    nodes share, which is checked (a cache under ``/tmp`` is refused unless ``allow_local_paths``).

Whatever the back-end, results land in the shared cache, points already in the cache are never
recomputed (``is_done``), a failed point is reported with its log file and retried once, and a
progress line counts pending / running / done / failed points.

The default back-end comes from ``$REPROBUST_EXECUTOR`` and the cluster file from
``$REPROBUST_CLUSTER_CONFIG``; the runner (``python -m reprobust.run --executor slurm
--cluster-config cluster.yaml``) sets both, so notebooks that call :func:`train_grid` or
:func:`run_grid` need no change to run their grids on a cluster.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .cache import Cache, canonical_json, config_key
from .paths import default_cache_dir
from .validation import check_choice, check_range

EXECUTORS = ("inline", "processes", "slurm")
ENV_EXECUTOR = "REPROBUST_EXECUTOR"
ENV_CLUSTER_CONFIG = "REPROBUST_CLUSTER_CONFIG"
ENV_ALLOW_LOCAL_PATHS = "REPROBUST_ALLOW_LOCAL_PATHS"

#: Keys of the cluster YAML file and what they mean (values ``None`` = leave to SLURM's defaults).
CLUSTER_KEYS = {
    "partition": "SLURM partition (sbatch --partition)",
    "gpus_per_node": "GPUs per grid point (sbatch --gpus-per-node)",
    "cpus_per_task": "CPU cores per grid point",
    "mem_gb": "memory per grid point in GB",
    "timeout_min": "time limit per grid point in minutes",
    "array_parallelism": "at most this many array tasks run at once",
    "account": "sbatch --account",
    "qos": "sbatch --qos",
    "constraint": "sbatch --constraint",
    "setup": "shell lines run before each job (e.g. module load, activate the venv)",
    "additional_parameters": "other sbatch options as a mapping, e.g. {exclude: node[1-3]}",
    "job_folder": "submitit folder (scripts, pickles, logs); default <cache>/_jobs; must be shared",
    "allow_local_paths": "accept a cache/job folder under /tmp (single-node test clusters only)",
    "poll_interval_s": "seconds between queue polls",
    "device": "device of the grid points on the compute nodes (auto | cpu | cuda)",
}
DEFAULT_CLUSTER = {"timeout_min": 60, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 64,
                   "poll_interval_s": 5.0, "device": "auto", "allow_local_paths": False}
#: Folders that are local to a machine (never shared with compute nodes).
LOCAL_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")


class GridFailed(RuntimeError):
    """Some grid points failed twice; ``failures`` maps the point index to ``(error line, log path)``."""

    def __init__(self, message, failures):
        super().__init__(message)
        self.failures = failures


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
def load_cluster_config(source=None) -> dict:
    """Read and validate the cluster settings (YAML file, mapping or ``None``), defaults filled in.

    Parameters
    ----------
    source : path, dict or None
        ``None`` reads ``$REPROBUST_CLUSTER_CONFIG`` if set, else only the defaults are used.

    Returns
    -------
    config : dict with every key of :data:`CLUSTER_KEYS` that is set, plus the defaults

    Example
    -------
    >>> load_cluster_config({"partition": "gpu", "gpus_per_node": 1})["timeout_min"]
    60
    """
    if source is None:
        source = os.environ.get(ENV_CLUSTER_CONFIG) or None
    raw = {}
    if isinstance(source, (str, os.PathLike)):
        import yaml

        path = Path(source)
        if not path.is_file():
            raise ValueError(f"cluster config {str(path)!r} does not exist; copy cluster.example.yaml and edit it")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"cluster config {str(path)!r} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"cluster config {str(path)!r} must be a mapping of settings, got {type(raw).__name__}")
    elif isinstance(source, dict):
        raw = dict(source)
    elif source is not None:
        raise ValueError(f"cluster_config={source!r} must be a path, a dict or None")
    for key in raw:
        check_choice("cluster config key", key, CLUSTER_KEYS)
    cfg = dict(DEFAULT_CLUSTER)
    cfg.update({k: v for k, v in raw.items() if v is not None})
    for key in ("gpus_per_node", "cpus_per_task", "timeout_min", "array_parallelism"):
        if key in cfg:
            if not isinstance(cfg[key], int) or isinstance(cfg[key], bool):
                raise ValueError(f"cluster config {key}={cfg[key]!r} must be an integer")
            check_range(f"cluster config {key}", cfg[key], low=0 if key == "gpus_per_node" else 1)
    check_range("cluster config mem_gb", cfg["mem_gb"], low=0, low_inclusive=False)
    check_range("cluster config poll_interval_s", cfg["poll_interval_s"], low=0, low_inclusive=False)
    check_choice("cluster config device", cfg["device"], ("auto", "cpu", "cuda"))
    if isinstance(cfg.get("setup"), str):
        cfg["setup"] = [cfg["setup"]]
    return cfg


def resolve_executor(executor=None) -> str:
    """``executor`` or ``$REPROBUST_EXECUTOR`` or ``"inline"``, validated (one-line ``ValueError``)."""
    executor = executor or os.environ.get(ENV_EXECUTOR) or "inline"
    return check_choice("executor", executor, EXECUTORS)


def _local_root(path: Path):
    """The machine-local root (``/tmp``, ``/var/tmp``, ``/dev/shm``, the temp dir) holding ``path``, or None."""
    path = Path(path).resolve()
    for r in (*LOCAL_ROOTS, tempfile.gettempdir()):
        if Path(r).exists() and (path == Path(r).resolve() or path.is_relative_to(Path(r).resolve())):
            return r
    return None


def local_paths_allowed(cluster_config: dict, allow_local_paths=None) -> bool:
    """The explicit flag, else the cluster config's ``allow_local_paths``, else ``$REPROBUST_ALLOW_LOCAL_PATHS=1``."""
    if allow_local_paths is not None:
        return bool(allow_local_paths)
    return bool(cluster_config.get("allow_local_paths")) or os.environ.get(ENV_ALLOW_LOCAL_PATHS) == "1"


def check_shared_paths(cache_dir=None, job_folder=None) -> None:
    """Refuse a cache or job folder on a machine-local filesystem (``/tmp``): nodes cannot see it.

    Parameters
    ----------
    cache_dir : path, optional (default: the default cache folder)
    job_folder : path, optional, the submitit folder

    Raises
    ------
    ValueError : one line naming the folder and how to fix it

    Example
    -------
    >>> check_shared_paths("/tmp/cache")
    Traceback (most recent call last):
    ValueError: cache dir '/tmp/cache' is on a machine-local filesystem (/tmp), ...
    """
    folders = [("cache dir", Path(cache_dir) if cache_dir is not None else default_cache_dir())]
    if job_folder is not None:
        folders.append(("job folder", Path(job_folder)))
    for what, folder in folders:
        root = _local_root(folder)
        if root is not None:
            raise ValueError(
                f"{what} {str(folder)!r} is on a machine-local filesystem ({root}), which SLURM compute nodes "
                "do not share; use a folder on a shared filesystem (e.g. --cache-dir under your home or "
                "project space), or set allow_local_paths: true in the cluster config for a single-node cluster")


# ----------------------------------------------------------------------------------------------
# the task that runs on a worker
# ----------------------------------------------------------------------------------------------
@dataclass
class GridTask:
    """Callable wrapper run on the worker: sets the environment, calls ``fn(config)``, logs failures.

    It is a top-level class so that it pickles by reference for ``spawn`` workers and submitit.
    """

    fn: object
    env: dict = field(default_factory=dict)
    log_dir: str | None = None
    threads: int | None = None

    def __call__(self, config, key="point", attempt=1):
        os.environ.update(self.env)
        if self.threads:
            # A SLURM task gets cpus_per_task cores; torch would otherwise use every core of the node.
            import torch

            torch.set_num_threads(self.threads)
        try:
            return self.fn(config)
        except BaseException:
            if self.log_dir is not None:
                path = Path(self.log_dir) / f"{key}-attempt{attempt}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"config: {canonical_json(config)}\n\n{traceback.format_exc()}")
            raise


def _worker_init(gpu_queue, threads):
    """Process-pool initializer: pin one GPU (if any) and the thread count before torch starts CUDA."""
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def visible_gpus() -> list:
    """GPU ids a worker may be pinned to (respects an existing ``CUDA_VISIBLE_DEVICES``)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 — no usable CUDA means no GPUs to hand out
        return []


# ----------------------------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------------------------
class _Progress:
    """One line per change of the counts (and at least every ``every`` seconds while waiting)."""

    def __init__(self, label, total, cached, enabled, every=60.0):
        self.label, self.total, self.cached, self.enabled, self.every = label, total, cached, enabled, every
        self.last, self.t_last, self.t0 = None, 0.0, time.monotonic()

    def __call__(self, pending, running, done, failed, note="", force=False):
        counts = (pending, running, done, failed)
        now = time.monotonic()
        if not self.enabled or (counts == self.last and now - self.t_last < self.every and not force):
            return
        self.last, self.t_last = counts, now
        print(f"[{self.label}] {self.total} points: {self.cached} cached, {pending} pending, {running} running, "
              f"{done} done, {failed} failed ({now - self.t0:.0f} s){' ' + note if note else ''}", flush=True)


# ----------------------------------------------------------------------------------------------
# back-ends: each takes {index: config} and returns ({index: result}, {index: (error, log path)})
# ----------------------------------------------------------------------------------------------
def _run_inline(task, points, keys, attempt, progress):
    results, failures = {}, {}
    for n, (i, cfg) in enumerate(points.items()):
        progress(len(points) - n - 1, 1, len(results), len(failures))
        try:
            results[i] = task(cfg, keys[i], attempt)
        except Exception as e:  # noqa: BLE001 — reported and retried by run_grid
            failures[i] = (_one_line(e), _log_path(task, keys[i], attempt))
    progress(0, 0, len(results), len(failures))
    return results, failures


def gpu_slots(gpus, workers_per_gpu: int = 1) -> list:
    """GPU id of each worker slot: every GPU ``workers_per_gpu`` times, interleaved so that the first
    workers spread over all GPUs (``["0", "1", "0", "1"]`` for two GPUs and two workers each).

    Several small models per GPU (a CIFAR ResNet-20 uses a few per cent of an H100) keep it busy; one
    large model per GPU is the default.
    """
    check_range("workers_per_gpu", workers_per_gpu, low=1)
    return [g for _ in range(int(workers_per_gpu)) for g in gpus]


def default_workers_per_gpu() -> int:
    """``$REPROBUST_WORKERS_PER_GPU`` (default 1)."""
    value = os.environ.get("REPROBUST_WORKERS_PER_GPU", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"REPROBUST_WORKERS_PER_GPU={value!r} is out of range; valid: a positive integer")
    return int(value)


def _run_processes(task, points, keys, attempt, progress, jobs, poll, threads, workers_per_gpu=1):
    gpus = gpu_slots(visible_gpus(), workers_per_gpu)
    if jobs is None:
        jobs = len(gpus) or (os.cpu_count() or 1)
    jobs = max(1, min(jobs, len(points)))
    if gpus:
        jobs = min(jobs, len(gpus))  # workers_per_gpu workers per GPU at most
    if threads is None:
        # Share this process's threads among the workers: oversubscribing the cores makes small
        # models several times slower. CPU float results depend on the thread count, so workers
        # reproduce an inline grid byte for byte only at equal counts (pass threads= for that).
        import torch

        threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")
    gpu_queue = None
    if gpus:
        gpu_queue = ctx.Queue()
        for g in gpus[:jobs]:
            gpu_queue.put(g)
    results, failures = {}, {}
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                  initargs=(gpu_queue, threads))
    try:
        futures = {pool.submit(task, cfg, keys[i], attempt): i for i, cfg in points.items()}
        remaining = set(futures)
        while remaining:
            finished, remaining = cf.wait(remaining, timeout=poll, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # noqa: BLE001 — includes BrokenProcessPool (a worker died)
                    failures[i] = (_one_line(e), _log_path(task, keys[i], attempt))
            running = sum(f.running() for f in remaining)
            progress(len(remaining) - running, running, len(results), len(failures))
    finally:
        # Every result is in: let the idle workers exit in the background (interpreter teardown of a
        # torch process takes seconds) instead of waiting for them here.
        pool.shutdown(wait=False, cancel_futures=True)
    return results, failures


def _squeue_states(job_ids) -> dict:
    """``{"123_4": "RUNNING", ...}`` for the given (array) jobs still known to slurmctld."""
    base = sorted({j.split("_")[0] for j in job_ids})
    if not base:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(base)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _run_slurm(task, points, keys, attempt, progress, cfg, job_folder, name):
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise RuntimeError("executor 'slurm' needs the SLURM client commands (sbatch, srun, squeue) on PATH; "
                           "none found on this machine")
    import submitit
    from submitit.core.utils import pickle_load

    executor = submitit.AutoExecutor(folder=str(Path(job_folder) / "%j"), cluster="slurm")
    params = {"name": name, "timeout_min": cfg["timeout_min"], "mem_gb": cfg["mem_gb"],
              "cpus_per_task": cfg["cpus_per_task"], "gpus_per_node": cfg.get("gpus_per_node"),
              "slurm_partition": cfg.get("partition"), "slurm_array_parallelism": cfg["array_parallelism"],
              "slurm_account": cfg.get("account"), "slurm_qos": cfg.get("qos"),
              "slurm_constraint": cfg.get("constraint"), "slurm_setup": cfg.get("setup"),
              "slurm_additional_parameters": cfg.get("additional_parameters")}
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    order = list(points)
    jobs = executor.map_array(task, [points[i] for i in order], [keys[i] for i in order],
                              [attempt] * len(order))
    by_index = dict(zip(order, jobs))
    progress(len(order), 0, 0, 0, note=f"submitted job {jobs[0].job_id.split('_')[0]}", force=True)
    results, failures = {}, {}
    gone_since = {}  # index -> time first seen neither queued nor finished (the result file may lag)
    poll = cfg["poll_interval_s"]
    try:
        while len(results) + len(failures) < len(order):
            states = _squeue_states([j.job_id for i, j in by_index.items() if i not in results and i not in failures])
            running = pending = 0
            for i, job in by_index.items():
                if i in results or i in failures:
                    continue
                if job.paths.result_pickle.exists():
                    try:
                        outcome, value = pickle_load(job.paths.result_pickle)
                    except (EOFError, pickle.UnpicklingError):
                        pending += 1  # still being written
                        continue
                    if outcome == "success":
                        results[i] = value
                    else:
                        last = str(value).strip().splitlines()[-1] if str(value).strip() else "error"
                        failures[i] = (last, str(job.paths.stderr))
                    continue
                state = states.get(job.job_id)
                if state is None:
                    first = gone_since.setdefault(i, time.monotonic())
                    if time.monotonic() - first > max(30.0, 3 * poll):
                        failures[i] = ("left the queue without a result (killed, timed out or node failure)",
                                       str(job.paths.stderr))
                    else:
                        running += 1
                elif state in ("RUNNING", "COMPLETING"):
                    running += 1
                else:
                    pending += 1
            progress(pending, running, len(results), len(failures))
            if len(results) + len(failures) < len(order):
                time.sleep(poll)
    except BaseException:
        # Interrupted while waiting: do not leave orphan jobs writing into the cache.
        for i, job in by_index.items():
            if i not in results and i not in failures:
                job.cancel(check=False)
        raise
    return results, failures


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _log_path(task, key, attempt) -> str:
    if task.log_dir is None:
        return "(no log)"
    path = Path(task.log_dir) / f"{key}-attempt{attempt}.log"
    return str(path) if path.exists() else "(worker died before writing a log)"


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def run_grid(fn, configs, *, executor=None, cache_dir=None, jobs=None, cluster_config=None, is_done=None,
             collect: bool = True, retries: int = 1, threads=None, allow_local_paths=None, progress=None,
             name: str = "grid", workers_per_gpu: int | None = None):
    """Compute ``fn(config)`` for every configuration of a grid with the chosen back-end.

    Parameters
    ----------
    fn : callable(config) -> result
        A picklable top-level function of one configuration that reads and writes the shared cache
        (for ``processes`` it must live in an importable module, not in a notebook).
    configs : sequence of JSON-serialisable configurations
        Identical configurations are computed once.
    executor : {'inline', 'processes', 'slurm'}, optional
        Default ``$REPROBUST_EXECUTOR`` or ``'inline'``.
    cache_dir : path, optional
        The shared cache root (default: the default cache folder); workers get it as
        ``$REPROBUST_CACHE_DIR``. Failure logs go under ``<cache_dir>/_jobs``.
    jobs : int, optional
        Worker processes for ``processes`` (default: ``workers_per_gpu`` per visible GPU, else one per
        CPU core).
    workers_per_gpu : int, optional
        ``processes`` workers sharing each GPU (each pinned through ``CUDA_VISIBLE_DEVICES``), for grids
        of small models that do not fill a GPU. Default ``$REPROBUST_WORKERS_PER_GPU`` or 1.
    cluster_config : path, dict or None
        SLURM settings (see :data:`CLUSTER_KEYS`; default ``$REPROBUST_CLUSTER_CONFIG``).
    is_done : callable(config) -> bool, optional
        True when a point is already in the cache: such points are never dispatched (with
        ``collect=True`` their result is ``fn(config)`` evaluated here, i.e. a cache load).
    collect : bool, default True
        Return the results; with False only make sure every point is in the cache and return None.
    retries : int, default 1
        Failed points are submitted again this many times before :class:`GridFailed` is raised.
    threads : int, optional
        torch threads per worker. Default: this process's ``torch.get_num_threads()`` divided among
        the ``processes`` workers (at least 1), ``cpus_per_task`` for ``slurm``. CPU float results
        depend on the thread count: a grid is byte-identical to the inline one when the counts match
        (e.g. ``threads=torch.get_num_threads()``, slower when that oversubscribes the cores).
    allow_local_paths : bool, optional
        Accept a cache under ``/tmp`` with ``slurm`` (single-node clusters; see :func:`check_shared_paths`).
    progress : bool, optional
        Print the progress line (default: on for ``processes`` and ``slurm``).
    name : str, the label of the progress line and the SLURM job name

    Returns
    -------
    results : list, ``results[k] = fn(configs[k])`` (or None when ``collect=False``)

    Raises
    ------
    ValueError : bad executor name, bad cluster config, cache under /tmp with ``slurm``, unpicklable ``fn``
    GridFailed : some points failed ``1 + retries`` times (message names each failing point's log file)

    Example
    -------
    >>> from reprobust.dispatch import run_grid
    >>> run_grid(math.sqrt, [1, 4, 9], executor="processes", jobs=2)     # doctest: +SKIP
    [1.0, 2.0, 3.0]
    """
    executor = resolve_executor(executor)
    check_range("retries", retries, low=0)
    if jobs is not None:
        check_range("jobs", jobs, low=1)
    if threads is not None:
        check_range("threads", threads, low=1)
    configs = list(configs)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cfg = load_cluster_config(cluster_config) if executor == "slurm" else dict(DEFAULT_CLUSTER)
    job_folder = Path(cfg.get("job_folder") or cache_root / "_jobs")
    if executor == "slurm" and not local_paths_allowed(cfg, allow_local_paths):
        check_shared_paths(cache_root, job_folder)
    if executor != "inline":
        try:
            pickle.dumps(fn)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"fn={fn!r} cannot be pickled ({type(e).__name__}); pass a top-level function "
                             "defined in a module") from None
        if executor == "processes" and getattr(fn, "__module__", None) == "__main__":
            raise ValueError(f"fn={getattr(fn, '__qualname__', fn)!r} is defined in __main__ (a notebook or "
                             "script), which 'spawn' workers cannot import; move it into a module")
    # One computation per distinct configuration.
    keys = [config_key(c) for c in configs]
    unique = {}
    for k, c in zip(keys, configs):
        unique.setdefault(k, c)
    cached = {k for k, c in unique.items() if is_done is not None and is_done(c)}
    todo = {k: c for k, c in unique.items() if k not in cached}
    show = progress if progress is not None else executor != "inline"
    bar = _Progress(f"{name}/{executor}", len(unique), len(cached), show)
    log_dir = None if executor == "slurm" else str(job_folder / "logs")
    task = GridTask(fn, env={"REPROBUST_CACHE_DIR": str(cache_root.resolve())}, log_dir=log_dir,
                    threads=(threads or cfg["cpus_per_task"]) if executor == "slurm" else None)
    # A point is numbered by its first position in ``configs`` (in messages, logs and job order).
    first = {}
    for pos, k in enumerate(keys):
        first.setdefault(k, pos)
    key_of = {first[k]: k for k in todo}
    remaining = {n: todo[k] for n, k in key_of.items()}
    results, failures = {}, {}
    for attempt in range(1, retries + 2):
        if not remaining:
            break
        note = f"attempt {attempt}/{retries + 1}" if attempt > 1 else ""
        bar(len(remaining), 0, len(results), 0, note=note, force=True)
        if executor == "inline":
            got, failed = _run_inline(task, remaining, key_of, attempt, bar)
        elif executor == "processes":
            got, failed = _run_processes(task, remaining, key_of, attempt, bar, jobs, cfg["poll_interval_s"],
                                         threads, workers_per_gpu or default_workers_per_gpu())
        else:
            got, failed = _run_slurm(task, remaining, key_of, attempt, bar, cfg, job_folder, name)
        results.update(got)
        failures = failed
        for n, (err, log) in sorted(failed.items()):
            again = "giving up" if attempt > retries else ("retrying once" if retries == 1 else "retrying")
            print(f"[{name}/{executor}] point {n} failed (attempt {attempt}/{retries + 1}, {again}): {err}; "
                  f"log: {log}", file=sys.stderr, flush=True)
        remaining = {n: remaining[n] for n in failed}
    bar(0, 0, len(results), len(failures))
    if failures:
        n, (err, log) = sorted(failures.items())[0]
        raise GridFailed(f"{len(failures)} of {len(unique)} grid points failed {retries + 1} times; "
                         f"first: point {n}: {err} (log: {log})", failures)
    if not collect:
        return None
    by_key = {key_of[n]: r for n, r in results.items()}
    for k in cached:
        by_key[k] = fn(unique[k])
    return [by_key[k] for k in keys]


def train_point(point: dict):
    """Train (or find in the cache) one model of :func:`train_grid`; returns the cache key.

    ``point = {"spec": model spec, "cache_dir": str, "device": str, "checkpoints": bool}``.
    """
    from .train import trained_model

    trained_model(point["spec"], cache=Cache(point["cache_dir"]), device=point["device"],
                  checkpoints=point["checkpoints"])
    return config_key(point["spec"])


def train_grid(specs, *, executor=None, cache: Cache | None = None, device=None, checkpoints: bool = False,
               load: bool = True, **kwargs):
    """Train every model spec of a grid with :func:`run_grid`, then load the models from the cache.

    Parameters
    ----------
    specs : sequence of model specs (see :func:`reprobust.train.trained_model`)
    executor : {'inline', 'processes', 'slurm'}, optional (default ``$REPROBUST_EXECUTOR`` or inline)
    cache : Cache, optional (default: the default cache folder); must be shared for ``slurm``
    device : str or torch.device, optional
        Device of the returned models, and of training for ``inline`` and ``processes``. SLURM jobs
        train on the cluster config's ``device`` (default ``auto``: the node's GPU when it has one).
    checkpoints : bool, also cache the per-epoch state dicts (as ``trained_model(checkpoints=True)``)
    load : bool, default True; False only fills the cache and returns None
    **kwargs : passed to :func:`run_grid` (``jobs``, ``cluster_config``, ``retries``, ``progress``, ...)

    Returns
    -------
    models : list of nn.Module in eval mode (or ``(model, states)`` pairs with ``checkpoints=True``),
        in the order of ``specs``

    Example
    -------
    >>> specs = [{"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 1}, "seed": s}
    ...          for s in range(4)]
    >>> models = train_grid(specs, executor="processes", cache=ctx.cache)     # doctest: +SKIP
    """
    from .train import trained_model

    cache = cache or Cache()
    executor = resolve_executor(executor)
    kind = "checkpoints" if checkpoints else "model"
    if executor == "slurm":
        worker_device = load_cluster_config(kwargs.get("cluster_config"))["device"]
    else:
        worker_device = "auto" if device is None else str(device)
    points = [{"spec": s, "cache_dir": str(Path(cache.root).resolve()), "device": worker_device,
               "checkpoints": checkpoints} for s in specs]
    kwargs.setdefault("name", "train_grid")
    run_grid(train_point, points, executor=executor, cache_dir=cache.root, collect=False,
             is_done=lambda p: cache.contains(kind, p["spec"]), **kwargs)
    if not load:
        return None
    return [trained_model(s, cache=cache, device=device, checkpoints=checkpoints) for s in specs]
