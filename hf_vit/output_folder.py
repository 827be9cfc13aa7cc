"""Output folders written whole or not at all.

The export and import scripts write a complete model folder (config, weights, processor, card).
They write into a staging folder beside the target, with the target's name (the card names the
model after its folder), and move it into place only once every file is written: a failure halfway
leaves the old folder, or nothing, never half a model. `--overwrite` replaces the old folder only
after the new one is complete, never when the old one holds an input of the same run, and only
when the old one is a model folder (a training run's checkpoints or one's own files are refused).
A staging folder left by a killed process (`kill -9`) is removed by the next export or import
into the same place.

Also here: `folder_lock`, which keeps two runs out of one folder (two trainings into one --output_dir, two
evaluations into one evaluation folder, an evaluation of a model a training is writing), and `replace_text`,
a file written whole or not at all through a temporary file no other writer shares, and `refuse_several_processes`,
which keeps a one-process script launched as several (torchrun, accelerate launch) from running once per process.
"""

import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so folders are not locked there (temporary files stay unique)
    fcntl = None


# What an exported or imported model folder holds: only a folder of these is replaced by --overwrite.
MODEL_FOLDER_ENTRIES = (
    "config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json", "README.md",
    "metrics.json", "training_recipe.json", "evaluation",
)
# What an evaluation (hf_vit/analysis.py) writes into its output folder: these files, and the .png files of these
# sub-folders. A rerun deletes exactly these before writing its own (any other file there is the user's, a loss curve
# added by hand), and a push takes exactly these for an earlier push's files (hf_vit/hub.py reads both). Here, not in
# hf_vit.analysis, so that the push reads them without importing the evaluation (and datasets and evaluate with it).
EVALUATION_FILES = ("metrics.json", "misclassified.csv", "report.html", "gallery.png", "confusion_matrix.png",
                    "per_class_accuracy.png")
EVALUATION_SUBFOLDERS = ("misclassified", "attention")


def holds_an_evaluation(folder: Path) -> bool:
    """An evaluation wrote `folder` (misclassified/ is made before anything else is written)."""
    return (folder / "misclassified").is_dir() or (folder / "misclassified.csv").is_file()


def two_saves(model_dir) -> str | None:
    """Both a single model.safetensors and a sharded save's index: what two saves into one folder leave
    (save_pretrained deletes an earlier save's shards, never an earlier single file or index). transformers
    loads model.safetensors and ignores the shards, which may be the newer weights; None when only one is there."""
    model_dir = Path(model_dir)
    single, index = model_dir / "model.safetensors", model_dir / "model.safetensors.index.json"
    if not (single.is_file() and index.is_file()):
        return None
    older = min((single, index), key=lambda path: path.stat().st_mtime).name
    return (
        "the folder holds both model.safetensors and model.safetensors.index.json (with its model-*-of-*.safetensors "
        "shards), the weights of two saves: transformers would load model.safetensors whichever is current. Delete "
        f"the earlier save's files (the older one by modification time is {older}; the index goes with its shards), "
        "or save the model again into an empty folder."
    )


def probe_writable(folder) -> None:
    """Raise OSError unless a file can be made in `folder` (an existing folder). The probe has a name of its own,
    never the pid: ranks on two machines sharing the folder may have one pid, and deleted each other's probe."""
    Path(tempfile.mkdtemp(prefix=".hf_vit-write-test-", dir=folder)).rmdir()


