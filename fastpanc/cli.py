"""Command-line interface: argument parsing only. Heavy imports happen inside each command.

Each command has an ``_add_<name>`` (its arguments) and a ``_run_<name>`` (calls into the library).
User errors (ValueError, FileNotFoundError, ...) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger("fastpanc")

EXIT_USER_ERROR = 2
EXIT_PARTIAL_FAILURE = 3  # a batch finished but some items failed


# ----------------------------------------------------------------------------- info
def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the build facts as one JSON object")


def _run_info(args: argparse.Namespace) -> int:
    from fastpanc import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


# ----------------------------------------------------------------------------- convert
def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="challenge layout (train/ validation/ test/) or an nnU-Net raw dataset")
    p.add_argument("dst", help="output nnU-Net v2 raw dataset folder")
    p.add_argument(
        "--subtypes", help="case -> subtype mapping (JSON or CSV) when SRC is an nnU-Net raw dataset"
    )
    p.add_argument(
        "--allow-broken",
        action="store_true",
        help="write the dataset even when some cases fail the checks (they are left out)",
    )


def _run_convert(args: argparse.Namespace) -> int:
    from fastpanc.data.convert import convert_command

    return convert_command(args)


# ----------------------------------------------------------------------------- synth
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (challenge layout)")
    p.add_argument("--cases", type=int, default=30, help="number of labeled cases (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-cases", type=int, default=0, help="unlabeled test images to write as well")
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of cases in validation/")
    p.add_argument(
        "--size-scale",
        type=float,
        default=1.0,
        help="voxels per axis relative to real-like crops: the spacing is coarsened by 1/X, the anatomy "
        "keeps its size in mm (smaller is faster; 1.0 gives real-like crop sizes and spacings)",
    )
    p.add_argument("-j", "--workers", type=int, default=1)


def _run_synth(args: argparse.Namespace) -> int:
    from fastpanc.data.synth import synth_command

    return synth_command(args)


# ----------------------------------------------------------------------------- plan
def _add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", help="nnU-Net v2 raw dataset folder")
    p.add_argument(
        "--from-fingerprint", metavar="FILE", help="plan from an existing dataset_fingerprint.json"
    )
    p.add_argument("-o", "--output", help="plans.json to write (default DATASET/plans.json)")
    p.add_argument(
        "--gpu-memory-gb", type=float, default=8.0, help="memory target of the planner (ResEnc M: 8)"
    )
    p.add_argument(
        "--target-spacing",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="target spacing in mm instead of the planner's (nnU-Net's -overwrite_target_spacing)",
    )
    p.add_argument("-j", "--workers", type=int, default=2)


def _run_plan(args: argparse.Namespace) -> int:
    from fastpanc.data.plan import plan_command

    return plan_command(args)


# ----------------------------------------------------------------------------- preprocess
def _add_preprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="nnU-Net v2 raw dataset folder")
    p.add_argument("--plans", required=True, help="plans.json from `fastpanc plan`")
    p.add_argument("-o", "--output", required=True, help="output folder of preprocessed cases")
    p.add_argument("-j", "--workers", type=int, default=2)
    p.add_argument("--configuration", default="3d_fullres")


def _run_preprocess(args: argparse.Namespace) -> int:
    from fastpanc.data.preprocess import preprocess_command

    return preprocess_command(args)


# ----------------------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("preprocessed", help="folder written by `fastpanc preprocess`")
    p.add_argument("-o", "--output", required=True, help="model folder")
    p.add_argument("--config", help="training config JSON (see fastpanc.training.config.TrainConfig)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, help="number of epochs (overrides the config's)")
    g.add_argument(
        "--minutes",
        type=float,
        help="wall-clock training budget instead of epochs (training, validation and checkpoint writes); "
        "the poly LR decays over it",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in OUTPUT/fold_K/checkpoint_latest.pth exactly (same config)",
    )
    p.add_argument("--fold", type=int, default=0)


def _run_train(args: argparse.Namespace) -> int:
    from fastpanc.training.command import train_command

    return train_command(args)


# ----------------------------------------------------------------------------- predict
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--input",
        required=True,
        nargs="+",
        help="a folder of {CASE}_{XXXX}.{ext} files, a list of files, or a glob",
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", required=True, help="fastpanc or nnU-Net v2 model folder")
    p.add_argument("--folds", nargs="+", default=None, help="folds to ensemble (default: all found)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file name (default: final, else best)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--tta", dest="tta", action="store_true", default=None, help="mirroring test-time augmentation"
    )
    p.add_argument("--no-tta", dest="tta", action="store_false")
    p.add_argument("--step", type=float, default=None, help="sliding-window step as a fraction of the patch")
    p.add_argument("--mode", choices=["exact", "fast"], default="exact")
    p.add_argument("--roi", action="store_true", help="coarse-to-fine: find the pancreas first, then refine")
    p.add_argument("--save-probabilities", action="store_true")
    p.add_argument(
        "--torch-modules",
        action="store_true",
        help="run torch's own norm, pooling and upsampling modules instead of fastpanc's fused CPU passes "
        "(the CPU default; docs/inference.md)",
    )
    p.add_argument("--zip", metavar="NAME", help="also pack masks and subtype_results.csv into this zip")
    p.add_argument("--num-parts", type=int, default=1)
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--continue", dest="cont", action="store_true", help="skip cases whose outputs exist")
    p.add_argument("--profile", action="store_true", help="print time per stage, per case and in total")


def _run_predict(args: argparse.Namespace) -> int:
    from fastpanc.inference.cli import predict_command

    return predict_command(args)


# ----------------------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of predicted masks")
    p.add_argument("--gt", required=True, help="folder of reference masks")
    p.add_argument("--pred-subtypes", help="subtype_results.csv written by the predictor")
    p.add_argument("--gt-subtypes", help="subtype_mapping.json (or CSV) of the reference")
    p.add_argument(
        "-o", "--output", required=True, help="output folder: summary.json, cases.csv and PNG figures"
    )
    p.add_argument("--tolerance-mm", type=float, default=2.0, help="normalised surface Dice tolerance")
    p.add_argument("--images", help="folder of the CT images ({CASE}_0000.nii.gz) to draw the overlays on")


def _run_evaluate(args: argparse.Namespace) -> int:
    from fastpanc.evaluation.evaluate import evaluate_command

    return evaluate_command(args)


# ----------------------------------------------------------------------------- demo
def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", nargs="?", default="fastpanc-demo", help="output folder (default ./fastpanc-demo)")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget of the whole demo")
    p.add_argument("--device", default="auto", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic cohorts and of training")
    p.add_argument("--cases", type=int, default=16, help="synthetic training cases (default 16)")
    p.add_argument(
        "--heldout-cases", type=int, default=6, help="synthetic held-out cases to evaluate (default 6)"
    )
    p.add_argument(
        "--size-scale",
        type=float,
        default=0.5,
        help="field-of-view scale of the synthetic CT (default 0.5; 1.0 gives real-like crop sizes)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from fastpanc.demo import demo_command

    return demo_command(args)


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "info": ("show version, build and device facts", _add_info, _run_info),
    "convert": ("challenge layout -> nnU-Net v2 raw dataset", _add_convert, _run_convert),
    "synth": ("write a synthetic abdominal CT cohort", _add_synth, _run_synth),
    "plan": ("fingerprint a dataset and write a ResEnc M plans.json", _add_plan, _run_plan),
    "preprocess": ("crop, normalise and resample a dataset for training", _add_preprocess, _run_preprocess),
    "train": ("train the multitask network", _add_train, _run_train),
    "predict": ("predict masks and lesion subtypes (same as fastpanc-predict)", _add_predict, _run_predict),
    "evaluate": ("Dice, NSD, HD95 and subtype F1 against a reference", _add_evaluate, _run_evaluate),
    "demo": ("the whole pipeline end to end on synthetic data", _add_demo, _run_demo),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        ValueError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
    ]
    try:
        from fastpanc.ops._backend import BackendUnavailableError

        errors.append(BackendUnavailableError)
    except ImportError:
        pass
    return tuple(errors)


def openmp_wait_policy(command: str | None, environ: Mapping[str, str]) -> str | None:
    """The ``OMP_WAIT_POLICY`` the CLI sets for ``command``, or None to leave the environment as it is.

    A policy the user set is kept. Otherwise OpenMP threads (fastpanc's kernels and torch share one runtime)
    wait passively: spinning at the end of each parallel pass costs 2-6x CPU time when the cores are shared
    or oversubscribed (worker processes of preprocessing and export, measured in benchmarks/RESULTS.md).
    ``train`` in a single process is the exception: a small network's many short parallel regions pay the
    wake-up of sleeping threads on every op (a CPU step of benchmarks/train_proof.sh's configuration took
    115 ms passive against 73 ms with the runtime's default), so it keeps the runtime's default (spin a
    while, then sleep). Several processes of one ``torchrun`` job share the cores, so they wait passively.
    """
    if "OMP_WAIT_POLICY" in environ:
        return None
    if command == "train" and int(environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return "PASSIVE"


def _set_openmp_wait_policy(command: str | None) -> None:
    """Apply :func:`openmp_wait_policy`; it takes effect only before torch is imported (the command line
    parsers import no torch)."""
    import os

    policy = openmp_wait_policy(command, os.environ)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fastpanc").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _dispatch(run: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if getattr(args, "verbose", 0) > 1:
            raise
        msg = str(exc).strip().replace("\n", " ")
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print build facts as JSON and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from fastpanc import build_info

        print(json.dumps(build_info(), indent=2))
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastpanc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: info, -vv: debug and tracebacks"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add, _run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
        add(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_openmp_wait_policy(args.command)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    _setup_logging(args.verbose)
    return _dispatch(COMMANDS[args.command][2], args, f"fastpanc {args.command}")


def predict_main(argv: Sequence[str] | None = None) -> int:
    _set_openmp_wait_policy("predict")
    parser = argparse.ArgumentParser(
        prog="fastpanc-predict", description="Predict pancreas, lesion and subtype."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    _add_predict(parser)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return _dispatch(_run_predict, args, "fastpanc-predict")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
