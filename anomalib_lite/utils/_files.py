"""Durable, atomic file writes: the one way the library writes a file."""

import contextlib
import os
import secrets

__all__ = ["write_atomically"]


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
    # A fresh random name, created exclusively, with the usual umask.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
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
