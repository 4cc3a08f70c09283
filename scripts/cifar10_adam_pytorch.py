#!/usr/bin/env python3
"""Report 001's CIFAR-10 dropout model (its Table 5) as Keras builds it, trained in PyTorch.

A check of this project's figures against a second implementation, not part of the build:
it answers whether a configuration's outcome comes from the configuration as the report
states it or from this project's code. Usage:

    python3 scripts/cifar10_adam_pytorch.py LEARNING_RATE SEED EPOCHS [--keras-clip]

It needs torch, numpy and (for the JPEG mirror) pillow: `pip install torch numpy pillow`.
Data: `datasets/cifar10/cifar-10-batches-bin` (the official binary batches) when present,
else the JPEG mirror `datasets/cifar10/cifar10-jpeg` (`cargo run --release --bin datasets
-- fetch`). The model and training follow the study file `experiments/cifar10.toml`: raw
0-255 pixels into BatchNormalization (Keras' epsilon 1e-3 and momentum 0.99), three 3x3
same-padded ReLU convolutions of 32, 64 and 128 filters each followed by a 2x2 max pool,
Dropout(0.5) after the first, Dense(256, ReLU), Dropout(0.5), Dense(128, ReLU), Dense(10,
softmax); Glorot-uniform weights, zero biases; Adam (Keras' epsilon 1e-7), batch 128,
shuffled each epoch; 2 threads. `--keras-clip` computes the loss as Keras 2's backend does
for a softmax output (probabilities clipped to [1e-7, 1 - 1e-7], no gradient where
clipped) instead of from the logits. Prints one line per epoch.
"""
import argparse
import os
import time

import numpy as np
import torch
from torch import nn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "cifar10")


def load_binary(folder):
    def read(names):
        raw = np.concatenate([np.fromfile(os.path.join(folder, n), np.uint8) for n in names])
        raw = raw.reshape(-1, 3073)
        return raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32), raw[:, 0].astype(np.int64)

    train = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    return train, read(["test_batch.bin"])


def load_jpeg(folder):
    from PIL import Image

    classes = sorted(os.listdir(os.path.join(folder, "train")))

    def read(part):
        xs, ys = [], []
        for label, name in enumerate(classes):
            directory = os.path.join(folder, part, name)
            for file in sorted(os.listdir(directory)):
                xs.append(np.asarray(Image.open(os.path.join(directory, file)).convert("RGB")))
                ys.append(label)
        return np.stack(xs).astype(np.float32).transpose(0, 3, 1, 2), np.array(ys)

    return read("train"), read("test")


def load():
    binary = os.path.join(ROOT, "cifar-10-batches-bin")
    if os.path.isdir(binary):
        return load_binary(binary)
    return load_jpeg(os.path.join(ROOT, "cifar10-jpeg"))


def glorot(layer):
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def model():
    def conv(i, o):
        return glorot(nn.Conv2d(i, o, 3, padding=1))

    return nn.Sequential(
        nn.BatchNorm2d(3, eps=1e-3, momentum=0.01),
        conv(3, 32), nn.ReLU(), nn.Dropout(0.5), nn.MaxPool2d(2),
        conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
        conv(64, 128), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        glorot(nn.Linear(2048, 256)), nn.ReLU(), nn.Dropout(0.5),
        glorot(nn.Linear(256, 128)), nn.ReLU(),
        glorot(nn.Linear(128, 10)),
    )


def loss_of(logits, y, keras_clip):
    if not keras_clip:
        return nn.functional.cross_entropy(logits, y)
    p = torch.softmax(logits, 1).clamp(1e-7, 1 - 1e-7)
    return -torch.log(p.gather(1, y[:, None])).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("learning_rate", type=float)
    parser.add_argument("seed", type=int)
    parser.add_argument("epochs", type=int)
    parser.add_argument("--keras-clip", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    (x_train, y_train), (x_test, y_test) = [tuple(map(torch.from_numpy, p)) for p in load()]
    torch.manual_seed(args.seed)
    net = model()
    adam = torch.optim.Adam(net.parameters(), lr=args.learning_rate, eps=1e-7)
    for epoch in range(1, args.epochs + 1):
        net.train()
        start, total, correct = time.time(), 0.0, 0
        order = torch.randperm(len(y_train))
        for first in range(0, len(order), 128):
            batch = order[first:first + 128]
            logits = net(x_train[batch])
            loss = loss_of(logits, y_train[batch], args.keras_clip)
            adam.zero_grad()
            loss.backward()
            adam.step()
            total += loss.item() * len(batch)
            correct += (logits.argmax(1) == y_train[batch]).sum().item()
        net.eval()
        with torch.no_grad():
            right = sum(
                (net(x_test[i:i + 500]).argmax(1) == y_test[i:i + 500]).sum().item()
                for i in range(0, len(y_test), 500)
            )
        print(
            f"learning_rate {args.learning_rate} seed {args.seed} keras_clip {int(args.keras_clip)} "
            f"epoch {epoch}: loss {total / len(order):.4f} accuracy {correct / len(order):.4f} "
            f"test_accuracy {right / len(y_test):.4f} ({time.time() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