def unwritable_reason(folder) -> str | None:
    """Why `folder` (created if absent) could not be written, or None; probes without leaving anything behind."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        probe_writable(existing)
    except OSError as err:
        return f"{existing}: {err.strerror or err}"
    return None


def check_output_folder(output_dir, *, overwrite: bool, inputs=(), flag: str = "--overwrite") -> None:
    """Raise before any work when `output_dir` cannot take a new folder; the message names the fix."""
    output_dir = Path(output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} is a file, not a folder. Pass the path of a folder for the output.")
    problem = unwritable_reason(output_dir)
    if problem:
        raise PermissionError(f"cannot write the output folder {output_dir} ({problem}). Choose a writable folder.")
    if not (output_dir.is_dir() and any(not _is_lock_entry(p.name) for p in output_dir.iterdir())):
        return  # (a lock file alone: the one this run holds, or one a killed run left)
    if not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty. Choose another folder or pass {flag}.")
    target = output_dir.resolve()
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if source == target or target in source.parents:
            raise ValueError(
                f"{flag} would delete {item}, which lies inside {output_dir}, the output folder. "
                "Choose an output folder that does not hold the inputs."
            )
    foreign = sorted(
        p.name for p in output_dir.iterdir()
        if not (p.name.startswith(".") or p.name in MODEL_FOLDER_ENTRIES or p.suffix in (".safetensors", ".py"))
    )  # fmt: skip
    if foreign:  # a training run (checkpoint-*, training_args.bin) or the user's own files: not ours to delete
        shown = ", ".join(repr(name) for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise FileExistsError(
            f"{flag} replaces the whole folder {output_dir}, which holds more than a model folder ({shown}): they "
            "would be deleted. Choose another folder, or move them out first."
        )


@contextmanager
def staged_folder(output_dir, *, overwrite: bool, inputs=(), flag: str = "--overwrite"):
    """Yield an empty folder named like `output_dir` to write into; it replaces `output_dir` on success.

    On an exception the staging folder is removed and `output_dir` is left as it was.
    """
    check_output_folder(output_dir, overwrite=overwrite, inputs=inputs, flag=flag)
    output_dir = Path(output_dir).expanduser().resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(output_dir)
    # Same parent, so the final move is a rename on one filesystem, not a copy.
    staging_root = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    (staging_root / OWNER_FILE).write_text(_owner())
    set_aside = staging_root / "replaced"
    try:
        with sigterm_exits():  # else a plain kill would leave the hidden staging folder behind
            staged = staging_root / output_dir.name
            staged.mkdir()
            yield staged
            # In the model's file (its save_pretrained needs it as remote code); imported here: this module loads alone
            from .modeling_hf_vit import give_umask_modes

            give_umask_modes(staged)  # all this run's; transformers' own models (an export's ViT) write weights 0600
            with signals_held():  # Ctrl-C or kill between the two moves takes effect once both are done
                if output_dir.exists():
                    os.replace(output_dir, set_aside)  # removed with the staging folder below
                os.replace(staged, output_dir)
    finally:
        if set_aside.exists() and not output_dir.exists():  # the second move failed: the old folder goes back
            os.replace(set_aside, output_dir)
        shutil.rmtree(staging_root, ignore_errors=True)


OWNER_FILE = "owner"  # the process writing a staging folder, so that a later run knows when it is abandoned


def _pid_namespace() -> str:
    """Which process ids a pid is one of: a container has its own, where pid 603 is another process."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (macOS): one namespace per machine
        return "-"


def _here() -> str:
    """Where a pid means this process's kind of pid: the machine and its pid namespace."""
    return f"{socket.gethostname()} {_pid_namespace()}"


def _owner() -> str:
    return f"{_here()} {os.getpid()}"


def _remove_abandoned_staging(output_dir: Path) -> None:
    """Staging folders of `output_dir` left by a process that is gone (kill -9, power loss): whole model copies.

    Only a folder whose owner ran on this machine, among this process's pids, can be judged: one written from
    another machine (a shared or network folder) or another container is left alone.
    """
    here = _here()
    for staging_root in output_dir.parent.glob(f".{output_dir.name}.staging-*"):
        try:
            where, pid = (staging_root / OWNER_FILE).read_text().rsplit(" ", 1)
            pid = int(pid)
        except (OSError, ValueError):
            continue  # not one of ours, or its owner has not written its name yet: left alone
        if where != here:
            continue
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(staging_root, ignore_errors=True)
        except OSError:  # PermissionError: it exists, under another user
            pass


