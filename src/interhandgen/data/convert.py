"""One entry point for the real-data loaders (what ``interhandgen data convert`` runs)."""

from __future__ import annotations

from pathlib import Path

from interhandgen.data.arctic import load_arctic_sequences
from interhandgen.data._records import BadRecordError, LoadSummary
from interhandgen.data.interhand import load_intaghand_anno, load_interhand_mano_json
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError

__all__ = ["FORMATS", "load_real_data", "convert", "BadRecordError", "LoadSummary"]

#: format name -> (loader description, accepted input)
FORMATS = {
    "interhand-json": "InterHand2.6M_{split}_MANO_NeuralAnnot.json (a file)",
    "intaghand": "IntagHand preprocessed annotations: a .pkl, an anno/ folder, a split folder or the root with train/val/test",
    "arctic": "ARCTIC raw_seqs/ (or a subject folder, or one <seq>.mano.npy) with the matching <seq>.object.npy",
}


def load_real_data(fmt: str, path: str | Path, *, mano_dir: str | Path | None = None, skip_bad: bool = False,
                   progress: bool = False, **options) -> tuple[TwoHandSet, LoadSummary]:
    """Load a licensed data set in format ``fmt`` (see :data:`FORMATS`) as (TwoHandSet, LoadSummary)."""
    loaders = {"interhand-json": load_interhand_mano_json, "intaghand": load_intaghand_anno,
               "arctic": load_arctic_sequences}
    if fmt not in loaders:
        raise InputError(f"unknown data format {fmt!r}; expected one of {sorted(FORMATS)}")
    loader = loaders[fmt]
    return loader(path, mano_dir=mano_dir, skip_bad=skip_bad, progress=progress, **options)


def convert(fmt: str, path: str | Path, out: str | Path, **kw) -> tuple[TwoHandSet, LoadSummary]:
    """Load with :func:`load_real_data` and save the set to ``out`` (.npz, atomic)."""
    two_hands, summary = load_real_data(fmt, path, **kw)
    if len(two_hands) == 0:
        raise InputError(f"{path}: no sample kept; nothing written.\n{summary}")
    two_hands.save(out)
    return two_hands, summary
