#!/usr/bin/env python3
"""scikit-learn peer of report 001's iris grid (`iris_grid_bench --peer` runs it).

The 540 configurations of experiments/iris.toml's [grid] as MLPClassifiers on a stratified
80/20 split of datasets/iris/iris.data, inputs standardised: SGD with the grid's learning
rate (eta), momentum (mu, classical), L2 (alpha), batch size and epochs (max_iter, no early
stop and no tolerance stop, so every trial runs all its epochs); joblib on --jobs cores.
scikit-learn has no leaky ReLU: those trials use ReLU (same cost). Prints one JSON line:
wall seconds for the whole grid, trials, and the best test accuracy.

    python3 scripts/sklearn_iris.py --jobs 2
"""

import argparse
import itertools
import json
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

ACTIVATIONS = {"tanh": "tanh", "relu": "relu", "sigmoid": "logistic"}


def load(root):
    rows = [
        line.strip().split(",")
        for line in (root / "datasets" / "iris" / "iris.data").read_text().splitlines()
        if line.strip()
    ]
    x = np.array([[float(v) for v in r[:4]] for r in rows])
    y = np.array([r[4] for r in rows])
    return x, y


def trials(grid):
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        yield dict(zip(names, values))


def fit_one(params, x_train, y_train, x_test, y_test):
    warnings.simplefilter("ignore", ConvergenceWarning)
    activation = params["activation"].split("(")[0].lower()
    model = MLPClassifier(
        hidden_layer_sizes=tuple(params["hidden_layer"]),
        activation=ACTIVATIONS.get(activation, "relu"),
        solver="sgd",
        learning_rate_init=params["eta"],
        momentum=params["mu"],
        nesterovs_momentum=False,
        alpha=params["alpha"],
        batch_size=params["batch_size"],
        max_iter=params["epoch"],
        n_iter_no_change=params["epoch"] + 1,
        tol=0.0,
        random_state=0,
    )
    model.fit(x_train, y_train)
    return model.score(x_test, y_test)


def main():
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N trials")
    a = p.parse_args()
    grid = tomllib.loads((root / "experiments" / "iris.toml").read_text())["grid"]
    x, y = load(root)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    configs = list(trials(grid))[: a.limit]
    start = time.perf_counter()
    scores = Parallel(n_jobs=a.jobs)(
        delayed(fit_one)(c, x_train, y_train, x_test, y_test) for c in configs
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "trials": len(configs), "best_test": max(scores)}))
    print(f"scikit-learn: {len(configs)} trials in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
