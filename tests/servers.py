"""Real servers for the test suite: PostgreSQL, Redis, Daphne workers of this project, and a
health-checking TCP load balancer in front of workers.

Each binds 127.0.0.1 on a free port, lives in its own temp dir and is torn down by ``stop()``
(all are context managers). Readiness is polled (a connection attempt, ``pg_isready``, an HTTP
request) with a short wait on the child process between attempts, so a server that dies while
starting fails the wait at once with its log instead of timing out.

``manage()`` and ``subprocess_env()`` run this project's own processes with a chosen
environment (DATABASE_URL, REDIS_URL, DISPATCH_VAR_DIR …) and nothing inherited from ours.
"""

from __future__ import annotations

import asyncio
import glob
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
START_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
# The variables dispatch_site/settings.py reads (and every DISPATCH_*): a child of the suite
# gets only the ones a test passes.
SETTINGS_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
}


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This environment minus the settings variables, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SETTINGS_ENV and not name.startswith("DISPATCH_")
    }
    env["DJANGO_SETTINGS_MODULE"] = "dispatch_site.settings"
    return env | overrides


def manage(args: list[str], **env: str) -> str:
    """Run ``manage.py <args>`` in a subprocess with ``env``; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class ServerError(RuntimeError):
    """A server did not start (its log is in the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(ready, process: subprocess.Popen, what: str, log: Path) -> None:
    """Poll ``ready()`` until it is true; fail as soon as ``process`` exits or time runs out.

    On failure the process is killed, so a server that never came up is not left behind.
    """
    try:
        _poll(ready, process, what, log)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise


def _poll(ready, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise ServerError(f"{what} not ready after {START_TIMEOUT}s:\n{_tail(log)}")
        try:
            # Waiting on the child doubles as the poll interval and notices an early death.
            process.wait(timeout=POLL_INTERVAL)
        except subprocess.TimeoutExpired:
            continue
        raise ServerError(f"{what} exited with {process.returncode}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Server:
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster (Debian's binaries) on 127.0.0.1:<free port>.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` system
    user and both initdb and postgres run as that user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-pg-"))
        self.log = self.dir / "postgres.log"
        self.process: subprocess.Popen | None = None
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise ServerError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)")
        self.bin = Path(bins[-1]).parent

    @property
    def url(self) -> str:
        """The DATABASE_URL of the ``postgres`` maintenance database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _as_owner(self) -> dict:
        """Popen arguments that run a child as the ``postgres`` user when we are root.

        Dropping privileges in the child itself (rather than through ``runuser``) keeps the
        server our direct child, so our signals reach it.
        """
        if os.geteuid() != 0:
            return {"cwd": self.dir}
        owner = pwd.getpwnam("postgres")
        return {"cwd": self.dir, "user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        data = self.dir / "data"
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            + ["-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            **self._as_owner(),
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(data), "-h", "127.0.0.1"]
                + ["-p", str(self.port), "-k", str(self.dir)]
                # A test cluster needs no durability; this keeps migrations fast.
                + ["-c", "fsync=off", "-c", "synchronous_commit=off"]
                + ["-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_owner(),
            )
        _wait_until(self._ready, self.process, "postgres", self.log)
        return self

    def _ready(self) -> bool:
        probe = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False).returncode == 0

    def database_create(self, name: str) -> str:
        """Create an empty database and return its DATABASE_URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
        _terminate(self.process, signal.SIGINT)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Server):
    """``redis-server`` without persistence on 127.0.0.1:<free port>; ``restart()`` keeps it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-redis-"))
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_until(self._ready, self.process, "redis-server", self.log)
        return self

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def restart(self) -> None:
        """Stop and start again on the same port: every connection drops, all data is lost."""
        _terminate(self.process)
        self.start()

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class DaphneWorker(_Server):
    """A real Daphne process serving ``dispatch_site.asgi:application``.

    ``env`` is added to a copy of this process's environment (DATABASE_URL, REDIS_URL,
    DISPATCH_CONFIG, DISPATCH_VAR_DIR …). ``start()`` returns once ``GET /health`` answers 200.
    """

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dispatch-daphne-"))
        self.log = self.dir / "daphne.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> DaphneWorker:
        env = subprocess_env(**self.env)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "python"), "-m", "dispatch_site.serve"]
                + ["-b", "127.0.0.1", "-p", str(self.port)]
                + ["dispatch_site.asgi:application"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_until(self._healthy, self.process, "daphne", self.log)
        return self

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def output(self) -> str:
        """What the worker logged so far (for assertion messages)."""
        return _tail(self.log, 200)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), then remove the temp dir."""
        _terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def terminate(self) -> None:
        """SIGTERM, as a deploy does, without waiting: the worker drains, then exits."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, like a crashed server: nothing of the worker runs after this."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class BalancingProxy(_Server):
    """A TCP load balancer on 127.0.0.1 in front of workers, as nginx or HAProxy would be.

    Every ``CHECK_INTERVAL`` it asks each backend ``GET /health``; a new connection goes to the
    next backend (round robin) whose last answer was 200, and bytes are copied both ways until
    either side closes. ``backend_of(port)`` names the backend a client connection (by its
    local port) was sent to. Runs its own event loop in a thread.
    """

    CHECK_INTERVAL = 0.1

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends  # their ports
        self.port = free_port()
        self.healthy: dict[int, bool] = dict.fromkeys(backends, False)
        self.routes: dict[int, int] = {}  # client port -> backend port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._next = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend_of(self, client_port: int) -> int | None:
        return self.routes.get(client_port)

    def start(self) -> BalancingProxy:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve(ready))

        self._thread = threading.Thread(target=run, name="balancing-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise ServerError("the proxy did not start")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        checks = asyncio.ensure_future(self._check_forever())
        ready.set()
        await self._stopped.wait()
        checks.cancel()
        server.close()

    async def _check_forever(self) -> None:
        while True:
            for port in self.backends:
                self.healthy[port] = await self._check(port)
            await asyncio.sleep(self.CHECK_INTERVAL)

    async def _check(self, port: int) -> bool:
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                status = await reader.readline()
                writer.close()
            return status.split()[1:2] == [b"200"]
        except (OSError, TimeoutError, IndexError):
            return False

    def _pick(self) -> list[int]:
        """The healthy backends, the next in turn first."""
        up = [port for port in self.backends if self.healthy[port]]
        self._next += 1
        return up[self._next % len(up) :] + up[: self._next % len(up)] if up else []

    async def _accept(self, client_reader, client_writer) -> None:
        client_port = client_writer.get_extra_info("peername")[1]
        for port in self._pick():
            try:
                backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.routes[client_port] = port
            await asyncio.gather(
                self._pipe(client_reader, backend_writer),
                self._pipe(backend_reader, client_writer),
            )
            return
        client_writer.close()  # no backend: refused, as a proxy answers 502

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)
