"""The `cnnlab` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable

from cnnlab.errors import EXPECTED_STOPS, Interrupted, NonFiniteLossError, UserError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def decorator(fn):
        COMMANDS[name] = fn
        return fn

    return decorator


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# -------------------------------------------------------------------------------------------
# train / eval / list


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


@command("train")
def _train(args: argparse.Namespace) -> int:
    import subprocess

    from cnnlab.distributed import shutdown, torchrun_command

    if args.nproc is not None:
        if args.nproc < 1:
            raise UserError(f"--nproc must be at least 1, received {args.nproc}; leave it out "
                            "to train in this one process")
        if args.config:
            # Config mistakes are reported here once, not by every process under torchrun.
            from cnnlab.config import load_config
            from cnnlab.distributed import check_sync_bn
            from cnnlab.runtime import resolve_device

            cfg = load_config(args.config, args.override)
            check_sync_bn(cfg.train.sync_bn, resolve_device(cfg.train.device))
        # The same command on N processes under torchrun on this machine.
        return subprocess.run(torchrun_command(args.nproc, _without_nproc(args.argv))).returncode
    try:
        return _train_here(args)
    finally:
        shutdown()


def _train_here(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.distributed import world
    from cnnlab.train import resume, train

    main_process = world().is_main
    if args.resume:
        if args.config or args.override or args.out:
            raise UserError("--resume continues a run exactly as it was configured; give only "
                            "the run folder (no CONFIG, -o or --out)")
        summary = resume(args.resume, progress=not args.quiet, force=args.force)
        if summary.get("already_finished") and main_process:
            if args.json:
                _print_json(summary)
            else:
                print(f"{summary['run_dir']} already finished ({summary['epochs_completed']} "
                      "epochs); nothing to do")
            return 0
    else:
        if args.force:
            raise UserError("--force accepts edits of a run's config.yaml when resuming it; use "
                            "it with --resume RUN_DIR")
        if not args.config:
            raise UserError("train needs a CONFIG file (e.g. examples/quickstart.yaml) or "
                            "--resume RUN_DIR")
        cfg = load_config(args.config, args.override)
        summary = train(cfg, out=args.out, progress=not args.quiet)
    if not main_process or summary.get("already_finished"):
        return 0  # one process reports
    if summary.get("status") == "diverged":
        print(f"error: the run diverged: {summary.get('diverged_reason', 'a non-finite loss')}; "
              f"lower optim.lr or check the data (run folder: {summary['run_dir']})",
              file=sys.stderr)
        return NonFiniteLossError.exit_code
    if args.json:
        _print_json(summary)
        return 0
    test = f", test_acc {_fmt(summary['test_acc'])}" if "test_acc" in summary else ""
    print(f"best val_acc {_fmt(summary['best_val_acc'])} (epoch {summary['best_epoch']}), "
          f"final val_acc {_fmt(summary.get('final_val_acc'))}{test}, "
          f"{summary['seconds']:.1f} s")
    print(f"run folder: {summary['run_dir']}")
    return 0


@command("eval")
def _eval(args: argparse.Namespace) -> int:
    from cnnlab.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, weights=args.weights, split=args.split,
                          overrides=args.override)
    if args.json:
        _print_json(result)
        return 0
    split = result["split"]
    parts = [f"{split}_loss {result[f'{split}_loss']:.4f}", f"{split}_acc {result[f'{split}_acc']:.4f}"]
    if f"{split}_top5" in result:
        parts.append(f"{split}_top5 {result[f'{split}_top5']:.4f}")
    print(f"{result['weights']} weights on {result['images']} {split} images: " + "  ".join(parts))
    return 0


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    from cnnlab.predict import predict

    result = predict(args.run_dir, args.images, top=args.top, weights=args.weights,
                     device=args.device)
    if args.json:
        _print_json(result)
    elif args.csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["image", "rank", "class", "probability"])
        for item in result["predictions"]:
            for rank, guess in enumerate(item["top"], start=1):
                writer.writerow([item["image"], rank, guess["class"],
                                 f"{guess['probability']:.6f}"])
    else:
        width = max(len(item["image"]) for item in result["predictions"])
        for item in result["predictions"]:
            guesses = "  ".join(f"{g['class']} {g['probability']:.4f}" for g in item["top"])
            print(f"{item['image']:<{width}}  {guesses}")
    return 0


@command("export")
def _export(args: argparse.Namespace) -> int:
    from cnnlab.exporting import export

    record = export(args.run_dir, format=args.format, out=args.out, weights=args.weights,
                    batch=args.batch)
    if args.json:
        _print_json(record)
        return 0
    check, shape = record["check"], record["input"]["shape"]
    print(f"exported {record['file']} ({record['format']}, {record['exporter']} exporter, "
          f"{record['weights']} weights)")
    tta = record["input"]["tta_inside"]
    views = "" if tta == "none" else f" and so is its test-time augmentation ({tta})"
    print(f"  input: images, float32 in [0, 1], N x {' x '.join(map(str, shape[1:]))} (NCHW, any "
          f"N); the run's normalization is inside the model{views}")
    print(f"  output: logits for {len(record['output']['classes'])} classes, in the order of "
          "classes.json (softmax gives probabilities)")
    if check["status"] == "skipped":
        print("  check: skipped, onnxruntime is not installed (pip install 'cnnlab[onnx]')")
    else:
        print(f"  check: {check['source']} through {check['runtime']}: max |logit difference| "
              f"{check['max_abs_difference']:.3g} ({check['relative_difference']:.3g} of the "
              f"logit scale {check['scale']:.3g}; tolerance {check['tolerance']:g}): "
              f"{check['status']}")
    for note in record["notes"]:
        print(f"  note: {note}")
    print(f"  record: {record['record']}")
    return 0


@command("list")
def _list(args: argparse.Namespace) -> int:
    # The written copy of the registries: reading them would import torch (seconds).
    from cnnlab.catalogue_table import TABLE as registries
    from cnnlab.errors import did_you_mean

    if args.kind and args.kind not in registries:
        raise UserError(f"unknown kind '{args.kind}'{did_you_mean(args.kind, registries)}; "
                        f"accepted: {', '.join(registries)}")
    kinds = [args.kind] if args.kind else list(registries)
    if args.json:
        _print_json({kind: registries[kind] for kind in kinds})
        return 0
    for index, kind in enumerate(kinds):
        if len(kinds) > 1:
            print(("\n" if index else "") + f"{kind}:")
        width = max(len(e["name"]) for e in registries[kind])
        indent = "  " if len(kinds) > 1 else ""
        for entry in registries[kind]:
            print(f"{indent}{entry['name']:<{width}}  {entry['description']}")
        if kind == "models":
            from cnnlab.catalogue import FOREIGN_MODELS

            print(f"{indent}{FOREIGN_MODELS}")
    return 0


@command("inspect")
def _inspect(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.outputs import check_plot_file
    from cnnlab.propagation import inspect

    check_plot_file(args.plot)
    reports = [inspect(load_config(path, args.override), batch_size=args.batch)
               for path in args.configs]
    if args.plot:
        from cnnlab.report.propagation_plot import plot_propagation

        plot_propagation(reports, args.plot)
    if args.json:
        _print_json(reports[0] if len(reports) == 1 else {"configs": reports})
        return 0
    for path, report in zip(args.configs, reports):
        print(_inspect_table(path, report))
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _inspect_table(path: str, report: dict) -> str:
    def num(value, fmt=".3g"):
        return "-" if value is None else format(value, fmt)

    where = f" at {report['layer']}" if report["layer"] else ""
    lines = [f"{path}: {report['verdict']}{where}: {report['advice']}",
             f"  forward: output std, last hidden weight layer/input "
             f"{num(report['forward_input_ratio'])}; backward: per-sample gradient norm, "
             f"first/last {num(report['backward_ratio'])} (judged against a factor of "
             f"{report['ratio_limit']:g})",
             f"  {'layer':<28} {'kind':<10} {'init (rule)':<30} {'mean':>9} {'std':>9} "
             f"{'dead':>6} {'sat':>6} {'grad std':>9} {'grad norm':>9} {'|dW|':>9}"]
    for layer in report["layers"]:
        init = f"{layer['init']} ({layer['rule']})" if layer["init"] else ""
        lines.append(
            f"  {layer['name']:<28.28} {layer['kind']:<10} {init:<30.30} {num(layer['mean']):>9} "
            f"{num(layer['std']):>9} {num(layer['dead'], '.0%'):>6} "
            f"{num(layer['saturated'], '.0%'):>6} {num(layer['grad_std']):>9} "
            f"{num(layer['grad_norm']):>9} {num(layer['weight_grad_norm']):>9}")
    return "\n".join(lines)


@command("schedule")
def _schedule(args: argparse.Namespace) -> int:
    from cnnlab.components.schedules import trace
    from cnnlab.config import load_config
    from cnnlab.configured_schedule import schedule_for_config
    from cnnlab.data import load_data
    from cnnlab.data.loaders import batches_per_epoch
    from cnnlab.outputs import check_plot_file

    check_plot_file(args.plot)
    cfg = load_config(args.config, args.override)
    data = load_data(cfg.data)
    result = trace(schedule_for_config(cfg, batches_per_epoch(len(data.train),
                                                           cfg.data.batch_size)))
    if args.plot:
        from cnnlab.report.lr_plots import plot_schedule

        plot_schedule(result, args.plot)
    if args.json:
        _print_json(result)
        return 0
    per_epoch = result["steps_per_epoch"]
    print(f"schedule {result['name']}: {result['total_steps']} optimizer steps "
          f"({per_epoch} per epoch), warmup {result['warmup_steps']} steps"
          + (f", restarts at {result['restarts']}" if result["restarts"] else "")
          + (f", weight averaging from step {result['swa_start']}"
             if result["swa_start"] is not None else ""))
    if cfg.schedule.name == "plateau":
        print("plateau lowers the LR from validation metrics, which a preview cannot know: "
              "shown as if it never triggers")
    print(f"{'epoch':>6} {'step':>7} {'lr':>12}" + (f" {'momentum':>9}" if result["momentum"]
                                                    else ""))
    for step in sorted({*range(0, result["total_steps"], per_epoch), result["total_steps"] - 1}):
        line = f"{step / per_epoch:>6.2f} {step:>7} {result['lr'][step]:>12.6g}"
        if result["momentum"]:
            line += f" {result['momentum'][step]:>9.4f}"
        print(line)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


@command("lr-find")
def _lr_find(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.lr_finder import lr_find, write_applied_config
    from cnnlab.lr_units import conversion_name, decoupled
    from cnnlab.outputs import check_parent_exists, check_plot_file

    check_plot_file(args.plot)
    if args.apply:
        check_parent_exists(args.apply, "--apply")
    cfg = load_config(args.config, args.override)
    if not 0 < args.start < args.end:
        raise UserError(f"--start ({args.start:g}) must be positive and below --end "
                        f"({args.end:g}); e.g. --start 1e-7 --end 10")
    if args.steps < 5 or args.repeats < 1:
        raise UserError("--steps must be at least 5 and --repeats at least 1")
    result = lr_find(cfg, args.start, args.end, args.steps, args.mode, args.stop_factor,
                     args.repeats, args.validation)
    if args.plot:
        from cnnlab.report.lr_plots import plot_lr_find

        plot_lr_find(result, args.plot)
    valley = result["suggestions"]["valley"]
    if args.apply:
        if valley is None:
            print("no valley suggestion could be made from this curve, so nothing was written; "
                  "widen --start/--end or use more --steps", file=sys.stderr)
            return 1
        applied_lr = write_applied_config(args.config, args.override, cfg, valley, args.apply)
    if args.json:
        _print_json(result)
        return 0
    print(f"LR range test ({result['mode']}, {len(result['lrs'])} steps of {args.steps}, "
          f"{result['curve']}): stopped: {result['stopped']}")
    for name, lr in result["suggestions"].items():
        spread = ""
        if "repeats" in result:
            info = result["repeats"]["suggestions"][name]
            if info["median"] is not None:
                spread = (f"  (over {result['repeats']['count']} seeds: median "
                          f"{info['median']:.3g}, IQR {info['iqr'][0]:.3g}..{info['iqr'][1]:.3g})")
        in_config = result["optim_lr"][name]
        if lr is not None and in_config != lr:
            spread += f"  (optim.lr {in_config:.3g} with {conversion_name(cfg.optim)})"
        print(f"  {name:<8} {'no suggestion: the curve has no such point' if lr is None else f'{lr:.3g}'}"
              f"{spread}")
    if not result["below_chance"]:
        print(f"note: the loss never fell below {result['chance_loss']:.2f}, a uniform guess's "
              "over these classes: the sweep learned nothing, so these are not LRs that train; "
              "sweep longer (more --steps) or over more of the data")
    if args.apply:
        one_cycle = " (the one-cycle peak)" if cfg.schedule.name == "one_cycle" else ""
        scaled = (f" (the optimizer's LR {valley:.3g} after {conversion_name(cfg.optim)})"
                  if cfg.optim.scale_lr != "none" or decoupled(cfg.optim) else "")
        print(f"wrote {args.apply} with optim.lr = {applied_lr:.3g}{one_cycle}{scaled}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


@command("diagnose")
def _diagnose(args: argparse.Namespace) -> int:
    from cnnlab.diagnostics import diagnose
    from cnnlab.outputs import check_output_folder

    check_output_folder(args.plot, "--plot")
    result = diagnose(args.run_dir)
    if args.plot:
        from cnnlab.report.diagnostics_plots import plot_diagnostics

        result["plots"] = [str(p) for p in plot_diagnostics(args.run_dir, args.plot)]
    if args.json:
        _print_json(result)
        return 0

    def num(value, fmt=".3g"):
        return "-" if value is None else format(value, fmt)

    overhead = result["overhead"]
    cost = (f"{overhead['fraction']:.1%} of step time" if overhead.get("fraction") is not None
            else "not measured (too few steps)")
    print(f"{result['run']}: {result['samples']} samples (the first steps, then every "
          f"{result['every']} steps at the end); "
          f"diagnostics cost {cost}")
    print(f"  {'layer':<28} {'kind':<10} {'std first':>10} {'std last':>10} {'dead max':>9} "
          f"{'sat max':>8} {'|grad|':>9} {'upd ratio':>10}")
    for layer in result["layers"]:
        print(f"  {layer['name']:<28.28} {layer['kind']:<10} {num(layer['std_first']):>10} "
              f"{num(layer['std_last']):>10} {num(layer.get('dead_max'), '.0%'):>9} "
              f"{num(layer.get('saturated_max'), '.0%'):>8} "
              f"{num(layer.get('grad_norm_last')):>9} {num(layer.get('update_ratio_median')):>10}")
    if result["alarms"]:
        print(f"alarms ({len(result['alarms'])}):")
        for alarm in result["alarms"]:
            print(f"  step {alarm['step']:>6}  {alarm['kind']:<12} {alarm['layer'] or 'model':<28} "
                  f"{alarm['detail']}")
    else:
        print("alarms: none")
    for path in result.get("plots", []):
        print(f"plot: {path}")
    return 0


def _print_comparison(results, args) -> None:
    from cnnlab.experiments.compare import analyse, analysis_json, apply_baseline, format_table

    apply_baseline(results, args.baseline)
    analysis = analyse(results)
    if args.json:
        print(analysis_json(analysis))
    else:
        print(format_table(analysis))


@command("ablate")
def _ablate(args: argparse.Namespace) -> int:
    from cnnlab.experiments.ablate import ablate
    from cnnlab.experiments.compare import from_study

    study = ablate(args.config, extra=args.override, vary=args.vary, seeds=args.seeds,
                   workers=args.workers, storage_url=args.storage, study_name=args.study,
                   baselines=args.baseline, metric=args.metric, interval=args.heartbeat,
                   progress=not args.quiet, runs_root=args.runs)
    if args.workers > 0:
        _print_comparison(from_study(args.storage, study.study_name, args.metric), args)
    return 0


@command("doctor")
def _doctor(args: argparse.Namespace) -> int:
    from cnnlab.doctor import doctor

    answer = doctor(args.config, args.override, budget=args.budget, seeds=args.seeds,
                    max_seeds=args.max_seeds, out=args.out, workers=args.workers,
                    storage=args.storage, study=args.study)
    return 1 if answer["decision"] == "not the lr" else 0


@command("search")
def _search(args: argparse.Namespace) -> int:
    from cnnlab.experiments.search import best_config, search
    from cnnlab.outputs import check_parent_exists

    if args.best:
        check_parent_exists(args.best, "--best")
    study = search(args.config, extra=args.override, space_path=args.space, trials=args.trials,
                   sampler=args.sampler, pruner=args.pruner, workers=args.workers,
                   storage_url=args.storage, study_name=args.study, metric=args.metric,
                   interval=args.heartbeat, progress=not args.quiet, runs_root=args.runs)
    states = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    result = {"study": study.study_name, "trials": states}
    if args.best:
        result["best"] = best_config(study, args.best)
    if args.json:
        _print_json(result)
        return 0
    print(f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if args.best:
        best = result["best"]
        print(f"best run {best['number']}: {args.metric} {best['value']:.4f} with "
              f"{' '.join(best['overrides'])}; config written to {args.best}")
    return 0


@command("worker")
def _worker(args: argparse.Namespace) -> int:
    from cnnlab.experiments.worker import work

    done = work(args.storage, args.study, threads=args.threads, interval=args.heartbeat,
                progress=not args.quiet, salt=args.salt)
    if not args.quiet:
        print(f"worker: study {args.study} has no run left; this worker finished {done}",
              file=sys.stderr)
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.experiments.compare import from_runs, from_study

    if all(Path(item).exists() for item in args.sources):
        results = from_runs(args.sources, args.metric or "val_acc")
    elif len(args.sources) == 1:
        results = from_study(args.storage, args.sources[0], args.metric)
    else:
        missing = [s for s in args.sources if not Path(s).exists()]
        raise UserError(f"{', '.join(missing)} not found: give run folders, or one study name "
                        "(with --storage)")
    _print_comparison(results, args)
    return 0


@command("report")
def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.report.page import build_report, output_format

    if args.dash_o is not None:
        raise UserError(f"report writes its file with --out (-o sets config overrides in the "
                        f"other commands); write: cnnlab report ... --out {args.dash_o}")
    if not args.out:
        raise UserError("report needs --out FILE: report.html (one self-contained page) or "
                        "report.md (Markdown with PNGs)")
    output_format(Path(args.out))
    path = build_report(args.sources, args.out, storage=args.storage, metric=args.metric,
                        lr_find=args.lr_find, diagnostics_run=args.diagnostics_run,
                        baselines=args.baseline)
    print(f"report: {path}")
    return 0


# -------------------------------------------------------------------------------------------


JSON_HELP = "print the result as one JSON document on stdout"


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from cnnlab import __version__

    parser = _Parser(
        prog="cnnlab", description="Train CNNs and measure which optimization choices work.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def overrides(p):
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key; the value is parsed as YAML (repeatable)")

    p = sub.add_parser("train", help="train a model from a config, or resume a run")
    p.add_argument("config", nargs="?", help="YAML config file")
    overrides(p)
    p.add_argument("--out", help="run folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="with --resume: accept edits of the "
                   "run's config.yaml that leave the saved state's shapes alone (lr, epochs, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--nproc", type=int, help="train on N processes of this machine (torchrun "
                   "with DistributedDataParallel)")

    p = sub.add_parser("eval", help="evaluate a run's final or best weights")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnlab train`")
    overrides(p)
    p.add_argument("--weights", choices=["final", "best"], default="final",
                   help="the weights at the end of training, or those of the best epoch")
    p.add_argument("--split", choices=["val", "test", "train"], default="val",
                   help="the data split to evaluate on")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("predict", help="class names and probabilities of new images")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnlab train`")
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files, folders of images, or .zip/.tar.gz archives of them")
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="the K most likely classes of each image (at most all)")
    p.add_argument("--weights", choices=["final", "best"], default="final",
                   help="the weights at the end of training, or those of the best epoch")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    formats = p.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help=JSON_HELP)
    formats.add_argument("--csv", action="store_true",
                         help="image,rank,class,probability rows on stdout")

    p = sub.add_parser("export", help="the trained network as ONNX or TorchScript, checked "
                       "against PyTorch's outputs")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnlab train`")
    # Checked by the library, not by argparse choices, so that a wrong value is one sentence.
    p.add_argument("--format", default="onnx", help="onnx or torchscript")
    p.add_argument("--out", metavar="FILE", help="the file to write (default: model.onnx or "
                   "model.torchscript.pt in the run folder)")
    p.add_argument("--weights", choices=["final", "best"], default="final",
                   help="the weights at the end of training, or those of the best epoch")
    p.add_argument("--batch", type=int, default=16, metavar="N",
                   help="images the exported model is checked on")
    p.add_argument("--json", action="store_true", help="print the export record as JSON")

    p = sub.add_parser("inspect", help="signal propagation at init, per layer, with a verdict")
    p.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="YAML config files; several are compared side by side")
    overrides(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of std against depth, one "
                   "line per config (.png, .pdf, .svg, ...)")
    p.add_argument("--batch", type=int, default=256, help="images in the probe batch")

    p = sub.add_parser("schedule", help="the LR (and momentum) of every optimizer step, "
                       "without training")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    overrides(p)
    p.add_argument("--json", action="store_true", help='print {"lr": [...], "momentum": [...]}')
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of LR (and momentum) "
                   "against step (.png, .pdf, .svg, ...)")

    p = sub.add_parser("lr-find", help="learning-rate range test with suggestions")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    overrides(p)
    p.add_argument("--start", type=float, default=1e-7, help="the first (smallest) LR tried")
    p.add_argument("--end", type=float, default=10.0, help="the last (largest) LR tried")
    p.add_argument("--steps", type=int, default=100,
                   help="optimizer steps from --start to --end (at least 5)")
    p.add_argument("--mode", choices=["exp", "linear"], default="exp",
                   help="how the LR grows between steps: geometrically or linearly")
    p.add_argument("--stop-factor", type=float, default=4.0,
                   help="stop once the smoothed loss passes this multiple of its best")
    p.add_argument("--validation", action="store_true",
                   help="Smith's mode: the curve is the validation loss after each step")
    p.add_argument("--repeats", type=int, default=1, help="sweeps with different seeds")
    p.add_argument("--apply", metavar="OUT.yaml", help="write the config with the valley LR")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", metavar="FILE.png", help="write the loss-against-LR plot with the "
                   "suggestions marked (.png, .pdf, .svg, ...)")

    p = sub.add_parser("diagnose", help="per-layer statistics and alarms recorded in training")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnlab train`")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", metavar="DIR", help="write the diagnostic plots into DIR (created "
                   "if missing)")

    def store_options(p, metric_default: str | None = "val_acc"):
        p.add_argument("--storage", help="journal file path or database URL (default "
                       "runs/optuna.journal, or $CNNLAB_STORAGE)")
        p.add_argument("--study", help="study name (default: <config name>-ablation/-search)")
        p.add_argument("--workers", type=int, default=1, help="worker processes on this machine "
                       "(0: only queue the runs for `cnnlab worker` elsewhere)")
        p.add_argument("--metric", default=metric_default,
                       help="val_acc, val_loss, test_acc, best_val_acc, ...")
        p.add_argument("--heartbeat", type=float, default=10.0,
                       help="seconds between a worker's heartbeats (a run is taken over after "
                       "3 missed)")
        p.add_argument("--runs", default="runs", help="folder for the runs' folders")
        p.add_argument("--quiet", action="store_true",
                       help="no progress lines from the runs or their workers")
        p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("ablate", help="every combination of --vary values over paired seeds")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    overrides(p)
    p.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a config key and the values to try (repeatable: every combination "
                   "is run)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per combination, paired across combinations")
    p.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                   help="the value the others are compared with (default: each key's first "
                   "--vary value; repeatable)")
    store_options(p)

    p = sub.add_parser("doctor", help="init screening, LR range test and paired trials turned "
                       "into one recommendation, within a time budget")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    overrides(p)
    p.add_argument("--budget", default="15m", help="time for everything, e.g. 15m, 90s, 1h "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="paired seeds per trial "
                   "(default: %(default)s)")
    p.add_argument("--max-seeds", type=int, help="paired seeds the trials may grow to, doubling, "
                   "while a candidate is ahead with an interval across zero and the budget "
                   "holds them (default: 8 x --seeds; --seeds for a single look)")
    p.add_argument("--out", default="doctor", help="folder for recommended.yaml, the report "
                   "and the runs; a folder with files of yours is refused (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="runs trained at the same time "
                   "(default: %(default)s)")
    p.add_argument("--storage", help="journal file or database URL of the study (default "
                   "OUT/optuna.journal)")
    p.add_argument("--study", help="study name (default <config name>-doctor)")

    p = sub.add_parser("search", help="hyperparameter search with pruning")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    overrides(p)
    p.add_argument("--space", required=True, help="YAML: key -> {low, high, log} or {choices}")
    p.add_argument("--trials", type=int, required=True, help="runs to try (required)")
    p.add_argument("--sampler", choices=["tpe", "random", "grid"], default="tpe",
                   help="how the next run's values are chosen (Optuna's samplers)")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median",
                   help="how runs that fall behind are stopped early")
    p.add_argument("--best", metavar="OUT.yaml", help="write the best run's config")
    store_options(p)

    p = sub.add_parser("worker", help="join a study and run its waiting runs")
    p.add_argument("--storage", help="journal file path or database URL (default "
                   "$CNNLAB_STORAGE, else runs/optuna.journal)")
    p.add_argument("--study", required=True, help="the study's name (required)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: all cores)")
    p.add_argument("--heartbeat", type=float, default=10.0,
                   help="seconds between heartbeats (a run is taken over after 3 missed)")
    p.add_argument("--salt", type=int, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress lines")

    p = sub.add_parser("compare", help="statistics over a study or run folders")
    p.add_argument("sources", nargs="+", metavar="STUDY_OR_RUN_DIRS",
                   help="one study name, or run folders")
    p.add_argument("--storage", help="the study's journal file or database URL (default "
                   "$CNNLAB_STORAGE, else runs/optuna.journal)")
    p.add_argument("--metric", help="the metric compared (default: the study's metric, or "
                   "val_acc)")
    p.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                   help="the value the others are compared with (default: the first; "
                   "repeatable)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("report", help="one self-contained HTML page (or Markdown + PNGs)")
    p.add_argument("sources", nargs="+", metavar="STUDY_OR_RUN_DIRS",
                   help="one study name, or run folders")
    # Only --out: everywhere else -o is a config override, so a report's -o would mislead;
    # a hidden -o is caught only to point to --out.
    p.add_argument("--out", metavar="FILE", help="report.html or report.md (required)")
    p.add_argument("-o", dest="dash_o", help=argparse.SUPPRESS)
    p.add_argument("--storage", help="the study's journal file or database URL (default "
                   "$CNNLAB_STORAGE, else runs/optuna.journal)")
    p.add_argument("--metric", help="the metric compared (default: the study's metric, or "
                   "val_acc)")
    p.add_argument("--lr-find", metavar="FILE.json",
                   help="a `cnnlab lr-find --json` result to include")
    p.add_argument("--diagnostics-run", help="the run whose diagnostics to show (default: best)")
    p.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                   help="the value the others are compared with (default: the first; "
                   "repeatable)")

    p = sub.add_parser("list", help="list every name the config accepts")
    p.add_argument("kind", nargs="?", help="models, datasets, activations, norms, inits, "
                   "optimizers or schedules (default: all)")
    p.add_argument("--json", action="store_true",
                   help="print names, descriptions and each entry's config keys as JSON")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except Interrupted as error:
        # Stopped on request (Ctrl-C, SIGTERM): not an error; the message says how to resume.
        print(str(error), file=sys.stderr)
        return error.exit_code
    except EXPECTED_STOPS as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnlab list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
