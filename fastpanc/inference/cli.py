"""``fastpanc-predict`` / ``fastpanc predict``: argument handling around :mod:`fastpanc.inference.pipeline`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fastpanc.inference import outputs as O
from fastpanc.inference.config import PredictConfig
from fastpanc.inference.inputs import find_cases, resolve_shard, shard
from fastpanc.inference.pipeline import profile_table, run_batch
from fastpanc.inference.predictor import Predictor

log = logging.getLogger("fastpanc.inference")


def predict_command(args: argparse.Namespace) -> int:
    """Run a prediction batch; returns 0, or ``EXIT_PARTIAL_FAILURE`` when some cases failed."""
    from fastpanc.cli import EXIT_PARTIAL_FAILURE

    num_parts, part = resolve_shard(args.num_parts, args.part)
    config = PredictConfig(
        mode=args.mode,
        tta=args.tta,
        step=args.step,
        roi=args.roi,
        save_probabilities=args.save_probabilities,
        fused_inference=False if getattr(args, "torch_modules", False) else None,
    )
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output {out_dir} exists and is not a folder; pass a folder to -o")
    predictor = Predictor(
        args.model, folds=args.folds, checkpoint=args.checkpoint, device=args.device, config=config
    )
    all_cases = find_cases(args.input)  # a case with the wrong channel count fails alone (pipeline._load)
    cases = shard(all_cases, num_parts, part)
    if num_parts > 1:
        log.info("part %d of %d: %d of %d case(s)", part, num_parts, len(cases), len(all_cases))
    if not predictor.multitask:
        print(f"{predictor.model.path} is a plain segmentation model: masks only, no subtype output")
    O.write_text_atomic(
        out_dir / "predict_config.json",
        json.dumps(
            {
                **predictor.config.to_dict(),
                "model": str(predictor.model.path),
                "folds": predictor.model.folds,
                "device": str(predictor.device),
                # the dtype the network runs in under autocast ("torch.bfloat16"), null without autocast
                "autocast": None if predictor.autocast is None else str(predictor.autocast),
            },
            indent=2,
        )
        + "\n",
    )
    report = run_batch(predictor, cases, out_dir, resume=args.cont, progress=sys.stderr.isatty())

    if predictor.multitask:
        O.write_subtype_csvs(out_dir)
    if args.zip:
        target = Path(args.zip) if Path(args.zip).is_absolute() else out_dir / args.zip
        files = [out_dir / c.output_name for c in all_cases if (out_dir / c.output_name).is_file()]
        if predictor.multitask:
            files.append(out_dir / O.SUBTYPE_CSV)
        O.write_zip(target, files)
        missing = len(all_cases) - (len(files) - int(predictor.multitask))
        if missing:
            log.warning(
                "%s holds %d of %d masks (the other parts have not finished yet or failed)",
                target,
                len(all_cases) - missing,
                len(all_cases),
            )
    if args.profile:
        print(profile_table(report))
        if predictor.device.type == "cuda":
            import torch

            print(f"peak GPU memory: {torch.cuda.max_memory_allocated(predictor.device) / 2**30:.2f} GiB")
    print(
        f"predicted {len(report.done)}, skipped {len(report.skipped)} (--continue), failed {len(report.failed)} "
        f"of {len(cases)} case(s) -> {out_dir}"
    )
    if report.failed:
        print("failed cases:", file=sys.stderr)
        for line in report.failed.values():
            print(f"  {line}", file=sys.stderr)
        return EXIT_PARTIAL_FAILURE
    return 0