@contextmanager
def signals_held():
    """Hold back SIGINT and SIGTERM for the block: each takes effect once it is done. A signal mask would not do: the
    system hands the signal to another thread (torch's), and Python interrupts the main thread all the same."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    caught, previous = [], {}
    try:  # each handler noted before it is replaced: a signal amid the installs still finds it restored
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: caught.append(signum))
        yield
    finally:
        _put_back(previous)
        for sig in caught:
            signal.raise_signal(sig)  # now handled as it would have been


def _put_back(handlers: dict) -> None:
    """Put each signal's handler back. A signal that came as the block ended is answered once its own handler is back,
    maybe before the next one is (a KeyboardInterrupt raised by the first put back): the rest still go back, then it is
    raised."""
    stopped = None
    for sig, handler in handlers.items():
        try:
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        except BaseException as err:  # KeyboardInterrupt, or sigterm_exits' SystemExit
            stopped = stopped or err
    if stopped is not None:
        raise stopped


@contextmanager
def sigterm_exits():
    """A plain `kill` (SIGTERM) ends Python without running `finally` or `with` exits, which would leave a half-made
    folder or lock file behind: inside the block it exits through SystemExit instead (status 143, as the signal
    would), so the clean-up runs."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:  # None: a handler set outside Python, which the default stands for
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


SIGTERM_EXIT = 128 + signal.SIGTERM  # the exit status of a process a kill ended, 143: what sigterm_exits exits with


def _exit_on_sigterm(signum, frame):
    raise SystemExit(SIGTERM_EXIT)


