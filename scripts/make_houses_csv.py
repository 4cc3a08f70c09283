#!/usr/bin/env python3
"""Writes datasets/examples/houses.csv: 600 made-up house sales (standard library only, seeded,
so every run writes the same bytes). A table of the kind users bring: a header, a text column
(district), a yes/no column (garden), a few missing values (year_built is "NA" in 3 % of rows)
and a price in thousands that depends on all of them, with noise.

    python3 scripts/make_houses_csv.py
"""

import random
from pathlib import Path

DISTRICTS = {"centre": 1.45, "north": 1.1, "south": 1.0, "east": 0.9, "west": 1.2}


def main():
    rng = random.Random(0)
    rows = ["district,rooms,area_m2,year_built,distance_km,garden,price_k"]
    for _ in range(600):
        district = rng.choice(list(DISTRICTS))
        rooms = rng.randint(1, 6)
        area = round(25 + rooms * 18 + rng.gauss(0, 12), 1)
        year = rng.randint(1900, 2023)
        distance = round(abs(rng.gauss(6 if district != "centre" else 1.5, 3)), 2)
        garden = "yes" if rng.random() < (0.2 if district == "centre" else 0.55) else "no"
        age_factor = 1.0 - 0.0015 * (2023 - year) + (0.12 if year < 1930 else 0.0)
        price = DISTRICTS[district] * (2.1 * area + 9 * rooms) * age_factor
        price *= 1.0 - 0.02 * distance
        price += 25 if garden == "yes" else 0
        price = round(price * (1 + rng.gauss(0, 0.05)), 1)
        year_text = "NA" if rng.random() < 0.03 else str(year)
        rows.append(f"{district},{rooms},{area},{year_text},{distance},{garden},{price}")
    out = Path(__file__).resolve().parent.parent / "datasets" / "examples" / "houses.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    print(f"wrote {out} ({len(rows) - 1} rows)")


if __name__ == "__main__":
    main()
