"""CPU time of object-conditioned sampling, settings measured in turn in ONE process (the issue's budget: 1,000
samples with guidance in <= 60 s on the 2-core CPU).

Each repeat samples ``--num`` pairs around the placements of a reference set (sample i: placement i mod S) once with
every setting, in the order given, so that the settings share the process, its caches and the machine's load;
CPU seconds of the process (``time.process_time``) and wall seconds are recorded per run, with the ratio of each
setting's CPU time to the first's in the same repeat. Run it with nothing else on the machine and ``--threads 1``
(torch's default threads can be many times slower on a busy CPU). Before each repeat a fixed workload shaped like the
sampler's plane search is timed (``reference_cpu_seconds``); ``cpu_per_reference`` compares runs of different hours,
as the shared machine's speed varies by a third over a day.

    python benchmarks/object_sampling_time.py --reference obj_s1005.npz --num 1000 --threads 1 --repeats 2 \\
        --settings "default;three_rounds=redraw_rounds=3" --out benchmarks/results/object_sampling_time.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.generation.object_sampling import ObjectSettings

_spec = importlib.util.spec_from_file_location("variant_overrides", Path(__file__).with_name("variant_overrides.py"))
overrides_of = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(overrides_of)


def parse_settings(text: str) -> list[tuple[str, ObjectSettings]]:
    """'label[=field=value,...];...' -> [(label, ObjectSettings)]; a bare label is the defaults (the fields parsed as
    in benchmarks/object_sampling.py's --variants: :func:`variant_overrides.field_overrides`)."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        label, _, rest = item.partition("=")
        settings = ObjectSettings(**overrides_of.field_overrides(ObjectSettings, rest, f"--settings {item!r}")[0])
        settings.validate()
        out.append((label, settings))
    if not out:
        raise SystemExit("--settings: give at least one setting")
    return out


def reference_cpu_seconds(rounds: int = 40) -> float:
    """CPU seconds of a fixed workload shaped like the sampler's main cost (the plane search's batched products of
    hand points with surface samples, and their reductions), on fixed inputs: recorded beside every run so that
    timings from different hours of this shared machine, whose speed varies, can be compared by their ratio to it."""
    gen = torch.Generator().manual_seed(0)
    P, Q = torch.randn(32, 512, 3, generator=gen), torch.randn(32, 3, 1024, generator=gen)
    qq = torch.randn(32, 1, 1024, generator=gen)
    start = time.process_time()
    for _ in range(rounds):
        d2 = torch.baddbmm(qq, P, Q, alpha=-2.0)
        d2.amin(dim=2)
        d2.clamp_min_(0.0).argmax(dim=2)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with objects (its placements are used)")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", default="default", help="'label[=field=value,...];...' (ObjectSettings fields)")
    ap.add_argument("--sampler", default="",
                    help="KEY=VALUE,... SamplerSettings fields over the object sampler's defaults (e.g. temperature=1)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    settings = parse_settings(a.settings)
    scene = ObjectScene.of(TwoHandSet.load(a.reference))
    gen = ObjectInterHandGen.load(a.model)
    sampler = overrides_of.replaced(object_sampler_defaults(), a.sampler, "--sampler")
    runs = []
    for repeat in range(a.repeats):
        first = None
        reference = reference_cpu_seconds()
        for label, og in settings:
            wall, cpu = time.perf_counter(), time.process_time()
            gen.sample(a.num, scene, seed=a.seed, settings=sampler, object_settings=og,
                       progress=False)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            first = cpu if first is None else first
            runs.append({"repeat": repeat, "setting": label, "cpu_seconds": cpu, "wall_seconds": wall,
                         "cpu_ratio_to_first": cpu / first, "reference_cpu_seconds": reference,
                         "cpu_per_reference": cpu / reference})
            print(f"repeat {repeat} {label}: {cpu:.1f} s CPU, {wall:.1f} s wall (reference workload {reference:.2f} s: "
                  f"{cpu / reference:.1f}x)", flush=True)
    result = {"command": " ".join(sys.argv), "num": a.num, "seed": a.seed, "threads": a.threads,
              "sampler": dataclasses.asdict(sampler),
              "settings": {label: dataclasses.asdict(og) for label, og in settings}, "runs": runs,
              "load_average_end": os.getloadavg(), "machine": platform.processor() or platform.machine(),
              # the SIMD kernels torch dispatches to: machines of this project differ in them (AVX512 / AVX2)
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    atomic_write_bytes(a.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
