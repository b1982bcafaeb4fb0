"""`interhandgen view`: an interactive 3D viewer in the browser, or a standalone HTML page (--export)."""

from __future__ import annotations

import argparse

from interhandgen.cli._args import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "view",
        help="interactive 3D viewer of two-hand samples in the browser (or --export a standalone page)",
        description=(
            "Serve a local web viewer of a TwoHandSet .npz (viser): browse the samples, turn and zoom them, "
            "see each sample's category, seed, penetration volume, minimum distance and contact, with the regions "
            "of a hand inside the other in red; compare with the nearest pair of --reference; draw new samples "
            "or a new partner for a hand with the model. Open the printed address in a browser (over SSH: "
            "ssh -L PORT:localhost:PORT host). With --export, write a standalone HTML page instead (no server, "
            "no network needed to open it)."
        ),
    )
    p.add_argument("samples", help="TwoHandSet .npz (from sample, complete, data synth or data convert)")
    p.add_argument("--reference", default=None,
                   help="a second .npz; each shown sample is drawn beside (or over) its nearest reference pair")
    p.add_argument("--port", type=int, default=8080, help="local port of the web viewer (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for the network)")
    p.add_argument("--checkpoint", default=None,
                   help="model for live generation: a run folder, checkpoint.pt or model.safetensors "
                        "(default: the bundled model)")
    p.add_argument("--device", default="cpu", help="where the model runs (default %(default)s)")
    p.add_argument("--no-generate", action="store_true", help="hide the Generate panel (no model is loaded)")
    p.add_argument("--export", default=None, metavar="PAGE.html",
                   help="write a standalone HTML page of the samples instead of serving")
    p.add_argument("--export-num", type=positive_int, default=None,
                   help="samples in the exported page: the first N (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from interhandgen.data.format import TwoHandSet
    from interhandgen.exceptions import InputError
    from interhandgen.viewer.source import SampleSource

    from interhandgen.io_guard import Out, check_outputs

    # Before any work: the page path is writable, has the page suffix and is none of the inputs.
    check_outputs({"--export": Out(args.export, (".html", ".htm"))},
                  {"samples": args.samples, "--reference": args.reference, "--checkpoint": args.checkpoint})
    samples = SampleSource(TwoHandSet.load(args.samples), name=Path(args.samples).name)
    if args.export:
        from interhandgen.viewer.export import DEFAULT_EXPORT_SAMPLES, export_html

        for flag, value in (("--reference", args.reference), ("--checkpoint", args.checkpoint)):
            if value is not None:
                raise InputError(f"{flag} is not used with --export (the page shows the samples only)")
        num = DEFAULT_EXPORT_SAMPLES if args.export_num is None else args.export_num
        out = export_html(samples, args.export, num=num)
        print(f"wrote {out}: {min(num, len(samples))} of {len(samples)} samples, {out.stat().st_size / 1e6:.1f} MB")
        return 0
    if args.export_num is not None:
        raise InputError("--export-num is used only with --export")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in [0, 65535], got {args.port}")
    from interhandgen.viewer.server import ViewerApp

    reference = None if args.reference is None else SampleSource(TwoHandSet.load(args.reference),
                                                                 name=Path(args.reference).name)
    generator = None
    if not args.no_generate:
        from interhandgen.viewer.generation import LiveGenerator

        generator = LiveGenerator(args.checkpoint, device=args.device)
    app = ViewerApp(samples, reference=reference, generator=generator, host=args.host, port=args.port)
    print(f"interhandgen view: http://{args.host}:{app.port} (Ctrl+C to stop)", flush=True)
    try:
        app.server.sleep_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
