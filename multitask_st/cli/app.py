"""Serve a trained multitask-st model in the browser: classify with every head, compare sentences, search a corpus.

    python app.py                         # the model `train.py` / `make demo` saves (outputs/multitask-st)
    python app.py path/to/model           # any saved model folder
    python app.py org/multitask-st --revision <commit>   # a Hub model (needs the Hub)
    python app.py --port 7861 --corpus my_texts.json   # search your own texts (a JSON list); --no-corpus: none

Needs the `app` extra (`pip install -e ".[app]"`; `make setup` installs it). Serves on 127.0.0.1 only unless --host says
otherwise.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path


DEFAULT_MODEL = "outputs/multitask-st"  # train.py's default --output_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", nargs="?", default=DEFAULT_MODEL, help=f"Model folder or Hub id (default: {DEFAULT_MODEL})."
    )
    parser.add_argument("--revision", help="Hub revision (a commit hash) of a Hub model.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to serve on (default: 127.0.0.1, this machine only)."
    )
    parser.add_argument("--port", type=int, default=7860, help="Port (default: 7860).")
    parser.add_argument("--corpus", help='JSON list of texts (or {"text", "source"}) to search; default: built-in.')
    parser.add_argument("--no-corpus", action="store_true", help="No search corpus (faster start).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    looks_local = args.model == DEFAULT_MODEL or Path(args.model).exists() or args.model.startswith((".", "/", "~"))
    if looks_local and not (Path(args.model) / "config.json").is_file():
        print(
            f"app.py: error: no trained model in {args.model!r}. Train one with `make demo` (or `python train.py "
            "--output_dir DIR`), or pass a model folder or Hub id: `python app.py DIR`.",
            file=sys.stderr,
        )
        return 1
    try:
        from multitask_st.app.demo import load_corpus
        from multitask_st.app.serve import build_demo, launch
    except ImportError as error:
        print(f'app.py: error: {error}. Install the app extra: pip install -e ".[app]".', file=sys.stderr)
        return 1
    # What can fail fast fails before the model loads: the port, then the corpus file.
    busy = _port_problem(args.host, args.port)
    if busy:
        print(f"app.py: error: cannot serve on {args.host}:{args.port}: {busy}. Pass another --port.", file=sys.stderr)
        return 1
    start = time.perf_counter()
    corpus = False if args.no_corpus else True
    if args.corpus and not args.no_corpus:
        try:
            corpus = load_corpus(args.corpus)
        except (OSError, ValueError) as error:
            print(f"app.py: error: --corpus: {' '.join(str(error).split())}", file=sys.stderr)
            return 1
    try:
        demo = build_demo(args.model, revision=args.revision, corpus=corpus)
    except (OSError, ValueError) as error:  # not found, offline, not a multitask-st model
        print(f"app.py: error: cannot serve {args.model!r}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(
        f"Ready in {time.perf_counter() - start:.1f} s: open http://{args.host}:{args.port} (Ctrl+C stops).",
        flush=True,
    )
    try:
        launch(demo, server_name=args.host, server_port=args.port)
    except OSError as error:  # the port was taken between the check above and now
        print(f"app.py: error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why the demo could not listen on `host:port` (in use, not an address of this machine...), or None."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:  # create_server's own message repeats the address
        return os.strerror(error.errno) if error.errno else str(error)


if __name__ == "__main__":
    sys.exit(main())
