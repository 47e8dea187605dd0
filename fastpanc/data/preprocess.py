"""``fastpanc preprocess``: every training case of a raw dataset through :func:`preprocess_case`, in parallel.

Output folder (the trainer's input; DEVELOPERS.md fixes the format): ``plans.json``, ``dataset.json``,
``subtype_mapping.json`` and ``splits_final.json`` copied in, and per case ``{CASE}.npy`` (float32
``(C, Z, Y, X)``), ``{CASE}_seg.npy`` (int8 ``(1, Z, Y, X)``) and ``{CASE}.json`` (properties). Every file is
written to a temporary name and moved into place; the JSON is written last, so a case whose JSON exists
is finished and a rerun skips it.
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import logging
import os
import shutil
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fastpanc.data.class_locations import int_rows_json
from fastpanc.data.raw_dataset import RawCase, label_values, load_dataset_json, load_json_file, training_cases

log = logging.getLogger(__name__)

# decoded cases the read-ahead may hold before the workers take them
READ_AHEAD_BYTES = 2 << 30

# ``preprocess_case`` (fastpanc.data.preprocess_case) is also importable from here, lazily (module __getattr__)
__all__ = ["PreprocessJob", "preprocess_dataset", "preprocess_command", "case_finished"]


@dataclass(frozen=True)
class PreprocessJob:
    """Everything a worker needs for one case (picklable for spawned workers)."""

    case: RawCase
    out_dir: Path
    plans_config: dict[str, Any]
    intensity_props: dict[str, dict[str, float]]
    transpose_forward: tuple[int, ...]
    labels: tuple[int, ...]
    subtype: int | None


def __getattr__(name: str) -> Any:
    # preprocess_case pulls in torch; the parent process of a parallel run never needs it
    if name == "preprocess_case":
        from fastpanc.data.preprocess_case import preprocess_case

        return preprocess_case
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def case_finished(out_dir: Path, case: str) -> bool:
    """A case is finished when its properties JSON exists (it is written after both arrays)."""
    return (
        (out_dir / f"{case}.json").is_file()
        and (out_dir / f"{case}.npy").is_file()
        and (out_dir / f"{case}_seg.npy").is_file()
    )


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))
    os.replace(tmp, path)


def _save_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_json(path: Path, obj: Any) -> None:
    _save_text(path, json.dumps(obj, indent=1) + "\n")


CaseArrays = tuple[np.ndarray, Any, np.ndarray]  # (image (C, Z, Y, X), Geometry, labels (Z, Y, X))


def read_job(job: PreprocessJob) -> CaseArrays:
    """Read one case's image and labels and check that they belong together."""
    from fastpanc.data.io import read_case, read_labels

    if job.case.label is None:
        raise FileNotFoundError(
            f"label file missing: labelsTr/{job.case.name}{''.join(job.case.images[0].suffixes)}"
        )
    image, geometry = read_case(job.case.images)
    labels, lab_geometry = read_labels(job.case.label, job.labels)
    if labels.shape != image.shape[1:]:
        raise ValueError(f"image (Z, Y, X) {image.shape[1:]} and label {labels.shape} differ in shape")
    why = geometry.mismatch(lab_geometry)
    if why is not None:
        raise ValueError(f"image and label differ in geometry: {why}")
    return image, geometry, labels


def process_job(job: PreprocessJob, arrays: CaseArrays) -> None:
    """Preprocess one case that :func:`read_job` read, and write it."""
    from fastpanc.data.preprocess_case import preprocess_case

    image, geometry, labels = arrays
    fg = [v for v in job.labels if v != 0]
    data, seg, props = preprocess_case(
        image,
        geometry,
        job.plans_config,
        job.intensity_props,
        labels,
        transpose_forward=job.transpose_forward,
        foreground_labels=fg,
    )
    locations = props.pop("class_locations")
    props["case"] = job.case.name
    props["subtype"] = job.subtype
    head = json.dumps(props, separators=(",", ":"))
    body = ",".join(f'"{k}":{int_rows_json(v)}' for k, v in locations.items())
    name = job.case.name
    _save_npy(job.out_dir / f"{name}.npy", data.cpu().numpy())
    _save_npy(job.out_dir / f"{name}_seg.npy", seg.numpy())
    _save_text(job.out_dir / f"{name}.json", f'{head[:-1]},"class_locations":{{{body}}}}}\n')


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"


