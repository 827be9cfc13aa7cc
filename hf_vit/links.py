"""Symbolic links that lead out of a model folder.

The push uploads, and the export copies, what a file of the model folder holds: through a link
(`metrics.json -> ~/.cache/huggingface/token`) that is a file from elsewhere, published or copied as
the model's. Links that stay inside the folder are fine, and so is a Hugging Face cache snapshot
(`models--owner--name/snapshots/<rev>/`), whose files are links into the same cache repo's `blobs/`.
"""

from pathlib import Path


# A repository folder of the Hugging Face cache: models--owner--name (or datasets--, spaces--).
_CACHE_REPO_PREFIXES = ("models--", "datasets--", "spaces--")


def _real_places(folder: Path) -> list[Path]:
    """Where the files of `folder` may really lie: the folder, and inside a Hub cache snapshot (the snapshot
    itself or a folder of it: a model kept in a sub-folder of its repo) that repo's blobs/."""
    real = folder.resolve()
    places = [real]
    for revision in (real, *real.parents):  # <repo>/snapshots/<revision>[/sub/folder]
        snapshots = revision.parent
        repo = snapshots.parent
        if snapshots.name == "snapshots" and repo.name.startswith(_CACHE_REPO_PREFIXES) and (repo / "blobs").is_dir():
            places.append(repo / "blobs")
            break
    return places


def link_outside(folder, names) -> tuple[str, Path] | None:
    """The first link on the way to one of `names` (paths relative to `folder`) that leads out of `folder`,
    as (its relative path, where it leads); None when every name stays inside."""
    folder = Path(folder)
    places = _real_places(folder)
    for name in names:
        parts = Path(name).parts
        for depth in range(1, len(parts) + 1):  # the first step out names the link (a linked folder, or the file)
            step = Path(*parts[:depth])
            target = (folder / step).resolve()
            if not any(target.is_relative_to(place) for place in places):
                return step.as_posix(), target
    return None


def refuse_links_outside(folder, names, consequence: str) -> None:
    """Raise ValueError when one of `names` in `folder` leads out of it through a link; `consequence` says
    what the command would do with the file (e.g. "the push would upload it")."""
    found = link_outside(folder, names)
    if found:
        name, target = found
        raise ValueError(
            f"{folder}: {name} is a symbolic link to {str(target)!r}, outside the model folder: {consequence}. "
            "Put a copy of the file in place of the link if it belongs to the model, or remove the link."
        )


__all__ = ["link_outside", "refuse_links_outside"]
