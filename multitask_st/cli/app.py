"""Serve a trained multitask-st model in the browser: classify with every head, compare sentences, search a corpus.

    multitask-st app                         # the model `multitask-st train` / `make demo` saves (outputs/multitask-st)
    multitask-st app path/to/model           # any saved model folder
    multitask-st app org/multitask-st --revision <commit>   # a Hub model (needs the Hub)
    multitask-st app --port 7861 --corpus my_texts.json   # search your own texts (a JSON list); --no-corpus: none

(`python app.py ...` in a checkout is the same command.) Needs the `app` extra (`pip install -e ".[app]"`; `make setup`
installs it). Serves on 127.0.0.1 only unless --host (or Gradio's GRADIO_SERVER_NAME) says otherwise; the port is
--port, else GRADIO_SERVER_PORT, else 7860.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path


PROG = "multitask-st app"
DEFAULT_MODEL = "outputs/multitask-st"  # `multitask-st train`'s default --output_dir
# Gradio's own defaults and the environment variables it reads them from (what containers and Spaces set).
DEFAULT_HOST, HOST_VARIABLE = "127.0.0.1", "GRADIO_SERVER_NAME"
DEFAULT_PORT, PORT_VARIABLE = 7860, "GRADIO_SERVER_PORT"


def server_address(host: str | None, port: int | None, environ: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """`(host, port)` to serve on: the flags, else Gradio's environment variables, else 127.0.0.1:7860."""
    host = host or environ.get(HOST_VARIABLE) or DEFAULT_HOST
    if port is None:
        value = environ.get(PORT_VARIABLE) or str(DEFAULT_PORT)
        if not (value.isdigit() and 0 < int(value) < 65536):
            raise ValueError(f"{PORT_VARIABLE}={value!r} is not a port number (1-65535); unset it or pass --port.")
        port = int(value)
    return host, port


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", nargs="?", default=DEFAULT_MODEL, help=f"Model folder or Hub id (default: {DEFAULT_MODEL})."
    )
    parser.add_argument("--revision", help="Hub revision (a commit hash) of a Hub model.")
    parser.add_argument(
        "--host", help=f"Address to serve on (default: ${HOST_VARIABLE}, else {DEFAULT_HOST}: this machine only)."
    )
    parser.add_argument("--port", type=int, help=f"Port (default: ${PORT_VARIABLE}, else {DEFAULT_PORT}).")
    parser.add_argument("--corpus", help='JSON list of texts (or {"text", "source"}) to search; default: built-in.')
    parser.add_argument("--no-corpus", action="store_true", help="No search corpus (faster start).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Serve as the command line says (blocks until interrupted); returns the exit status."""
    args = parse_args(argv, prog)
    try:
        host, port = server_address(args.host, args.port)
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    looks_local = args.model == DEFAULT_MODEL or Path(args.model).exists() or args.model.startswith((".", "/", "~"))
    if looks_local and not (Path(args.model) / "config.json").is_file():
        print(
            f"{prog}: error: no trained model in {args.model!r}. Train one with `make demo` (or `multitask-st train "
            "--output_dir DIR`), or pass a model folder or Hub id: `multitask-st app DIR`.",
            file=sys.stderr,
        )
        return 1
    try:
        from multitask_st.app.demo import load_corpus
        from multitask_st.app.serve import build_demo, launch
    except ImportError as error:
        print(f'{prog}: error: {error}. Install the app extra: pip install -e ".[app]".', file=sys.stderr)
        return 1
    # What can fail fast fails before the model loads: the port, then the corpus file.
    busy = _port_problem(host, port)
    if busy:
        print(f"{prog}: error: cannot serve on {host}:{port}: {busy}. Pass another --port.", file=sys.stderr)
        return 1
    start = time.perf_counter()
    corpus = False if args.no_corpus else True
    if args.corpus and not args.no_corpus:
        try:
            corpus = load_corpus(args.corpus)
        except (OSError, ValueError) as error:
            print(f"{prog}: error: --corpus: {' '.join(str(error).split())}", file=sys.stderr)
            return 1
    try:
        demo = build_demo(args.model, revision=args.revision, corpus=corpus)
    except (OSError, ValueError) as error:  # not found, offline, not a multitask-st model
        print(f"{prog}: error: cannot serve {args.model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(
        f"Ready in {time.perf_counter() - start:.1f} s: open http://{host}:{port} (Ctrl+C stops).",
        flush=True,
    )
    try:
        launch(demo, server_name=host, server_port=port)
    except OSError as error:  # the port was taken between the check above and now
        print(f"{prog}: error: cannot serve on {host}:{port}: {error}", file=sys.stderr)
        return 1
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why the demo could not listen on `host:port` (in use, not an address of this machine...), or None."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:  # create_server's own message repeats the address
        return os.strerror(error.errno) if error.errno else str(error)
