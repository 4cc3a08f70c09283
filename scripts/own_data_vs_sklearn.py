#!/usr/bin/env python3
"""`train` with its defaults beside scikit-learn's MLPClassifier / MLPRegressor after a
StandardScaler, on the same train/test CSV files, built from three tabular datasets the
repository already has: iris (classification, 150 rows), statlog satimage (classification,
its official 4435/2000 split), diabetes (regression, 442 rows) and the made-up house sales of
datasets/examples/houses.csv (regression with two text columns and missing values: ours gets
`--impute median`, scikit-learn a ColumnTransformer of OneHotEncoder for the text columns and
SimpleImputer(median) before the StandardScaler for the numbers). Each side runs with the
same seeds; the table prints the mean test score and its spread.

    out/torch-venv/bin/python scripts/own_data_vs_sklearn.py [--seeds 3] [--train target/release/train]

Neither side is tuned: ours is `train --data train.csv --test test.csv --seed S`;
scikit-learn's is `make_pipeline(StandardScaler(), MLPClassifier(random_state=S))` (or
MLPRegressor), as its documentation starts, and again with max_iter=2000, since its default
200 iterations stop before convergence on these sets.
"""

import argparse
import csv
import re
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent


def read_rows(path, sep):
    with open(path) as f:
        return [line.strip().split(sep) if sep else line.split() for line in f if line.strip()]


def datasets(data_dir):
    """(name, task, header, train rows, test rows, our extra flags): rows end with the
    target."""
    iris = read_rows(data_dir / "iris" / "iris.data", ",")
    labels = [r[-1] for r in iris]
    tr, te = train_test_split(iris, test_size=0.2, stratify=labels, random_state=0)
    yield "iris", "classification", ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"], tr, te, []
    sat = data_dir / "statlog-satimage"
    header = [f"b{i}" for i in range(36)] + ["class"]
    yield "statlog", "classification", header, read_rows(sat / "sat.trn", None), read_rows(sat / "sat.tst", None), []
    diabetes = read_rows(data_dir / "diabetes" / "diabetes.tab.txt", "\t")
    header, rows = diabetes[0], diabetes[1:]
    tr, te = train_test_split(rows, test_size=0.2, random_state=0)
    yield "diabetes", "regression", header, tr, te, []
    houses = read_rows(data_dir / "examples" / "houses.csv", ",")
    header, rows = houses[0], houses[1:]
    tr, te = train_test_split(rows, test_size=0.2, random_state=0)
    yield "houses", "regression", header, tr, te, ["--impute", "median"]


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def ours(train_bin, folder, seed, extra):
    out = subprocess.run(
        [str(train_bin), "--data", str(folder / "train.csv"), "--test", str(folder / "test.csv"),
         "--seed", str(seed), "--out", str(folder / f"ours-seed-{seed}")] + extra,
        capture_output=True, text=True, env={"BURN_DEVICE": "cpu", "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        sys.exit(f"train failed on {folder}: {out.stderr}")
    m = re.search(r"test (accuracy|R²) (-?[0-9.]+)", out.stdout)
    return float(m.group(2))


def number(v):
    try:
        return float(v)
    except ValueError:
        return v


def features(rows):
    """Numbers as floats ("NA" as NaN), text as it is."""
    return [[float("nan") if v == "NA" else number(v) for v in r[:-1]] for r in rows]


def preprocessing(train):
    """StandardScaler for all-number columns (after a median imputer where values are
    missing), OneHotEncoder for text columns."""
    x = features(train)
    text = [j for j in range(len(x[0])) if any(isinstance(r[j], str) for r in x)]
    numbers = [j for j in range(len(x[0])) if j not in text]
    if not text:
        return StandardScaler()
    return ColumnTransformer([
        ("text", OneHotEncoder(), text),
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
    ])


def sklearn(task, train, test, seed, max_iter):
    x, xt = features(train), features(test)
    if task == "classification":
        y, yt = [r[-1] for r in train], [r[-1] for r in test]
        model = MLPClassifier(random_state=seed, max_iter=max_iter)
    else:
        y, yt = [float(r[-1]) for r in train], [float(r[-1]) for r in test]
        model = MLPRegressor(random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(preprocessing(train), model).fit(x, y)
    return pipe.score(xt, yt)


def summary(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {spread:.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", default=str(ROOT / "target" / "release" / "train"))
    parser.add_argument("--data-dir", default=str(ROOT / "datasets"))
    parser.add_argument("--out", default=str(ROOT / "out" / "own-data"))
    args = parser.parse_args()
    seeds = range(args.seeds)
    print("| data | task | train / test rows | score | ours (`train` defaults) "
          "| scikit-learn defaults | scikit-learn, max_iter=2000 |")
    print("|---|---|---|---|---|---|---|")
    for name, task, header, train, test, extra in datasets(Path(args.data_dir)):
        folder = Path(args.out) / name
        write_csv(folder / "train.csv", header, train)
        write_csv(folder / "test.csv", header, test)
        score = "accuracy" if task == "classification" else "R²"
        mine = [ours(args.train, folder, s, extra) for s in seeds]
        plain = [sklearn(task, train, test, s, 200) for s in seeds]
        longer = [sklearn(task, train, test, s, 2000) for s in seeds]
        print(f"| {name} | {task} | {len(train)} / {len(test)} | test {score} | {summary(mine)} "
              f"| {summary(plain)} | {summary(longer)} |", flush=True)
    print(f"\n{args.seeds} seeds each (mean ± standard deviation); the CSV files are in {args.out}/")


if __name__ == "__main__":
    main()
