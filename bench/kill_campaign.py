"""Reliability campaign for run folders and checkpoints (issue 20): kill -9 at random moments,
two runs launched into one folder at once, and damaged checkpoints. Prints counts, not times.

    python bench/kill_campaign.py --kills 10 --races 10

1. Kills: one uninterrupted reference run, then N runs each SIGKILLed at a random moment of its
   life (start-up included) and resumed to the end; a run counts as identical when its
   model.safetensors has the reference's sha256 (byte for byte, metadata included) and its
   metrics.jsonl has each epoch exactly once.
2. Races: N times, two `cnnlab train --out SAME` started together with different seeds; counts
   launches where exactly one ran and the other was refused (exit 2), and mixed folders (config,
   summary and metrics from different runs, or epochs repeated).
3. Damaged checkpoints: each damage applied to a copy of an interrupted run, and what resume or
   eval answered (exit code, first words of the message, traceback or not).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

CONFIG = {
    "name": "campaign",
    "seed": 0,
    "data": {"dataset": "synthetic", "batch_size": 32, "val_split": 0.2,
             "synthetic": {"num_classes": 4, "image_size": 12, "train_size": 960, "test_size": 64,
                           "noise": 0.5},
             "augment": {"crop_padding": 2, "flip": True, "cutout": 3}},
    "model": {"arch": "simple_cnn", "widths": [8, 16], "fc": [32], "dropout": 0.2},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine", "warmup": {"epochs": 1}},
    "train": {"epochs": 3, "threads": 1, "checkpoint_every": 7, "mixup": 0.2,
              "ema": {"decay": 0.9, "warmup_steps": 5}},
    "diagnostics": {"every": 5},
}


def cnnlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", *map(str, args)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def epochs_once(run: Path, epochs: int) -> bool:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))


def kills(work: Path, config: Path, count: int, rng: random.Random) -> dict:
    started = time.monotonic()
    subprocess.run(cnnlab("train", config, "--out", work / "reference", "--quiet"), check=True,
                   capture_output=True)
    lifetime = time.monotonic() - started
    expected = digest(work / "reference" / "model.safetensors")
    identical, killed_mid_run, failures = 0, 0, []
    for index in range(count):
        out = work / f"kill{index}"
        process = subprocess.Popen(cnnlab("train", config, "--out", out, "--quiet"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = rng.uniform(0.0, lifetime)
        time.sleep(moment)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        process.wait()
        if not (out / "config.yaml").exists():
            # Killed before the folder was claimed: a user starts it again.
            subprocess.run(cnnlab("train", config, "--out", out, "--quiet"), check=True,
                           capture_output=True)
        else:
            resumed = subprocess.run(cnnlab("train", "--resume", out, "--quiet"),
                                     capture_output=True, text=True)
            if resumed.returncode != 0:
                failures.append(f"kill {index} at {moment:.2f} s: {resumed.stderr.strip()}")
                continue
        same = digest(out / "model.safetensors") == expected and epochs_once(out, 3)
        identical += same
        if not same:
            failures.append(f"kill {index} at {moment:.2f} s: weights or metrics differ")
    return {"kills": count, "killed_mid_run": killed_mid_run, "identical": identical,
            "reference_seconds": round(lifetime, 1), "failures": failures}


def races(work: Path, config: Path, count: int) -> dict:
    one_refused, mixed, problems = 0, 0, []
    for index in range(count):
        out = work / f"race{index}"
        processes = [subprocess.Popen(cnnlab("train", config, "--out", out, "-o", f"seed={seed}",
                                             "--quiet"), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
        results = [(p.wait(), p.stderr.read()) for p in processes]
        codes = sorted(code for code, _ in results)
        if codes == [0, 2] and all("Traceback" not in err for _, err in results):
            one_refused += 1
        else:
            problems.append(f"race {index}: exit codes {codes}")
        saved = yaml.safe_load((out / "config.yaml").read_text())
        summary = json.loads((out / "summary.json").read_text())
        if saved["seed"] != summary["seed"] or not epochs_once(out, 3):
            mixed += 1
    return {"launches": count, "exactly_one_ran": one_refused, "mixed_folders": mixed,
            "problems": problems}


def without_rng(path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    del state["rng"]
    torch.save(state, path)


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def damaged(work: Path, config: Path) -> list[dict]:
    """An interrupted run (killed after its first epoch ended), and a finished one for eval."""
    source = work / "interrupted"
    process = subprocess.Popen(cnnlab("train", config, "--out", source, "--quiet"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (source / "checkpoints" / "previous.pt").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = work / "reference"
    ckpt = Path("checkpoints")
    cases = {
        "last.pt torn (first 1000 bytes)": (source, lambda r: truncate(r / ckpt / "last.pt", 1000),
                                            ["train", "--resume"]),
        "last.pt empty": (source, lambda r: truncate(r / ckpt / "last.pt", 0),
                          ["train", "--resume"]),
        "last.pt and previous.pt torn": (source, lambda r: [truncate(r / ckpt / n, 1000)
                                                            for n in ("last.pt", "previous.pt")],
                                         ["train", "--resume"]),
        "last.pt without its rng key": (source, lambda r: without_rng(r / ckpt / "last.pt"),
                                        ["train", "--resume"]),
        "both without their rng key": (source, lambda r: [without_rng(r / ckpt / n)
                                                          for n in ("last.pt", "previous.pt")],
                                       ["train", "--resume"]),
        "model.safetensors torn": (finished, lambda r: truncate(r / "model.safetensors", 500),
                                   ["eval"]),
        "model.safetensors of another model": (finished, lambda r: shutil.copy(
            work / "other" / "model.safetensors", r / "model.safetensors"), ["eval"]),
    }
    other = copy.deepcopy(CONFIG)
    other["model"]["widths"] = [4, 8]
    other["train"]["epochs"] = 1
    (work / "other.yaml").write_text(yaml.safe_dump(other))
    subprocess.run(cnnlab("train", work / "other.yaml", "--out", work / "other", "--quiet"),
                   check=True, capture_output=True)
    rows = []
    for index, (case, (run, damage, command)) in enumerate(cases.items()):
        target = work / f"damaged{index}"
        shutil.copytree(run, target)
        damage(target)
        result = subprocess.run(cnnlab(*command, target, *(["--quiet"] if "train" in command
                                                           else [])),
                                capture_output=True, text=True)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        rows.append({"case": case, "command": " ".join(command), "exit": result.returncode,
                     "traceback": "Traceback" in result.stderr,
                     "message": lines[0][:150] if lines else "",
                     "kept_aside": sorted(p.name for p in (target / ckpt).glob("*.damaged*"))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--races", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnlab-campaign-"))
    config = work / "campaign.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    try:
        report = {"kill -9 and resume": kills(work, config, args.kills, random.Random(args.seed)),
                  "two runs into one folder": races(work, config, args.races),
                  "damaged checkpoints": damaged(work, config)}
        print(json.dumps(report, indent=2))
    finally:
        if args.keep:
            print(f"run folders kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
