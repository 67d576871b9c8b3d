"""Durable, atomic file writes: the one way the library writes a file."""

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import time

__all__ = ["NotRegularFileError", "check_target", "open_regular", "write_atomically"]


def write_atomically(path, write, *, overwrite, exists_error):
    """Write ``path`` through ``write(fh)`` so that it appears whole or not at all.

    The content goes to a new temporary file next to ``path``, is synced to
    disk, then moves into place by an atomic rename (``overwrite``) or by a
    hard link that fails when ``path`` exists; the directory is synced last.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; its directory must exist.
    write : callable
        Called with the open binary file.
    overwrite : bool
        Replace an existing file at ``path``.
    exists_error : callable
        ``exists_error(path)`` is the exception raised when ``path`` exists
        and ``overwrite`` is False.
    """
    _remove_stale_temporaries(path)
    # A fresh random name, created exclusively, with the usual umask; locked
    # while it is written where the platform allows, so that no other write
    # takes it for the leftover of a killed one.
    tmp = path.with_name(
        _TEMPORARY_NAME.format(digest=_name_digest(path), token=secrets.token_hex(8))
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    # A file replaced keeps its permissions (a private model stays private), set
    # before anything is written.
    keep = _permissions(path) if overwrite else None
    try:
        fd = os.open(tmp, flags, 0o666 if keep is None else 0o600)
    except OSError as exc:  # named for the target: the temporary name means nothing to a caller
        raise OSError(exc.errno, f"{exc.strerror} (writing next to it)", str(path)) from exc
    try:
        if keep is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, keep)
        _try_lock(fd)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite, exists_error)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.absolute().parent)


def _permissions(path):
    """The permission bits of the regular file at ``path``, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def _fsync_directory(directory):
    """Make the rename itself durable where the platform allows it."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


#: A temporary file's name, next to its target: ``.<8 hex of the target's
#: name>-<16 random hex>.tmp``, 30 characters, so that it fits wherever the
#: target's name fits (however long) and the stale ones of a target are found.
_TEMPORARY_NAME = ".{digest}-{token}.tmp"
#: Seconds after its last write that an unlocked temporary file counts as
#: left behind by a write that was killed.
STALE_TEMPORARY_SECONDS = 60


def _name_digest(path):
    return hashlib.sha256(os.fsencode(path.name)).hexdigest()[:8]


def _try_lock(fd):
    """Take an exclusive advisory lock on ``fd`` without waiting; True if taken."""
    try:
        import fcntl
    except ImportError:  # Windows: an open file cannot be removed anyway
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale_temporaries(path):
    """Remove the temporary files that killed writes of ``path`` left behind.

    Only files named for this target, unlocked and untouched for
    :data:`STALE_TEMPORARY_SECONDS`, are removed: a write in progress holds
    its lock.
    """
    name = _TEMPORARY_NAME.format(digest=_name_digest(path), token="@")
    pattern = re.compile(re.escape(name).replace("@", "[0-9a-f]{16}"))
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(path.absolute().parent) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < STALE_TEMPORARY_SECONDS:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                try:
                    if _try_lock(fd):
                        os.unlink(entry.path)
                finally:
                    os.close(fd)


def file_above(directory):
    """The file that stands where ``directory`` or one of its parents should be, or None:
    the nearest of them that exists, when it is not a folder."""
    nearest = next((p for p in (directory, *directory.parents) if p.exists()), None)
    return None if nearest is None or nearest.is_dir() else nearest


def check_target(path, *, overwrite, exists_error, example):
    """Refuse a target that is a folder, a named pipe, socket or device (what
    ``overwrite`` never replaces), exists (without ``overwrite``; a dangling
    link too, never written through) or lies in a folder that does not exist
    or under a file: the most specific reason first. ``example`` names a file to
    suggest inside a folder."""
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            f"path is a folder; pass a file path inside it, e.g. {str(path / example)!r}",
            str(path),
        )
    if os.path.exists(path) and not os.path.isfile(path):
        # Replacing one would remove a pipe a reader waits on, or a device node.
        raise NotRegularFileError(
            errno.EINVAL,
            "path is a named pipe, socket or device, not a file; overwrite=True replaces "
            "files only: pass the path of a file",
            str(path),
        )
    if not overwrite and os.path.lexists(path):
        raise exists_error(path)
    directory = path.absolute().parent
    blocking = file_above(directory)
    if blocking is not None:
        raise NotADirectoryError(
            errno.ENOTDIR,
            "A file stands where the folder to write the file in should be; pass a path "
            "in a folder",
            str(blocking),
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            "The folder to write the file in does not exist; create it first",
            str(directory),
        )


def _publish(tmp, path, overwrite, exists_error):
    """Move the finished file into place atomically."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists: no window to clobber a file
    except FileExistsError:
        raise exists_error(path) from None
    except (OSError, AttributeError):  # no hard links here: check, then rename
        if os.path.lexists(path):
            raise exists_error(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


class NotRegularFileError(OSError):
    """A path names a named pipe, socket or device rather than a regular file."""


def open_regular(path):
    """Open ``path`` for binary reading if it is a regular file (links followed).

    The file is opened without blocking and checked on the open descriptor,
    so that a named pipe (which blocks until a writer comes) or a device (which
    may never end) raises :class:`NotRegularFileError`, a file swapped for one
    after it was listed too. A missing file (or a dangling link) raises
    ``FileNotFoundError``, a folder ``IsADirectoryError``.
    """
    flags = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fh = open(path, "rb", opener=lambda name, mode: os.open(name, mode | flags))  # noqa: SIM115
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise NotRegularFileError(
            errno.EINVAL, "not a regular file (a named pipe, socket or device)", str(path)
        )
    return fh
