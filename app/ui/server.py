"""``python app.py``: load the engine, build the UI, launch it (HTTP or HTTPS)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping, Sequence


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="python app.py", description="SpeechPrompt v2 demo (Gradio).")
    p.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for a classroom network)")
    p.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--ssl-certfile", default=env.get("SPEECHPROMPT_SSL_CERTFILE"),
                   help="certificate (PEM) to serve HTTPS")
    p.add_argument("--ssl-keyfile", default=env.get("SPEECHPROMPT_SSL_KEYFILE"), help="its private key (PEM)")
    p.add_argument("--backbone", default=None,
                   help="backbone folder (default: $SPEECHPROMPT_BACKBONE or assets/backbone)")
    p.add_argument("--prompts", default=None, help="folder of task prompts (default: prompts/)")
    args = p.parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        p.error("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for f in filter(None, (args.ssl_certfile, args.ssl_keyfile)):
        if not os.path.isfile(f):
            p.error(f"{f} does not exist")
    return args


def launch_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``demo.launch()`` gets: address, HTTPS (self-signed certificates allowed), theme, limits."""
    from . import launch_options

    kw: dict[str, Any] = {"server_name": args.host, "server_port": args.port, **launch_options()}
    if args.ssl_certfile:
        kw.update(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, ssl_verify=False)
    return kw


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ..backbone import BackboneError
    from ..engine import Engine
    from . import build_ui, tempdir
    from ..settings import serving_threads

    torch.set_num_threads(serving_threads())  # the cores shared out between the concurrent workers
    root = tempdir.claim()  # uploads and visitor folders of this server only, removed when it stops
    tempdir.stop_on_signals(root)
    try:
        try:
            engine = Engine.load(args.backbone, args.prompts)
        except BackboneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for name, why in engine.skipped.items():
            print(f"warning: skipped prompt {name}: {why}", file=sys.stderr)
        build_ui(engine).launch(**launch_kwargs(args))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        tempdir.release(root)
