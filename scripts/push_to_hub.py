"""Push a trained hf_vit model folder to the Hugging Face Hub, in one commit.

    python scripts/push_to_hub.py runs/cpu your-username/vit-cifar10 [--private] [--token hf_...] [--revision BRANCH]

Uploads config, weights, remote code, image processor, the model card (filled in
for this repo id, and written into the folder once the commit has landed) and the
evaluation: summary, pictures and report.html with the images it shows; never
checkpoints or pickles. A repository an earlier push filled loses, in the same commit, that push's
files which the folder no longer has; the files deleted are listed. --dry_run writes the card, lists the
files it would upload and, from the repository's file list, those it would delete, and stops.
The token comes from --token, else HF_TOKEN, else the `hf auth login` cache.
"""

import argparse
import sys

try:  # the libraries take seconds to load, before the script's own answer to Ctrl-C is in place
    from huggingface_hub import get_token

    from hf_vit.hub import IncompleteModelFolder, push_model_folder
    from hf_vit.interrupted import run_script
    from hf_vit.output_folder import FolderInUseError, refuse_several_processes
except KeyboardInterrupt:  # nothing was done yet: one line and Ctrl-C's status, not a traceback
    print("push_to_hub.py: interrupted while loading its libraries; nothing was done.", file=sys.stderr)
    sys.exit(130)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="the model folder that training wrote (config.json, model.safetensors, ...)")
    parser.add_argument("repo_id", help="target repository, e.g. your-username/vit-cifar10 (created if absent)")
    # default None, not False: False would ask for a public repository where the organization's default is private
    parser.add_argument("--private", action="store_true", default=None,
                        help="create the repository private (default: the account's or organization's default); "
                        "an existing public one is refused (make it private on the Hub first), a private one taken")
    parser.add_argument("--token", default=None, help="a write token (default: HF_TOKEN or the login cache)")
    parser.add_argument("--commit_message", default=None,
                        help="the Hub commit's message (default: 'Upload <folder name> (hf_vit model, card, "
                        "evaluation)')")
    parser.add_argument("--revision", default=None,
                        help="the branch to push to (made from main if absent; default: main); the card's code "
                        "loads that branch")
    parser.add_argument("--keep_card", action="store_true",
                        help="upload README.md as it is instead of rewriting it (refused when the folder has none, "
                        "or when its code loads another repository or revision than the one pushed to)")
    parser.add_argument("--dry_run", action="store_true",
                        help="check the folder, write the card, list the files it would upload and delete (reads "
                        "the repository's file list only); uploads nothing")
    args = parser.parse_args(argv)
    try:
        refuse_several_processes("push_to_hub.py", f"each would push the folder to {args.repo_id!r}, one commit each")
        pushed = push_model_folder(
            args.model_dir, args.repo_id, private=args.private, token=args.token,
            commit_message=args.commit_message, write_card=not args.keep_card, dry_run=args.dry_run,
            revision=args.revision,
        )
    except (IncompleteModelFolder, ValueError, PermissionError, FileNotFoundError, FolderInUseError) as err:
        sys.exit(f"error: {err}")
    except Exception as err:  # the network or the Hub (offline, a token without write access): one commit, all or none
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
        sys.exit(
            f"error: the push to {args.repo_id!r} failed, nothing was uploaded: {first}. Check the connection "
            "and that the token may write to that repository, then run this again."
        )
    done = "would upload" if args.dry_run else "uploaded"
    print(f"{done} {len(pushed.files)} files:\n  " + "\n  ".join(pushed.files))
    print(deleted_text(pushed, dry_run=args.dry_run))
    if args.dry_run and not (args.token or get_token()):  # the push itself stops at this, before the network
        print("note: no Hugging Face token found, so the push itself would stop. Log in with `hf auth login`, set "
              "HF_TOKEN or pass --token (write access).")
    if pushed.info is not None:
        print(f"pushed: {pushed.info.commit_url}")


def deleted_text(pushed, dry_run: bool) -> str:
    """What the commit deletes from the repository (an earlier push's files the folder no longer has)."""
    verb = "would delete" if dry_run else "deleted"
    if pushed.deleted is None:
        return f"{verb}: unknown, {pushed.note}."
    head = f"{verb} {len(pushed.deleted)} files of an earlier push" if pushed.deleted else f"{verb}: nothing"
    head += f" ({pushed.note})" if pushed.note else ""
    return head + (":\n  " + "\n  ".join(pushed.deleted) if pushed.deleted else ".")


if __name__ == "__main__":  # the folder's README.md is rewritten only once the commit has landed (a dry run: at once)
    sys.exit(run_script("push_to_hub.py", main, "a push lands as one commit or not at all, and this one may not have "
                        "landed (a --dry_run uploads nothing): see the repository's history on the Hub, and rerun the "
                        "same command."))
