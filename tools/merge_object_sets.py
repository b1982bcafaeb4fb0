"""Merge hand-object sets written by several `interhandgen data synth --objects` runs into one file.

Each run names its objects from 0 (``frustum_00003``), so the names of run k are prefixed with its seed tag; the
pairs, splits and object libraries are concatenated (interhandgen.data.format.concatenate).

    python tools/merge_object_sets.py --out data/obj.npz data/obj_s1000.npz data/obj_s1001.npz ...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from interhandgen.data.format import TwoHandSet, concatenate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    sets = []
    for f in args.files:
        s = TwoHandSet.load(f)
        if s.object_library is None:
            raise SystemExit(f"{f}: no object library")
        names = tuple(f"{Path(f).stem}_{n}" for n in s.object_library.names)
        lib = dataclasses.replace(s.object_library, names=names)
        sets.append(s._replace(object_library=lib, object_id=s.labels["object_id"][0], object_names=names))
    out = concatenate(sets)
    out.save(args.out)
    splits = {k: int((out.labels["split"][0] == i).sum()) for i, k in enumerate(out.labels["split"][1])}
    print(f"{len(args.files)} files, {len(out)} pairs, {len(out.object_library)} objects, splits {splits}")


if __name__ == "__main__":
    main()