def replace_file(path, write) -> Path:
    """Write `path` through a temporary file beside it (`write(tmp)` fills it): the file is whole or as it was.
    The temporary's name is unique, so that two processes writing the same file never write into one temporary."""
    path = Path(path)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}-{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_text(path, text: str) -> Path:
    """`replace_file` for text: `path` holds all of `text`, or what it held before."""
    return replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------------
# One run per folder
# ---------------------------------------------------------------------------
LOCK_FILE = ".hf_vit.lock"


# Who holds a folder only shared: readers write no name into the lock file (several of them share it).
READERS = "a program reading the files in it (an evaluation or an export)"


class SeveralProcessesError(ValueError):
    """A script that runs as one process was started as several by a launcher; the message names the fix."""


def launched_processes() -> int:
    """How many processes `torchrun` or `accelerate launch` started (WORLD_SIZE, the launchers' contract); 1 without
    a launcher."""
    world = os.environ.get("WORLD_SIZE", "1")
    # With a rank too: a WORLD_SIZE left over in a job's shell alone does not make a launch of several processes.
    launched = "RANK" in os.environ or "LOCAL_RANK" in os.environ
    return int(world) if launched and world.isdigit() and int(world) > 1 else 1


def refuse_several_processes(script: str, clash: str, hint: str = "") -> None:
    """Raise SeveralProcessesError when `torchrun` or `accelerate launch` started `script` as several processes
    (WORLD_SIZE, the launchers' contract): each would do the whole work, `clash` says into what, and the lock or
    the launcher would stop the others halfway (before: two runs into one folder, or two pushes)."""
    world = launched_processes()
    if world > 1:
        raise SeveralProcessesError(
            f"{script} runs as one process, but it was launched as {world} (WORLD_SIZE={world}, set by torchrun or "
            f"accelerate launch): {clash}. Run it with `python scripts/{script} ...`{hint}."
        )


class FolderInUseError(OSError):
    """Another process holds the folder's lock; `holder` names it as it wrote itself down, or is READERS when only
    readers hold it (`readers`: they read its files, they do not write them)."""

    def __init__(self, message: str, holder: str, readers: bool = False):
        super().__init__(message)
        self.holder, self.readers = holder, readers


@contextmanager
def folder_lock(folder, holder: str, *, shared: bool = False):
    """Hold `folder`'s lock for the block, or raise FolderInUseError at once (never wait for it).

    Writers (a training in its output folder, an evaluation in its own) hold it alone and write `holder` into it
    for the message of whoever is refused; readers (an evaluation or an export of a model folder) share it with each other,
    never with a writer. It is an flock: the system drops it when the process ends, even by kill -9, so no stale
    lock ever refuses a run. A writer's folder is created if absent (its parents too), and the folders it created
    are removed again where they are left empty.
    """
    folder = Path(folder).expanduser().resolve()  # a link to a folder not made yet: the folder made is its target
    created = [] if shared else [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    if created:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = _take_lock(folder / LOCK_FILE, holder, shared) if fcntl is not None and folder.is_dir() else None
        try:
            yield
        finally:
            if fd is not None:
                _release_lock(fd, folder / LOCK_FILE)
    finally:
        _remove_empty(created)


def _remove_empty(folders) -> None:
    """Remove `folders` (deepest first) while they are empty: a run refused or failed before writing anything
    leaves no trace of the folders its lock created."""
    for made in folders:
        try:
            made.rmdir()
        except OSError:  # not empty: it holds what the run wrote, or another run's folder
            return


@contextmanager
def hold_folders(output_dir, holder: str, *, reads=(), flag: str = "--output_dir",
                 clash: str = "this would replace the files it writes"):
    """Lock `output_dir` alone and share each model folder in `reads` with other readers, for a program that
    writes from model folders (an evaluation, an export, an import): a training writing either of them would
    leave the result built from half-replaced weights, or replace the folder under it. `clash` says what a
    writer already in `output_dir` would suffer. Yields the ExitStack that holds them. Raises FolderInUseError."""
    with sigterm_exits(), ExitStack() as held:  # a kill anywhere in the block still releases and removes them
        for folder in map(Path, reads):
            if folder.is_dir():
                _share_model_folder(held, folder, holder)
        try:
            held.enter_context(folder_lock(output_dir, holder))
        except FolderInUseError as err:
            raise FolderInUseError(
                f"{flag} {str(output_dir)!r} is in use by {_what_it_does(err, clash)}. Wait for it to finish, or "
                f"choose another {flag}.", err.holder, err.readers,
            ) from None
        yield held  # for a caller's own further folders (share_folder)


def _share_model_folder(held: ExitStack, folder: Path, holder: str) -> None:
    """Share `folder` and, for a checkpoint (runs/x/checkpoint-500), its run's folder: a training still running
    there deletes older checkpoints as it saves new ones."""
    share_folder(held, folder, holder, lambda writer: (
        f"the model folder {str(folder)!r} is in use by {writer}, which writes new weights there: they would not be "
        "the ones read. Wait for it to finish, then run this again."
    ))
    share_checkpoint_run(held, folder, holder)


def share_checkpoint_run(held: ExitStack, folder: Path, holder: str) -> None:
    """For a checkpoint (runs/x/checkpoint-500), share its run's folder: a training still running there deletes
    older checkpoints as it saves new ones. Any other folder: nothing to do."""
    run = folder.parent
    if re.fullmatch(r"checkpoint-\d+", folder.name) and run.is_dir():
        share_folder(held, run, holder, lambda writer: (
            f"{str(folder)!r} is a checkpoint of {str(run)!r}, which is in use by {writer}: it deletes older "
            "checkpoints as it saves new ones. Wait for the run to end, or copy the checkpoint elsewhere first."
        ))


def share_folder(held: ExitStack, folder: Path, holder: str, refusal) -> None:
    """Share `folder`'s lock with other readers until `held` closes; when a writer holds it, raise
    FolderInUseError with the message `refusal(the writer's name)`."""
    try:
        held.enter_context(folder_lock(folder, holder, shared=True))
    except FolderInUseError as err:
        raise FolderInUseError(refusal(err.holder), err.holder) from None


def _is_lock_entry(name: str) -> bool:
    """The lock file, or a temporary one (`_own_lock_file`'s, which a run killed amid its two steps leaves)."""
    return name == LOCK_FILE or (name.startswith(".") and name.endswith(f"-{LOCK_FILE}.tmp"))


def _what_it_does(err: FolderInUseError, clash: str) -> str:
    """The holder of a refused writer's folder and the harm, `clash` for a writer holding it."""
    if err.readers:
        return f"{err.holder}: this would write over the files it reads"
    return f"{err.holder}, which is writing it: {clash}"


def _take_lock(path: Path, holder: str, shared: bool) -> int | None:
    """An open descriptor of the lock file `path`, locked; None where it cannot be had (a folder this process
    cannot write, a filesystem without locks): a reader proceeds unguarded there."""
    while True:
        read_only = False
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            read_only = True
            # A read-only model folder, or a lock file another user's run left (kill, a batch system's time limit):
            # flock locks a read-only descriptor all the same, only the holder's name cannot be written.
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as err:
                if not shared and path.exists():
                    raise PermissionError(
                        f"cannot open the lock file {path} ({err.strerror}). If no run is using the folder (a run "
                        "that was killed can leave the file behind), delete it and run this again."
                    ) from None
                return None  # no lock file and none can be made: the folder's own checks name why
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(fd, path, shared) from None
        except OSError:  # ENOLCK: a network filesystem without flock
            os.close(fd)
            return None
        if _is_current(fd, path):
            break
        os.close(fd)  # its holder removed it between our open and our lock: take the new one
    if not shared:  # nobody else can be replacing the lock file now: a temporary one is a killed run's
        for tmp in path.parent.glob(f".*-{LOCK_FILE}.tmp"):
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # another user's, in a folder that keeps it (sticky): harmless, only not tidied
                pass
    if read_only and not shared:
        return _own_lock_file(fd, path, holder)
    try:  # the holder's name, for the message of a run refused meanwhile (a reader clears a dead writer's)
        os.ftruncate(fd, 0)
        if not shared:
            os.write(fd, _holder_line(holder).encode())
    except OSError:  # read-only descriptor
        pass
    return fd


def _refusal(fd: int, path: Path, shared: bool) -> FolderInUseError:
    """The error for a lock `fd` could not get (closing it): the holder's name, or READERS."""
    written = os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
    readers = False
    if not shared:  # a writer refused where a reader is let in: only readers hold it (the name may be a dead run's)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            readers = True
        except OSError:
            pass
    os.close(fd)
    held_by = READERS if readers else written or "another program"  # (a writer that could not write its name)
    return FolderInUseError(f"{path.parent} is in use by {held_by}", held_by, readers)


def _own_lock_file(fd: int, path: Path, holder: str) -> int:
    """A writer that could lock another user's lock file only read-only puts its own in its place, locked before
    it appears, so that a run refused meanwhile names this run and not the dead one written in the old file.
    Where the folder does not allow that (a sticky shared folder), the old file stays locked as it is."""
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}-{path.name}.tmp")
    try:
        new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return fd
    try:
        fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(new, _holder_line(holder).encode())
        os.replace(tmp, path)  # a run that locked the old file after this finds it gone and takes the new one
    except OSError:
        os.close(new)
        tmp.unlink(missing_ok=True)
        return fd
    os.close(fd)
    return new


def _holder_line(holder: str) -> str:
    return f"{holder} (pid {os.getpid()} on {socket.gethostname()})"


def _is_current(fd: int, path: Path) -> bool:
    """Whether the locked descriptor is still the file at `path` (not one removed by a holder releasing it)."""
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _release_lock(fd: int, path: Path) -> None:
    """Unlock; the last holder removes the lock file (a reader leaves it to the others still reading)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # granted only when no other process holds it
        if _is_current(fd, path):  # not another run's, in a folder that replaced ours (a staged swap)
            path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "MODEL_FOLDER_ENTRIES", "FolderInUseError", "check_output_folder", "folder_lock",
    "hold_folders", "replace_text", "share_checkpoint_run", "share_folder", "staged_folder", "unwritable_reason",
]
