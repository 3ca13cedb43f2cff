"""Brook's production topology on one machine: PostgreSQL, Redis, N ASGI workers and nginx in front.

``make run-prod`` runs ``python -m deploy.stack start`` and ``make stop-prod`` runs ``... stop``; the tests in
``tests/deploy/`` start the same stack on free ports. docs/operations.md explains every part and every variable.

Everything the stack starts is a child process with a pid file in the state directory (``.prod/`` by default), its
output in ``.prod/logs/``, so ``stop`` finds it again from another shell.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import multiprocess

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"
UVICORN_LOGGING = Path(__file__).resolve().parent / "uvicorn-logging.json"
NGINX = "/usr/sbin/nginx"
SERVERS = ("daphne", "uvicorn")


class StackError(RuntimeError):
    """Something the stack needs is missing or did not start; the message says what to do."""


@dataclass
class StackConfig:
    state_dir: Path
    database_url: str
    redis_url: str | None = None  # None: start a redis-server of the stack's own on ``redis_port``
    workers: int = 2
    servers: Sequence[str] = ("daphne",)  # one per worker, the last repeated: ("daphne", "uvicorn") mixes them
    port: int = 8080  # nginx
    worker_ports: Sequence[int] = ()  # default: port + 21, + 22, ...
    redis_port: int = 6390
    env: dict[str, str] = field(default_factory=dict)  # more settings for the workers (README, "Configuration")
    prepare: bool = True  # create the database if missing, migrate, collect static files, ensure the demo tenant

    def server_of(self, index: int) -> str:
        return self.servers[min(index, len(self.servers) - 1)]

    def port_of(self, index: int) -> int:
        return self.worker_ports[index] if self.worker_ports else self.port + 21 + index


def python() -> str:
    return sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (all held at once while they are picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def get(port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Stack:
    """A running stack (or the pid files of one): start it, stop it, and stop or start one part of it."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state = config.state_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # --- Paths and settings -----------------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return self.config.redis_url or f"redis://127.0.0.1:{self.config.redis_port}/0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def worker_port(self, index: int) -> int:
        return self.config.port_of(index)

    def _pid_file(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def _secret_key(self) -> str:
        if os.environ.get("SECRET_KEY"):
            return os.environ["SECRET_KEY"]
        path = self.state / "secret_key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(50))
        return path.read_text().strip()

    @property
    def metrics_dir(self) -> Path:
        return self.state / "metrics"

    def environment(self) -> dict[str, str]:
        """What every worker (and manage.py) of the stack runs with: production settings, behind one proxy."""
        port = self.config.port
        return {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": self._secret_key(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port},http://localhost:{port}",
            "DATABASE_URL": self.config.database_url,
            "REDIS_URL": self.redis_url,
            "BROOK_PROXY_HOPS": "1",
            "BROOK_SERVE_STATIC": "0",
            "STATIC_ROOT": str(self.state / "static"),
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            # Every worker writes its metrics here; /metrics on any of them adds them all up (docs/metrics.md).
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            **self.config.env,
        }

    # --- Starting ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running():
            raise StackError(f"A stack is already running from {self.state} (make stop-prod stops it).")
        for folder in ("pids", "logs", "tmp"):
            (self.state / folder).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)  # counters start again with the stack, as Prometheus wants
        self.metrics_dir.mkdir()
        try:
            if self.config.redis_url is None:
                self.start_redis()
            if self.config.prepare:
                self.prepare()
            for index in range(self.config.workers):
                self.start_worker(index)
            for index in range(self.config.workers):
                self.wait_ready(index)
            self.start_nginx()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        for folder in ("pids", "logs"):
            (self.state / folder).mkdir(parents=True, exist_ok=True)
        log = (self.state / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._pid_file(name).write_text(str(process.pid))
        self._children[name] = process
        return process

    def start_redis(self) -> None:
        port = self.config.redis_port
        self._spawn(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis(port=port, socket_connect_timeout=0.5).ping()
                return
            except Exception:
                time.sleep(0.05)
        raise StackError(f"redis-server did not answer on port {port}; see {self.state}/logs/redis.log")

    def restart_redis(self, *, down_seconds: float = 0.5) -> None:
        """Stop the stack's own Redis (it keeps nothing on disk) and start it again on the same port."""
        self.stop_part("redis", signal.SIGKILL)
        time.sleep(down_seconds)
        self.start_redis()

    def _manage(self, *args: str) -> None:
        done = subprocess.run(  # noqa: S603 - our own manage.py
            [python(), "manage.py", *args], cwd=ROOT, env=self.environment(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def prepare(self) -> None:
        ensure_database(self.config.database_url)
        self._manage("migrate", "--noinput")
        self._manage("collectstatic", "--noinput", "--clear")
        self._manage("brook_setup")

    def worker_command(self, index: int) -> list[str]:
        port = str(self.worker_port(index))
        server = self.config.server_of(index)
        if server == "daphne":
            # -v 0: no plain-text access log on stdout (nginx keeps the access log; worker logs stay JSON).
            return [python(), "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", port, "config.asgi:application"]
        if server == "uvicorn":
            return [
                python(),
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--lifespan",
                "off",
                "--no-proxy-headers",  # Brook reads X-Forwarded-For itself (BROOK_PROXY_HOPS), as with Daphne
                "--no-access-log",  # nginx keeps the access log
                # uvicorn's loggers hand their lines to Django's root logger, so they come out as JSON too.
                "--log-config",
                str(UVICORN_LOGGING),
                "--timeout-graceful-shutdown",
                "10",
            ]
        raise StackError(f"Unknown ASGI server {server!r}; Brook runs on: {', '.join(SERVERS)}.")

    def start_worker(self, index: int, *, wait: bool = False) -> None:
        """Start worker ``index`` (again, after it died: its old process is reaped first)."""
        old = self._children.pop(f"worker-{index}", None)
        if old is not None:
            old.poll()
            # A worker that died without exiting (kill -9) left its live gauges behind: they are not live any more.
            multiprocess.mark_process_dead(old.pid, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        self._spawn(f"worker-{index}", self.worker_command(index), self.environment())
        if wait:
            self.wait_ready(index)

    def wait_ready(self, index: int, timeout: float = 30.0) -> None:
        """Until the worker's /readyz answers 200: migrations applied, cache and channel layer reachable."""
        name, port = f"worker-{index}", self.worker_port(index)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self._children.get(name)
            if process is not None and process.poll() is not None:
                raise StackError(f"{name} exited with {process.returncode}; see {self.state}/logs/{name}.log")
            try:
                if get(port, "/readyz") == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        raise StackError(f"{name} was not ready on port {port} within {timeout:.0f} s")

    def nginx_config(self) -> str:
        ports = [self.worker_port(index) for index in range(self.config.workers)]
        fields = {
            # As root, nginx's workers would switch to nobody, who cannot write the state directory.
            "user": f"user {_user_name()};" if os.geteuid() == 0 else "",
            "state_dir": str(self.state),
            "mime_types": "/etc/nginx/mime.types",
            "listen": f"127.0.0.1:{self.config.port}",
            "static_root": str(self.state / "static"),
            "upstream_servers": "\n".join(
                f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in ports
            ),
        }
        text = NGINX_TEMPLATE.read_text()
        for key, value in fields.items():
            text = text.replace("{{ " + key + " }}", value)
        if "{{" in text:
            raise StackError(f"deploy/nginx.conf has a field the stack does not fill: {text[text.index('{{') :][:40]}")
        return text

    def start_nginx(self) -> None:
        if not Path(NGINX).exists():
            raise StackError(f"nginx is not installed ({NGINX}); apt-get install nginx-light")
        for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.state / "tmp" / folder).mkdir(parents=True, exist_ok=True)
        config = self.state / "nginx.conf"
        config.write_text(self.nginx_config())
        nginx = [NGINX, "-p", str(self.state), "-c", str(config), "-e", str(self.state / "logs" / "nginx-error.log")]
        checked = subprocess.run([*nginx, "-t", "-q"], capture_output=True, text=True)  # noqa: S603
        if checked.returncode != 0:
            raise StackError(f"nginx refused its configuration:\n{checked.stderr}")
        self._spawn("nginx", nginx)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if get(self.config.port, "/healthz") == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        raise StackError(f"nginx did not answer on port {self.config.port}; see {self.state}/logs/nginx-error.log")

    # --- Stopping ---------------------------------------------------------------------------------------------------

    def parts(self) -> list[str]:
        folder = self.state / "pids"
        return sorted(path.stem for path in folder.glob("*.pid")) if folder.exists() else []

    def pid(self, name: str) -> int | None:
        try:
            return int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> list[str]:
        return [name for name in self.parts() if self._live_pid(name) is not None]

    def _live_pid(self, name: str) -> int | None:
        """The part's pid if that process is alive and still the part (a stale pid file may name a reused pid)."""
        pid = self.pid(name)
        if pid is None or not _alive(pid):
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return pid
        marker = {"nginx": b"nginx", "redis": b"redis-server"}.get(name, b"config.asgi")
        return pid if marker in command else None

    def stop_part(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Send ``sig`` to one part and wait until it is gone (SIGKILL after ``timeout``)."""
        pid = self._live_pid(name)
        if pid is not None:
            os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                self._reap(name)
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._reap(name, wait=True)
        self._pid_file(name).unlink(missing_ok=True)

    def _reap(self, name: str, *, wait: bool = False) -> None:
        process = self._children.get(name)
        if process is None:
            return
        if wait:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            del self._children[name]
        else:
            process.poll()

    def stop(self) -> list[str]:
        """Stop nginx, then the workers (they finish their requests), then Redis; what was stopped."""
        order = sorted(self.parts(), key=lambda name: (name != "nginx", name == "redis", name))
        for name in order:
            self.stop_part(name)
        return order


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database the URL names when it does not exist yet (SQLite creates its own file)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        return
    import psycopg
    from psycopg import sql

    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as error:
        raise StackError(f"PostgreSQL at {parts.hostname}:{parts.port or 5432} is not reachable: {error}") from error


def config_from_env(environ: dict[str, str] | None = None) -> StackConfig:
    """``make run-prod``'s settings (docs/operations.md, "make run-prod")."""
    environ = dict(os.environ if environ is None else environ)
    server = environ.get("BROOK_PROD_SERVER", "uvicorn")
    if server not in SERVERS:
        raise StackError(f"BROOK_PROD_SERVER={server!r}; use one of: {', '.join(SERVERS)}.")
    return StackConfig(
        state_dir=Path(environ.get("BROOK_PROD_DIR", ROOT / ".prod")).resolve(),
        database_url=environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/brook_prod",
        redis_url=environ.get("REDIS_URL") or None,
        workers=_positive(environ, "BROOK_PROD_WORKERS", 2),
        servers=(server,),
        port=_positive(environ, "BROOK_PROD_PORT", 8080),
        redis_port=_positive(environ, "BROOK_PROD_REDIS_PORT", 6390),
    )


def _positive(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise StackError(f"{name}={raw!r} must be a whole number of at least 1.")
    return int(raw)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        config = config_from_env()
        stack = Stack(config)
        if args.command == "start":
            stack.start()
            workers = ", ".join(f"{config.server_of(i)} :{stack.worker_port(i)}" for i in range(config.workers))
            print(f"Brook is up at {stack.url}/ (nginx) with {config.workers} workers ({workers}).")
            print(f"Redis: {stack.redis_url}; database: {config.database_url}; logs: {stack.state}/logs/")
            print("Stop it with: make stop-prod")
        elif args.command == "stop":
            stopped = stack.stop()
            print(f"Stopped: {', '.join(stopped)}" if stopped else "Nothing was running.")
        else:
            running = stack.running()
            print(f"Running: {', '.join(running)}" if running else "Nothing is running.")
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