class ReadAhead:
    """Reads cases in background threads ahead of the workers that process them, within a memory budget.

    Decoding (SimpleITK) releases the GIL, so the first cases are read while the main thread is still
    importing torch, and later ones while the workers compute. At most ``threads`` reads run at once, and
    no new read starts while the cases read but not yet taken hold ``budget_bytes`` or more (one case is
    always allowed, however large). :meth:`take` hands a case over in job order.
    """

    def __init__(self, jobs: list[PreprocessJob], threads: int, budget_bytes: int = READ_AHEAD_BYTES) -> None:
        self.jobs = jobs
        self._threads = max(1, threads)
        self._budget = budget_bytes
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fastpanc-read")
        self._cond = threading.Condition()
        self._futures: dict[int, Future] = {}
        self._sizes: dict[int, int] = {}  # bytes of each finished read not yet taken
        self._running = 0  # reads submitted and not finished
        self._held = 0  # bytes of finished reads not yet taken
        self._next = 0
        self._closed = False
        with self._cond:
            self._submit_more()

    def _submit_more(self) -> None:  # called with the lock held
        while (
            not self._closed
            and self._next < len(self.jobs)
            and self._running < self._threads
            and (self._held < self._budget or (self._held == 0 and self._running == 0))
        ):
            i = self._next
            self._next += 1
            self._running += 1
            fut = self._pool.submit(read_job, self.jobs[i])
            self._futures[i] = fut
            fut.add_done_callback(functools.partial(self._finished, i))

    def _finished(self, index: int, fut: Future) -> None:
        size = 0
        if not fut.cancelled() and fut.exception() is None:
            image, _, labels = fut.result()
            size = image.nbytes + labels.nbytes
        with self._cond:
            self._running -= 1
            self._sizes[index] = size
            self._held += size
            self._submit_more()
            self._cond.notify_all()

    def take(self, index: int) -> CaseArrays:
        """The arrays of job ``index`` (blocks until read); raises what reading it raised."""
        with self._cond:
            while index not in self._sizes:
                if self._closed:
                    raise RuntimeError("read-ahead closed")
                self._cond.wait()
            fut = self._futures.pop(index)
            self._held -= self._sizes.pop(index)
            self._submit_more()
        return fut.result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _thread_init() -> None:
    """Each worker thread runs the OpenMP kernels of fastpanc._C on one thread (the setting is per thread)."""
    from fastpanc.ops._backend import extension

    ext = extension()
    if ext is not None:
        ext.set_num_threads(1)


def _process_safe(reader: ReadAhead, index: int) -> tuple[str, str | None]:
    job = reader.jobs[index]
    try:
        process_job(job, reader.take(index))
        return job.case.name, None
    except Exception as exc:  # reported per case; the other cases go on
        return job.case.name, _one_line(exc)


def _copy_side_files(dataset: Path, plans: dict[str, Any], out_dir: Path) -> None:
    plans_out = out_dir / "plans.json"
    if plans_out.is_file():
        if json.loads(plans_out.read_text()) != plans:
            raise ValueError(
                f"{out_dir} was preprocessed with other plans ({plans_out} differs); choose another "
                "output folder or delete it"
            )
    else:
        _save_json(plans_out, plans)
    for name in ("dataset.json", "subtype_mapping.json", "splits_final.json"):
        if (dataset / name).is_file():
            shutil.copyfile(dataset / name, out_dir / name)


