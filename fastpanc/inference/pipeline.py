"""Batch prediction: read-ahead thread (read + preprocess of the next case), device work in the caller's
thread, writer thread. One bad case logs one line naming its file; the others still finish."""

from __future__ import annotations

import glob
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fastpanc.inference import outputs as O
from fastpanc.inference.inputs import Case, check_channels
from fastpanc.inference.predictor import STAGES, CaseResult, Predictor

log = logging.getLogger("fastpanc.inference")


@dataclass
class BatchReport:
    """What a batch run did: finished and skipped case names, failures ``{case: message}``, timings per case."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


def is_finished(case: Case, out_dir: Path, predictor: Predictor) -> bool:
    """Whether every output of ``case`` exists (mask, subtype record, probabilities when asked)."""
    needed = [out_dir / case.output_name]
    if predictor.multitask:
        needed.append(O.record_path(out_dir, case.name))
    if predictor.config.save_probabilities:
        needed.append(out_dir / f"{case.name}.npz")
    return all(p.is_file() for p in needed)


def remove_stale_temporaries(case: Case, out_dir: Path) -> None:
    """Delete the hidden temporary files a killed run left for ``case`` (``.NAME.*.tmp`` beside its mask,
    probabilities and subtype record). Only this case's names are touched, so parallel parts (which predict
    disjoint cases into the same folder) never remove each other's files."""
    targets = [out_dir / case.output_name, out_dir / f"{case.name}.npz", O.record_path(out_dir, case.name)]
    for target in targets:
        if not target.parent.is_dir():
            continue
        # tempfile's names: the prefix, 8 random characters, the suffix (so no other case's name can match)
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.{'?' * 8}.tmp"):
            log.info("removing %s, left by an interrupted run", tmp)
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _load(predictor: Predictor, case: Case):
    from fastpanc.data.io import read_case

    check_channels(case, predictor.model.num_input_channels)
    t0 = time.perf_counter()
    image, geometry = read_case(list(case.files))
    t1 = time.perf_counter()
    prep = predictor.preprocess(image, geometry.spacing)
    return prep, geometry, {"read": t1 - t0, "preprocess": time.perf_counter() - t1}


def _write(case: Case, result: CaseResult, geometry, out_dir: Path, timings: dict[str, float]) -> None:
    from fastpanc.data.io import write_image

    t0 = time.perf_counter()
    if result.probabilities is not None:
        O.write_probabilities(out_dir / f"{case.name}.npz", result.probabilities)
    if result.subtype_probs is not None:
        O.write_subtype_record(
            out_dir, case.name, case.output_name, result.subtype_probs, result.subtype_weighting or "uniform"
        )
    write_image(out_dir / case.output_name, result.labels, geometry)  # the mask last: it marks the case done
    timings["write"] = time.perf_counter() - t0


def _one_line(case: Case, exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"{case.name} ({case.files[0]}): {type(exc).__name__}: {msg}"


def run_batch(
    predictor: Predictor, cases: list[Case], out_dir: Path, resume: bool = False, progress: bool = True
) -> BatchReport:
    """Predict ``cases`` into ``out_dir``; never raises for a single case (see ``BatchReport.failed``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport()
    todo = []
    for c in cases:
        # a kill can also come after a case's output was renamed into place but before its temporary folder
        # was removed, so finished cases are cleaned too (only this run's case names are touched)
        remove_stale_temporaries(c, out_dir)
        if resume and is_finished(c, out_dir, predictor):
            report.skipped.append(c.name)
        else:
            todo.append(c)
    if report.skipped:
        log.info("--continue: %d case(s) already finished, skipped", len(report.skipped))
    writes: list[tuple[Case, Future]] = []
    with (
        ThreadPoolExecutor(1, thread_name_prefix="fastpanc-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="fastpanc-write") as writer,
    ):
        pending = reader.submit(_load, predictor, todo[0]) if todo else None
        for i, case in enumerate(tqdm(todo, desc="cases", unit="case", disable=not progress)):
            assert pending is not None
            current, pending = (
                pending,
                (reader.submit(_load, predictor, todo[i + 1]) if i + 1 < len(todo) else None),
            )
            try:
                prep, geometry, timings = current.result()
                result = predictor.predict_prepared(prep, timings)
            except Exception as exc:  # one bad case must not stop the batch
                report.failed[case.name] = _one_line(case, exc)
                log.error("%s", report.failed[case.name])
                continue
            report.timings[case.name] = result.timings
            writes.append((case, writer.submit(_write, case, result, geometry, out_dir, result.timings)))
        for case, fut in writes:
            try:
                fut.result()
                report.done.append(case.name)
            except Exception as exc:
                report.failed[case.name] = _one_line(case, exc)
                log.error("%s", report.failed[case.name])
    return report


def profile_table(report: BatchReport) -> str:
    """Seconds per stage, per case and in total, as aligned text."""
    names = list(report.timings)
    width = max([len(n) for n in names] + [5])
    head = f"{'case':<{width}} " + " ".join(f"{s:>10}" for s in STAGES) + f" {'total':>10}"
    lines = [head]
    totals = dict.fromkeys(STAGES, 0.0)
    for n in names:
        t = report.timings[n]
        for s in STAGES:
            totals[s] += t.get(s, 0.0)
        lines.append(
            f"{n:<{width}} "
            + " ".join(f"{t.get(s, 0.0):10.3f}" for s in STAGES)
            + f" {sum(t.get(s, 0.0) for s in STAGES):10.3f}"
        )
    lines.append(
        f"{'total':<{width}} "
        + " ".join(f"{totals[s]:10.3f}" for s in STAGES)
        + f" {sum(totals.values()):10.3f}"
    )
    return "\n".join(lines)
