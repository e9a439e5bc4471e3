"""Write a sample audience: `python examples/audience.py OUT.csv N [--bad 0.001] [--seed 1]`.

Spanish mobile numbers in mixed shapes (+34..., 0034..., 6xx xx xx xx), first names,
amounts, a few accented or non-GSM names, and, with --bad, some rows that must be rejected
(invalid numbers, a missing field).
"""

from __future__ import annotations

import argparse
import csv
import random

NAMES = ["ana", "luis", "marta", "jorge", "lucía", "pablo", "sofía", "javier", "elena", "diego", "noa", "iñaki",
         "zoë", "joão", "chloé", "ana maría", "josé luis", "李", "olga", "ömer"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("n", type=int)
    p.add_argument("--bad", type=float, default=0.0, help="fraction of rows that must be rejected")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    shapes = ["+34{}", "0034{}", "{}", "+34 {} "]
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "phone", "name", "amount"])
        for i in range(1, a.n + 1):
            number = f"6{i % 100_000_000:08d}"
            phone = rnd.choice(shapes).format(number)
            name = rnd.choice(NAMES)
            amount = f"{rnd.randint(1, 250_000) / 100:.2f}"
            if a.bad and rnd.random() < a.bad:
                if rnd.random() < 0.5:
                    phone = rnd.choice(["12345", "+34 5", "not a number"])
                else:
                    w.writerow([f"c{i}", phone])  # a row with missing fields
                    continue
            w.writerow([f"c{i}", phone, name, amount])


if __name__ == "__main__":
    main()
