"""The worked example's algorithm: units and amount sold per region, from every input.

It reads what Ocean gives an algorithm (each input at /data/inputs/<did>/0, the DIDs
in $DIDS) and writes one result, by_region.csv, to $OUTPUTS. Only the standard library.
"""

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

inputs = Path(os.environ.get("INPUTS", "/data/inputs"))
outputs = Path(os.environ.get("OUTPUTS", "/data/outputs"))
units: dict[str, int] = defaultdict(int)
amount: dict[str, float] = defaultdict(float)
for did in json.loads(os.environ.get("DIDS", "[]")):
    with (inputs / did / "0").open(newline="") as f:
        for row in csv.DictReader(f):
            units[row["region"]] += int(row["units"])
            amount[row["region"]] += float(row["amount"])

with (outputs / "by_region.csv").open("w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["region", "units", "amount"])
    for region in sorted(amount):
        out.writerow([region, units[region], f"{amount[region]:.2f}"])
        print(f"{region:<6} {units[region]:>5} units  {amount[region]:>9.2f}")
