"""Share a trained model directory on the Hugging Face Hub, or stage exactly what would be uploaded.

    multitask-st push outputs/model --repo-id org/multitask-st [--private] [--revision v1] [--create-pr]
    multitask-st push outputs/model --dry-run [--stage-dir staged/]
    multitask-st push outputs/model --repo-id org/multitask-st --space org/multitask-st-demo   # + a demo Space
    multitask-st push outputs/model --dry-run --space org/demo --space-stage-dir space/      # stage the Space

(`python push_to_hub.py ...` in a checkout is the same command.)

The token comes from --token, else the HF_TOKEN environment variable, else `hf auth login`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from huggingface_hub import constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from multitask_st.sharing.space import push_space, stage_space
from multitask_st.sharing.staging import DEFAULT_LANGUAGE, DEFAULT_LICENSE, push_model_dir, stage_model_dir


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection/timeout errors of whichever HTTP client huggingface_hub uses."""
    errors: list[type[BaseException]] = []
    for module_name, attribute in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "RequestException"),
    ):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        errors.append(getattr(module, attribute))
    return tuple(errors)


PROG = "multitask-st push"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="A trained model directory (model.save_pretrained + tokenizer.save_pretrained)."
    )
    parser.add_argument("--repo-id", help='Hub repository, "org/name" or "name"; required unless --dry-run.')
    parser.add_argument("--private", action="store_true", help="Create the repository private (if it is new).")
    parser.add_argument("--revision", help="Branch to commit to (created if missing); defaults to main.")
    parser.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing.")
    parser.add_argument("--commit-message", help='Defaults to "Upload multitask-st model".')
    parser.add_argument("--token", help="Hub token with write access; defaults to HF_TOKEN or the stored login.")
    parser.add_argument(
        "--license", default=DEFAULT_LICENSE, help=f"License in the card (default: {DEFAULT_LICENSE})."
    )
    parser.add_argument(
        "--language", nargs="+", default=[DEFAULT_LANGUAGE], help=f"Language code(s) (default: {DEFAULT_LANGUAGE})."
    )
    parser.add_argument("--stage-dir", help="Write the staged folder here (empty or new) and keep it.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Stage the folder, list it and upload nothing (no token needed)."
    )
    parser.add_argument(
        "--space", help='Also ship the Gradio demo as a Space ("org/name") serving the pushed model at its commit.'
    )
    parser.add_argument("--space-stage-dir", help="Write the staged Space folder here (empty or new) and keep it.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Push (or stage) as the command line says; returns the exit status (errors: one line on stderr, status 1)."""
    args = parse_args(argv, prog)
    language = args.language[0] if len(args.language) == 1 else args.language
    # What the push would refuse, refused before anything is staged or uploaded (a dry run included): a bad Space name
    # would otherwise fail only after the model was pushed.
    for flag, repo_id in (("--repo-id", args.repo_id), ("--space", args.space)):
        try:
            if repo_id is not None:
                validate_repo_id(repo_id)
        except HFValidationError as error:
            return _fail(prog, f"invalid {flag} {repo_id!r}: {_one_line(error)}")
    if args.space and not args.repo_id:
        return _fail(prog, "--space needs --repo-id: the model repository the Space serves.")
    if args.space and args.create_pr:
        return _fail(
            prog, "--space serves a pushed commit; it cannot follow --create-pr (push the Space after merging)."
        )
    try:
        if args.dry_run:
            stage_dir = args.stage_dir or tempfile.mkdtemp(prefix="multitask-st-stage-")
            files = stage_model_dir(
                args.model_dir,
                stage_dir,
                repo_id=args.repo_id,
                revision=args.revision,
                license=args.license,
                language=language,
            )
            print(f"Dry run: staged {len(files)} files in {stage_dir} (nothing uploaded):")
            print("\n".join(f"  {name}" for name in files))
            if args.space:
                space_dir = args.space_stage_dir or tempfile.mkdtemp(prefix="multitask-st-space-")
                files = stage_space(args.repo_id, space_dir, revision=args.revision)
                print(f"Dry run: staged the Space {args.space} for {args.repo_id} in {space_dir}:")
                print("\n".join(f"  {name}" for name in files))
            return 0
        if not args.repo_id:
            return _fail(prog, "--repo-id is required to push (or pass --dry-run to only stage the files).")
        commit = push_model_dir(
            args.model_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            commit_message=args.commit_message,
            token=args.token,
            license=args.license,
            language=language,
            stage_dir=args.stage_dir,
        )
    except Exception as error:
        message = _error_message(error, args)
        if message is None:
            raise  # a bug, not a user error: keep the traceback
        return _fail(prog, message)
    print(f"Pushed to {commit.pr_url or commit.commit_url}")
    print(f'Pin this version with revision="{commit.oid}".')
    if args.space:
        try:
            space_commit = push_space(
                args.space, args.repo_id, revision=commit.oid, private=args.private, token=args.token,
                stage_dir=args.space_stage_dir,
            )  # fmt: skip
        except Exception as error:
            message = _error_message(error, args)
            if message is None:
                raise
            return _fail(prog, f"the model was pushed, the Space was not: {message}")
        print(f"Space: {space_commit.commit_url}")
    return 0


def _error_message(error: Exception, args: argparse.Namespace) -> str | None:
    """One line saying what went wrong and what to do, for the errors a user can fix; None for anything else."""
    repo = args.repo_id
    if isinstance(error, OfflineModeIsEnabled):
        return "offline mode is enabled (HF_HUB_OFFLINE=1): unset HF_HUB_OFFLINE to push, or use --dry-run."
    if isinstance(error, LocalTokenNotFoundError):
        return "not logged in to the Hugging Face Hub: run `hf auth login`, set HF_TOKEN or pass --token."
    if isinstance(error, RepositoryNotFoundError):
        return f"repository {repo!r} not found, or this token cannot see it."
    if isinstance(error, RevisionNotFoundError):
        return f"revision {args.revision!r} not found in {repo!r}."
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            return "the Hub rejected the token (401 Unauthorized): run `hf auth login` or pass a valid --token."
        if status == 403:
            return f"this token may not write to {repo!r} (403 Forbidden): use a write token, or --create-pr."
        return f"the Hub answered {status}: {_one_line(error)}"
    if isinstance(error, _transport_errors()):
        return f"cannot reach the Hugging Face Hub at {constants.ENDPOINT}: {_one_line(error)}"
    if isinstance(error, HFValidationError):
        return f"invalid --repo-id {repo!r}: {_one_line(error)}"
    if isinstance(error, (ValueError, OSError)):
        return _one_line(error)
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1
