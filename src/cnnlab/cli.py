"""The `cnnlab` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable

from cnnlab.errors import EXPECTED_STOPS, UserError

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


@command("train")
def _train(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.train import resume, train

    if args.resume:
        if args.config or args.override or args.out:
            raise UserError("--resume continues a run exactly as it was configured; give only "
                            "the run folder (no CONFIG, -o or --out)")
        summary = resume(args.resume, progress=not args.quiet)
        if summary.get("already_finished"):
            if args.json:
                _print_json(summary)
            else:
                print(f"{summary['run_dir']} already finished ({summary['epochs_completed']} "
                      "epochs); nothing to do")
            return 0
    else:
        if not args.config:
            raise UserError("train needs a CONFIG file (e.g. examples/quickstart.yaml) or "
                            "--resume RUN_DIR")
        cfg = load_config(args.config, args.override)
        summary = train(cfg, out=args.out, progress=not args.quiet)
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


def _entry_keys(entry) -> list[str]:
    if entry.options is None:
        return []
    return [k for k in entry.options.model_fields if k not in ("name", "arch")]


@command("list")
def _list(args: argparse.Namespace) -> int:
    from cnnlab.errors import did_you_mean

    from cnnlab.catalogue import catalogue

    registries = catalogue()
    if args.kind and args.kind not in registries:
        raise UserError(f"unknown kind '{args.kind}'{did_you_mean(args.kind, registries)}; "
                        f"accepted: {', '.join(registries)}")
    kinds = [args.kind] if args.kind else list(registries)
    if args.json:
        _print_json({kind: [{"name": e.name, "description": e.description,
                             "keys": _entry_keys(e)} for e in registries[kind]] for kind in kinds})
        return 0
    for index, kind in enumerate(kinds):
        if len(kinds) > 1:
            print(("\n" if index else "") + f"{kind}:")
        width = max(len(e.name) for e in registries[kind])
        indent = "  " if len(kinds) > 1 else ""
        for entry in registries[kind]:
            print(f"{indent}{entry.name:<{width}}  {entry.description}")
    return 0


@command("inspect")
def _inspect(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.propagation import inspect

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
             f"  forward std ratio (last/first weight layer) {num(report['forward_ratio'])}, "
             f"backward gradient ratio (first/last) {num(report['backward_ratio'])}",
             f"  {'layer':<28} {'kind':<10} {'init (rule)':<30} {'mean':>9} {'std':>9} "
             f"{'dead':>6} {'sat':>6} {'grad std':>9} {'|dW|':>9}"]
    for layer in report["layers"]:
        init = f"{layer['init']} ({layer['rule']})" if layer["init"] else ""
        lines.append(
            f"  {layer['name']:<28.28} {layer['kind']:<10} {init:<30.30} {num(layer['mean']):>9} "
            f"{num(layer['std']):>9} {num(layer['dead'], '.0%'):>6} "
            f"{num(layer['saturated'], '.0%'):>6} {num(layer['grad_std']):>9} "
            f"{num(layer['weight_grad_norm']):>9}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from cnnlab import __version__

    parser = argparse.ArgumentParser(
        prog="cnnlab", description="Train CNNs and measure which optimization choices work.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def overrides(p):
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key; the value is parsed as YAML (repeatable)")

    p = sub.add_parser("train", help="train a model from a config, or resume a run")
    p.add_argument("config", nargs="?", help="YAML config file")
    overrides(p)
    p.add_argument("--out", help="run folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")

    p = sub.add_parser("eval", help="evaluate a run's final or best weights")
    p.add_argument("run_dir")
    overrides(p)
    p.add_argument("--weights", choices=["final", "best"], default="final")
    p.add_argument("--split", choices=["val", "test", "train"], default="val")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("inspect", help="signal propagation at init, per layer, with a verdict")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    overrides(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png", help="std against depth, one line per config")
    p.add_argument("--batch", type=int, default=256, help="images in the probe batch")

    p = sub.add_parser("list", help="list every name the config accepts")
    p.add_argument("kind", nargs="?", help="models, datasets, activations, norms, inits, "
                   "optimizers or schedules (default: all)")
    p.add_argument("--json", action="store_true")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except EXPECTED_STOPS as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnlab list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
