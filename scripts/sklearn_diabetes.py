#!/usr/bin/env python3
"""scikit-learn's MLPRegressor on exactly the split and grid of `--bin diabetes`.

Usage (after `cargo run --release -p experiments --bin diabetes`, which writes split.json):

    pip install scikit-learn
    python3 scripts/sklearn_diabetes.py [--split out/diabetes/split.json] [--jobs 2]

Reads datasets/diabetes/diabetes.tab.txt and experiments/diabetes.toml's grid, trains
every configuration with SGD + momentum (inputs and targets standardised on the training
part, as the project does), and prints the best configurations' test R² and MSE in the
target's units, plus scikit-learn's default MLPRegressor (Adam) for reference, as TOML
lines for experiments/diabetes.toml's [[baselines]].
"""
import argparse
import itertools
import json
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent


def model(params, seed):
    mlp = MLPRegressor(
        hidden_layer_sizes=tuple(params["hidden_layer"]),
        activation=params["activation"],
        solver="sgd",
        learning_rate_init=params["eta"],
        momentum=params["mu"],
        nesterovs_momentum=False,
        alpha=params["alpha"],
        batch_size=params["batch_size"],
        max_iter=params["epoch"],
        n_iter_no_change=params["epoch"],  # fixed epochs, as the project trains
        tol=0.0,
        random_state=seed,
    )
    return TransformedTargetRegressor(
        regressor=make_pipeline(StandardScaler(), mlp), transformer=StandardScaler()
    )


def fit_score(estimator, x_train, y_train, x_test, y_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x_train, y_train)
    predicted = estimator.predict(x_test)
    if not np.all(np.isfinite(predicted)):
        return float("nan"), float("nan")
    return r2_score(y_test, predicted), mean_squared_error(y_test, predicted)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default=str(ROOT / "out/diabetes/split.json"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = np.loadtxt(ROOT / "datasets/diabetes/diabetes.tab.txt", skiprows=1)
    x, y = table[:, :-1], table[:, -1]
    split = json.loads(Path(args.split).read_text())
    train, test = np.array(split["train"]), np.array(split["test"])
    grid = tomllib.loads((ROOT / "experiments/diabetes.toml").read_text())["grid"]
    names = list(grid)
    configs = [dict(zip(names, values)) for values in itertools.product(*grid.values())]

    start = time.time()
    scores = Parallel(n_jobs=args.jobs)(
        delayed(fit_score)(model(c, args.seed), x[train], y[train], x[test], y[test])
        for c in configs
    )
    seconds = time.time() - start
    ranked = sorted(
        zip(configs, scores), key=lambda cs: (-np.nan_to_num(cs[1][0], nan=-1e9), cs[1][1])
    )
    print(f"# {len(configs)} configurations in {seconds:.1f} s on {args.jobs} job(s), "
          f"{len(train)} train / {len(test)} test")
    for c, (r2, mse) in ranked[:5]:
        print(f"# {c}: test R2 {r2:.4f}, MSE {mse:.1f}")
    best, (r2, mse) = ranked[0]
    print("[[baselines]]")
    print(f'tool = "scikit-learn MLPRegressor (SGD), best of the same grid: {best}"')
    print(f"test_r2 = {r2:.4f}\ntest_mse = {mse:.1f}")
    default = TransformedTargetRegressor(
        regressor=make_pipeline(StandardScaler(), MLPRegressor(max_iter=1000, random_state=args.seed)),
        transformer=StandardScaler(),
    )
    r2, mse = fit_score(default, x[train], y[train], x[test], y[test])
    print("[[baselines]]")
    print('tool = "scikit-learn MLPRegressor() defaults (Adam, (100,), max_iter 1000)"')
    print(f"test_r2 = {r2:.4f}\ntest_mse = {mse:.1f}")


if __name__ == "__main__":
    main()
