"""The local Neo4j Community server that attrgraph builds and runs itself.

Neo4j 5.26 LTS comes from Maven Central (``org.neo4j:neo4j`` + ``org.neo4j:neo4j-bolt``).
A ten-line Java main (``graph/launcher``) starts the DBMS with only the Bolt connector,
bound to 127.0.0.1, with authentication on (plus any ``extra_config`` settings, e.g. TLS on
Bolt). Maven runs once per launcher version and the jars are cached under ``$ATTRGRAPH_HOME/dist``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LauncherError
from .settings import LocalNeo4jSettings, private_dir

LAUNCHER_SRC = Path(__file__).resolve().parent / "launcher"
READY_MARK = "ATTRGRAPH_NEO4J_READY"
MAIN_CLASS = "attrgraph.launcher.Main"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    uri: str
    home: Path
    message: str


def _launcher_digest() -> str:
    h = hashlib.sha256()
    for f in sorted(LAUNCHER_SRC.rglob("*")):
        if f.is_file() and "target" not in f.relative_to(LAUNCHER_SRC).parts:
            h.update(str(f.relative_to(LAUNCHER_SRC)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _is_our_java(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return MAIN_CLASS.encode() in cmd


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class LocalNeo4j:
    """Build, start, stop and inspect the local Neo4j.

    Starting an instance that already runs is a no-op; a stale pid file is cleaned up;
    a port held by another process is reported, never taken over.
    """

    def __init__(self, settings: LocalNeo4jSettings | None = None):
        self.settings = settings or LocalNeo4jSettings.from_env()

    # -- paths ---------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.settings.home / "run" / "neo4j.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.home / "logs" / "launcher.log"

    @property
    def dist(self) -> Path:
        return self.settings.dist_dir / f"launcher-{_launcher_digest()}"

    # -- build ---------------------------------------------------------------------
    def ensure_built(self) -> Path:
        """Fetch Neo4j's jars with Maven and compile the launcher (once)."""
        dist = self.dist
        if (dist / "READY").exists():
            return dist
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise LauncherError(
                    f"'{tool}' is not on PATH: the local Neo4j needs Java 17+ and Maven. "
                    "Install them, or point attrgraph at another Neo4j with NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD."
                )
        build = dist.with_name(dist.name + ".build")
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(LAUNCHER_SRC, build / "src", ignore=shutil.ignore_patterns("target"))
        cmd = [
            "mvn", "-q", "-B", "-f", str(build / "src" / "pom.xml"),
            "package", "dependency:copy-dependencies", f"-DoutputDirectory={build / 'lib'}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise LauncherError(f"building the Neo4j launcher failed ({' '.join(cmd)}):\n{tail}")
        jar = next((build / "src" / "target").glob("attrgraph-neo4j-launcher-*.jar"))
        shutil.copy2(jar, build / "lib" / "attrgraph-neo4j-launcher.jar")
        shutil.rmtree(build / "src")
        (build / "READY").write_text(_launcher_digest())
        shutil.rmtree(dist, ignore_errors=True)
        build.rename(dist)
        return dist

    # -- lifecycle -----------------------------------------------------------------
    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> ServerStatus:
        s = self.settings
        pid = self._read_pid()
        if pid is None:
            return ServerStatus(False, None, s.uri, s.home, "not running")
        if not _pid_alive(pid) or not _is_our_java(pid):
            return ServerStatus(False, pid, s.uri, s.home, f"not running (stale pid file for pid {pid})")
        if not _port_open(s.host, s.port):
            return ServerStatus(True, pid, s.uri, s.home, f"starting (pid {pid}), Bolt not answering yet")
        return ServerStatus(True, pid, s.uri, s.home, f"running (pid {pid}) at {s.uri}")

    def start(self, *, wait: bool = True) -> ServerStatus:
        s = self.settings
        st = self.status()
        if st.running:
            if wait:
                self._wait_ready(st.pid)
            return self.status()
        if st.pid is not None:  # stale pid file from a dead run
            self.pid_file.unlink(missing_ok=True)
        if _port_open(s.host, s.port):
            raise LauncherError(
                f"port {s.port} on {s.host} is already in use by another process; stop it, or choose "
                "another port with ATTRGRAPH_NEO4J_PORT (or --port)"
            )
        dist = self.ensure_built()
        private_dir(s.home)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        s.password(create=True)
        cmd = [
            # A fixed-size heap (no resizing under load) and the throughput collector: on 2 cores the
            # JVM spent less CPU per bulk ingest this way than with G1 (bench/bench_ingest.py).
            "java", f"-Xms{s.heap_mb}m", f"-Xmx{s.heap_mb}m", "-XX:+UseParallelGC", "-Dfile.encoding=UTF-8",
            "-cp", f"{dist / 'lib'}/*", MAIN_CLASS,
            str(s.home / "dbms"), s.host, str(s.port), str(s.password_file), str(s.pagecache_mb),
        ]
        if s.extra_config:  # further Neo4j settings (e.g. TLS on Bolt), written beside the data each start
            extra = s.home / "run" / "extra.conf"
            extra.write_text("".join(f"{k}={v}\n" for k, v in s.extra_config), encoding="utf-8")
            cmd.append(str(extra))
        with open(self.log_file, "ab") as log:
            offset = log.tell()
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} port {s.port}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=s.home,
            )
        self.pid_file.write_text(str(proc.pid))
        if wait:
            self._wait_ready(proc.pid, proc, log_offset=offset)
        return self.status()

    def _wait_ready(self, pid: int | None, proc: subprocess.Popen | None = None, log_offset: int | None = None) -> None:
        """Wait for Bolt; after a fresh launch also for the launcher's ready line, which
        comes after the password is set (Bolt opens a moment before that)."""
        s = self.settings
        deadline = time.monotonic() + s.start_timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LauncherError(
                    f"Neo4j exited with code {proc.returncode} while starting; last lines of {self.log_file}:\n"
                    + self.log_tail()
                )
            if pid is not None and not _pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise LauncherError(f"Neo4j (pid {pid}) died while starting; see {self.log_file}:\n" + self.log_tail())
            if _port_open(s.host, s.port) and (log_offset is None or self._ready_logged(log_offset)):
                return
            time.sleep(0.25)
        raise LauncherError(f"Neo4j did not open Bolt on {s.uri} within {s.start_timeout_s:.0f}s; see {self.log_file}")

    def stop(self, timeout_s: float = 60.0) -> ServerStatus:
        pid = self._read_pid()
        if pid is None or not _pid_alive(pid) or not _is_our_java(pid):
            self.pid_file.unlink(missing_ok=True)
            return self.status()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        try:  # reap it if it is our child (the test session starts it directly)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self.pid_file.unlink(missing_ok=True)
        s = self.settings
        return ServerStatus(False, None, s.uri, s.home, f"stopped (was pid {pid})")

    def _ready_logged(self, offset: int) -> bool:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(offset)
                return READY_MARK.encode() in fh.read()
        except OSError:
            return False

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
