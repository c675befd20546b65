"""The bubblewrap (``bwrap``) sandbox that run_shell's commands run in.

The command gets new user, PID, IPC, UTS and cgroup namespaces (and a network namespace with
only its own loopback unless the deployment allows the network) and sees a file system made of:

- the system directories ``/usr``, ``/bin``, ``/sbin``, ``/lib*`` read-only;
- ``/etc`` read-only, minus every entry that not every user of the machine may read (files
  without the other-read bit, directories without other-read and other-search), which are
  covered up: ``/etc/shadow``, private keys, database passwords …;
- a fresh ``/proc`` of its own PID namespace (it sees its own processes, never the server's),
  a minimal ``/dev``, a private empty ``/tmp``;
- the conversation's working directory, read-write, at its real path: the only place where
  writes outlive the call.

Nothing else exists in there: not the server's code, database, config or home, not ``/run``
(local sockets) or ``/var``. The command runs as PID 1 of its PID namespace with no
capabilities, so when it exits, or bubblewrap is killed (``--die-with-parent``), the kernel
kills every process it started, ``setsid`` or not.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

MISSING = (
    "run_shell is unavailable: its sandbox, bubblewrap (`bwrap`), is not installed on the "
    "server. Install the package `bubblewrap` (Debian, Ubuntu) or turn run_shell off "
    "([tools] run_shell = false)."
)

# Read-only system directories; a symlink among them (merged /usr) is recreated as one.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = "/etc"
# DNS through systemd-resolved: /etc/resolv.conf points in here (only with the network on).
RESOLVED_DIR = "/run/systemd/resolve"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Passed on from the server's environment; everything else (API keys, SECRET_KEY,
# DATABASE_URL …) stays out.
PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME")


def find_bwrap() -> str | None:
    """The bubblewrap binary on the server's PATH, or None."""
    return shutil.which("bwrap")


@functools.cache
def _version(binary: str) -> tuple[int, ...]:
    """bubblewrap's version, () when it does not say (then only long-standing options are used)."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", done.stdout)
    return tuple(int(part) for part in match.groups() if part) if match else ()


def hidden_etc_entries(etc: str = ETC) -> list[tuple[str, bool]]:
    """``(path, is_dir)`` of every entry below ``etc`` that not everyone may read.

    A directory counts as readable when others may list and enter it; one that is not is
    hidden whole. Symlinks are not judged (their target is).
    """
    hidden: list[tuple[str, bool]] = []
    for dirpath, dirnames, filenames in os.walk(etc, followlinks=False):
        keep = []
        for name in sorted(dirnames):
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:  # vanished meanwhile
                continue
            if os.path.islink(path) or (mode & 0o005) == 0o005:
                keep.append(name)
            else:
                hidden.append((path, True))
        dirnames[:] = keep
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:  # vanished meanwhile
                continue
            if not os.path.islink(path) and not mode & 0o004:
                hidden.append((path, False))
    return hidden


def sandbox_env(cwd: Path) -> dict[str, str]:
    """The command's whole environment: a fixed PATH, HOME in the private /tmp, and the
    locale and terminal of the server."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(PATH=SANDBOX_PATH, HOME="/tmp", SHELL="/bin/sh", PWD=str(cwd))
    return env


def bwrap_command(
    binary: str, cwd: Path, command: str, *, network: bool, status_fd: int
) -> list[str]:
    """The argv that runs ``/bin/sh -c command`` in the sandbox, ``cwd`` (a real path) writable.

    bubblewrap writes JSON lines to ``status_fd``; ``"exit-code"`` appears only when the
    command ran (not when the sandbox could not be set up).
    """
    argv = [
        binary,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if not network:
        argv.append("--unshare-net")
    if _version(binary) >= (0, 8):
        argv.append("--disable-userns")  # no nested user namespaces: less kernel to attack
    argv += [
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", ETC, ETC]
    for path, is_dir in hidden_etc_entries():
        if is_dir:
            argv += ["--tmpfs", path, "--remount-ro", path]
        else:
            argv += ["--ro-bind", "/dev/null", path]
    if network:
        argv += ["--ro-bind-try", RESOLVED_DIR, RESOLVED_DIR]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(cwd),
        str(cwd),
        "--remount-ro",
        "/",
        "--chdir",
        str(cwd),
        "--json-status-fd",
        str(status_fd),
        "--",
        "/bin/sh",
        "-c",
        command,
    ]
    return argv
