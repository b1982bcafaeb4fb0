"""Render docs/img/synth_categories.png: random samples of every synthetic interaction category.

    python docs/img/synth_grid.py [--per-category 4] [--seed 0]

The samples come from :func:`interhandgen.data.synth.generate_synthetic_set` with the random rotation of
the pair switched off, so that the active hand keeps the open hand's canonical orientation (fingers along -x,
palm facing -y) and the views are comparable; everything else is as in the shipped generator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-category", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--view-size", type=int, default=150)
    parser.add_argument("--out", default=str(Path(__file__).with_name("synth_categories.png")))
    args = parser.parse_args(argv)

    from interhandgen.data.synth import CATEGORY_NAMES, SynthConfig, generate_synthetic_set
    from interhandgen.viz.render import render

    k = args.per_category
    s = generate_synthetic_set(k * len(CATEGORY_NAMES), args.seed, batch_size=k, progress=False, workers=1,
                               config=SynthConfig(random_pair_rotation=False, pair_center_std=0.0))
    rows = []
    for c, name in enumerate(CATEGORY_NAMES):
        idx = np.flatnonzero(s.category == c)[:k]
        sub = s[idx]
        titles = [f"{name} ({rid.split('/')[1]} active)" for rid in sub.record_id]
        rows.append(render(sub, titles=titles, cols=k, views=("top", "front"), view_size=args.view_size))
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    from interhandgen.viz.render import save_png

    save_png(sheet, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