def preprocess_dataset(
    dataset: str | Path,
    plans: dict[str, Any],
    out_dir: str | Path,
    workers: int = 2,
    configuration: str = "3d_fullres",
) -> dict[str, str]:
    """Preprocess all training cases of ``dataset`` into ``out_dir``; finished cases are skipped.

    Returns:
        ``{case: one-line error}`` for the cases that failed (empty when all succeeded).
    """
    dataset, out_dir = Path(dataset), Path(out_dir)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    configs = plans.get("configurations", {})
    if configuration not in configs:
        raise ValueError(f"configuration {configuration!r} is not in the plans; available: {sorted(configs)}")
    config = configs[configuration]
    if "inherits_from" in config:
        config = {**configs[config["inherits_from"]], **config}
    dj = load_dataset_json(dataset)
    cases = training_cases(dataset, dj, require_labels=False)
    subtypes_file = dataset / "subtype_mapping.json"
    subtypes = load_json_file(subtypes_file, "subtype mapping") if subtypes_file.is_file() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_side_files(dataset, plans, out_dir)
    labels = tuple(label_values(dj))
    jobs = [
        PreprocessJob(
            c,
            out_dir,
            config,
            plans["foreground_intensity_properties_per_channel"],
            tuple(plans.get("transpose_forward", (0, 1, 2))),
            labels,
            None if subtypes.get(c.name) is None else int(subtypes[c.name]),
        )
        for c in cases
        if not case_finished(out_dir, c.name)
    ]
    for job in jobs:  # what a killed run left of these cases: hidden `.{file}.{pid}.tmp` files
        for name in (f"{job.case.name}.npy", f"{job.case.name}_seg.npy", f"{job.case.name}.json"):
            for tmp in out_dir.glob(f".{glob.escape(name)}.*.tmp"):
                if tmp.name[len(name) + 2 : -len(".tmp")].isdigit():
                    tmp.unlink(missing_ok=True)
    skipped = len(cases) - len(jobs)
    if skipped:
        log.info("skipping %d finished case(s)", skipped)
    errors: dict[str, str] = {}
    with (
        tqdm(total=len(cases), initial=skipped, desc="preprocess", unit="case") as bar,
        ReadAhead(jobs, workers) as reader,
    ):
        # Threads, not processes: image decoding (SimpleITK) and fastpanc's kernels release the GIL, and a
        # thread pool costs nothing to start, where worker processes pay a torch import (~1.5 s each). The
        # read-ahead has started decoding the first cases; they arrive while this thread imports torch.
        if workers == 1 or len(jobs) <= 1:
            for i in range(len(jobs)):
                _report(*_process_safe(reader, i), errors, bar)
        else:
            import torch

            torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(min(workers, len(jobs)), initializer=_thread_init) as pool:
                    for name, err in pool.map(lambda i: _process_safe(reader, i), range(len(jobs))):
                        _report(name, err, errors, bar)
            finally:
                torch.set_num_threads(torch_threads)
    return errors


def _report(name: str, err: str | None, errors: dict[str, str], bar: tqdm) -> None:
    if err is not None:
        errors[name] = err
        tqdm.write(f"fastpanc preprocess: {name}: {err}", file=sys.stderr)
    bar.update()


def preprocess_command(args: argparse.Namespace) -> int:
    """``fastpanc preprocess DATASET --plans plans.json -o OUT -j N [--configuration 3d_fullres]``."""
    from fastpanc.cli import EXIT_PARTIAL_FAILURE

    plans = load_json_file(Path(args.plans), "plans")
    errors = preprocess_dataset(
        args.dataset, plans, args.output, workers=args.workers, configuration=args.configuration
    )
    if errors:
        print(
            f"fastpanc preprocess: {len(errors)} case(s) failed: {', '.join(sorted(errors))}; the others are in "
            f"{args.output} (rerun to retry only the failed ones)"
        )
        return EXIT_PARTIAL_FAILURE
    print(f"preprocessed into {args.output}")
    return 0
