#!/usr/bin/env python3
"""PyTorch peer of `cargo run --release -p experiments --bin bench`.

Builds the same models from experiments/bench.toml (the project's layer text), trains them
the same way (Adam 0.001, cross-entropy, the report's batch size, random data of the same
shape, a shuffled pass per run) and runs inference one batch at a time, timing the median
samples/s of several runs after a warm-up. Prints a table and writes JSON lines that the
Rust benchmark reads with --pytorch, so both can be run side by side on one machine
(`bench --peer` runs it itself, model by model and phase by phase, interleaved with its own
runs, in a virtual environment it creates when PyTorch is missing):

    pip install torch            # a benchmark peer, never a dependency of the project
    python3 scripts/bench_pytorch.py --out out/bench/pytorch.jsonl
    cargo run --release -p experiments --bin bench -- --pytorch out/bench/pytorch.jsonl

--device cuda times a GPU (beside `--features wgpu` on the Rust side).
"""

import argparse
import json
import math
import re
import resource
import statistics
import sys
import time
import tomllib
from pathlib import Path

import torch
from torch import nn


def split_layers(text):
    """Layers separated by newlines, ';', '->' or ',' outside parentheses."""
    layers, depth, cur = [], 0, ""
    text = text.replace("->", ";")
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and ch in ";,\n":
            if cur.strip():
                layers.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        layers.append(cur.strip())
    return layers


def parse_layer(text):
    m = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", text.strip())
    if not m:
        raise ValueError(f"cannot read layer {text!r}")
    return m.group(1).lower(), [a.strip() for a in (m.group(2) or "").split(",") if a.strip()]


def pair(text):
    parts = text.lower().split("x")
    return (int(parts[0]), int(parts[-1]))


def same_padding(size, kernel, stride):
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class Pad(nn.Module):
    """TensorFlow's 'same' padding (any odd pixel at the bottom and right)."""

    def __init__(self, pads, value=0.0):
        super().__init__()
        self.pads, self.value = pads, value

    def forward(self, x):
        return nn.functional.pad(x, self.pads, value=self.value)


def build(layers_text, input_shape):
    """An nn.Sequential for the project's layer text on items of (C, H, W)."""
    c, h, w = input_shape
    flat = None
    modules = []
    for text in split_layers(layers_text):
        name, args = parse_layer(text)
        if name == "conv":
            filters, kernel = int(args[0]), pair(args[1])
            stride, padding, act = (1, 1), "valid", None
            for a in args[2:]:
                if a.startswith("stride"):
                    stride = pair(a.split()[1])
                elif a in ("same", "valid"):
                    padding = a
                else:
                    act = a
            if padding == "same":
                ph, pw = same_padding(h, kernel[0], stride[0]), same_padding(w, kernel[1], stride[1])
                modules.append(Pad((pw[0], pw[1], ph[0], ph[1])))
                h, w = math.ceil(h / stride[0]), math.ceil(w / stride[1])
            else:
                h, w = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
            modules.append(nn.Conv2d(c, filters, kernel, stride))
            c = filters
            if act:
                modules.append(ACTIVATIONS[act]())
        elif name in ("maxpool", "avgpool"):
            size = pair(args[0])
            stride, padding = size, "valid"
            for a in args[1:]:
                if a.startswith("stride"):
                    stride = pair(a.split()[1])
                elif a in ("same", "valid"):
                    padding = a
            if padding == "same":
                ph, pw = same_padding(h, size[0], stride[0]), same_padding(w, size[1], stride[1])
                modules.append(Pad((pw[0], pw[1], ph[0], ph[1]), -math.inf if name == "maxpool" else 0.0))
                h, w = math.ceil(h / stride[0]), math.ceil(w / stride[1])
            else:
                h, w = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
            pool = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
            modules.append(pool(size, stride))
        elif name == "batchnorm":
            modules.append(nn.BatchNorm1d(flat, eps=1e-3, momentum=0.01) if flat else nn.BatchNorm2d(c, eps=1e-3, momentum=0.01))
        elif name == "dropout":
            modules.append(nn.Dropout(float(args[0])))
        elif name == "flatten":
            modules.append(nn.Flatten())
            flat = c * h * w
        elif name == "dense":
            units = int(args[0])
            modules.append(nn.Linear(flat, units))
            flat = units
            # softmax folds into the cross-entropy loss, as in the Rust trainer
            if len(args) > 1 and args[1] in ACTIVATIONS:
                modules.append(ACTIVATIONS[args[1]]())
        elif name in ACTIVATIONS:
            modules.append(ACTIVATIONS[name]())
        else:
            raise ValueError(f"layer {text!r} is not supported here")
    return nn.Sequential(*modules)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_run(model, optimizer, x, y, batch, device):
    """One shuffled pass over (x, y); returns seconds."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    sync(device)
    start = time.perf_counter()
    order = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch):
        idx = order[i : i + batch]
        xb, yb = x[idx].to(device), y[idx].to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
    loss.item()
    sync(device)
    return time.perf_counter() - start


def infer_runs(model, x, steps, runs, device):
    model.eval()
    out = []
    with torch.inference_mode():
        for _ in range(runs):
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                torch.softmax(model(x.to(device)), dim=1).cpu()
            sync(device)
            out.append(steps * x.shape[0] / (time.perf_counter() - start))
    return out


def main():
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=root / "experiments" / "bench.toml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help="models whose name contains this text")
    p.add_argument("--model", default=None, help="the model of exactly this name")
    p.add_argument("--phase", choices=["train", "inference", "both"], default="both")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--out", default="out/bench/pytorch.jsonl")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    models = tomllib.loads(Path(a.config).read_text())["model"]
    lines = []
    for m in models:
        if a.only and a.only.lower() not in m["name"].lower():
            continue
        if a.model and a.model != m["name"]:
            continue
        shape, batch = tuple(m["input"]), m["batch_size"]
        model = build(m["layers"], shape).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
        warm_x = torch.rand(2 * batch, *shape)
        warm_y = torch.randint(0, 10, (2 * batch,))
        train_run(model, opt, warm_x, warm_y, batch, device)
        per_step = train_run(model, opt, warm_x, warm_y, batch, device) / 2
        steps = max(2, min(500, round(a.seconds / per_step)))
        x = torch.rand(steps * batch, *shape)
        y = torch.randint(0, 10, (steps * batch,))
        phases = []
        if a.phase in ("train", "both"):
            train = [steps * batch / train_run(model, opt, x, y, batch, device) for _ in range(a.runs)]
            phases.append(("train", train))
        if a.phase in ("inference", "both"):
            xb = torch.rand(batch, *shape)
            infer_runs(model, xb, 2, 1, device)
            t = infer_runs(model, xb, 1, 1, device)[0]
            steps = max(2, min(5000, round(a.seconds * t / batch)))
            phases.append(("inference", infer_runs(model, xb, steps, a.runs, device)))
        for phase, runs in phases:
            line = {
                "backend": f"pytorch {torch.__version__} ({device}, {torch.get_num_threads()} threads)",
                "model": m["name"],
                "phase": phase,
                "batch_size": batch,
                "samples_per_s": statistics.median(runs),
                "runs": runs,
                # The process's peak resident memory so far (Linux reports KiB).
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            lines.append(line)
            print(f"{line['backend']} | {m['name']} | {phase} | {batch} | {line['samples_per_s']:.1f} samples/s", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("".join(json.dumps(l) + "\n" for l in lines))
    print(f"written to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
