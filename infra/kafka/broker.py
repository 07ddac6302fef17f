"""Run a real Kafka broker locally: fetch its jars once, format KRaft storage, start, wait, stop.

Everything lives under `Settings.broker_dir` (config, data, log, pid file) and `Settings.jars_dir`
(the jars cache), so two runs with different `XSELL_HOME` and ports never touch each other.

The broker serves PLAINTEXT on `XSELL_KAFKA_BOOTSTRAP`. A test can give it more listeners
(`Listener`: SASL_SSL, with its certificate and SCRAM settings) and SCRAM users created when its
storage is formatted; `xsell stack up` uses neither.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from infra.local_server import LocalServer, port_in_use
from xsell.settings import Settings

HERE = Path(__file__).resolve().parent
JARS_COMPLETE_MARKER = ".complete"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")  # each SCRAM user gets credentials for both
log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be fetched, formatted or started; the message says why and what to do."""


@dataclass(frozen=True)
class Listener:
    """A listener beside the PLAINTEXT one, on the settings' host: its name (e.g. SECURE), security
    protocol (SSL, SASL_PLAINTEXT, SASL_SSL), port, and its own properties, each written as
    `listener.name.<name in lower case>.<key>=<value>` (e.g. `ssl.keystore.location`,
    `sasl.enabled.mechanisms`, `scram-sha-512.sasl.jaas.config`)."""

    name: str
    protocol: str
    port: int
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerStatus:
    """What `xsell stack status` reports for the broker."""

    running: bool
    pid: int | None
    bootstrap: str
    controller_port: int
    data_dir: Path
    log_file: Path


class KafkaBroker:
    """One KRaft broker+controller process on loopback, managed through files under broker_dir.

    `listeners` are served beside PLAINTEXT; `scram_users` (name -> password) get SCRAM-SHA-256 and
    SCRAM-SHA-512 credentials when the storage is formatted, that is on the first start only."""

    def __init__(
        self, settings: Settings, listeners: Sequence[Listener] = (), scram_users: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.listeners = tuple(listeners)
        self.scram_users = dict(scram_users or {})
        self.dir = settings.broker_dir
        self.data_dir = self.dir / "data"
        self.properties_file = self.dir / "server.properties"
        self.log_file = self.dir / "broker.log"
        self.pid_file = self.dir / "broker.pid"
        self.server = LocalServer("broker", self.pid_file, self.log_file, BrokerError, self._owns, tail_lines=40)

    def _owns(self, process: psutil.Process, _recorded: str) -> bool:
        return str(self.properties_file) in process.cmdline()

    # -- jars ---------------------------------------------------------------------------------
    def fetch_jars(self) -> Path:
        """Copy the broker's jars from Maven Central into the cache once; later calls are instant."""
        jars = self.settings.jars_dir
        if (jars / JARS_COMPLETE_MARKER).exists():
            return jars
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise BrokerError("java and mvn are needed to fetch the broker: run `make system-deps`")
        partial = jars.with_name(jars.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        command = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(HERE / "pom.xml"),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.settings.kafka_version}",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        log.info("fetching Kafka %s jars from Maven Central", self.settings.kafka_version)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(f"fetching the broker jars failed:\n{(result.stdout + result.stderr)[-2000:]}")
        (partial / JARS_COMPLETE_MARKER).touch()
        shutil.rmtree(jars, ignore_errors=True)
        partial.rename(jars)
        return jars

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> BrokerStatus:
        """Start the broker in the background (idempotent) and wait until it accepts clients."""
        if self.settings.kafka_security_protocol != "PLAINTEXT":
            raise BrokerError(
                f"the local broker serves PLAINTEXT on {self.settings.kafka_bootstrap}, but "
                f"XSELL_KAFKA_SECURITY_PROTOCOL is {self.settings.kafka_security_protocol}: unset it to run the "
                "local stack, or point XSELL_KAFKA_BOOTSTRAP at your secured broker and do not start a local one"
            )
        if (pid := self.running_pid()) is not None:
            log.info("broker already running (pid %s)", pid)
            self.wait_ready()
            return self.status()
        for port in (self.settings.kafka_port, self.settings.controller_port, *(x.port for x in self.listeners)):
            self.server.ensure_port_free(
                self.settings.kafka_host, port, "XSELL_KAFKA_BOOTSTRAP / XSELL_KAFKA_CONTROLLER_PORT"
            )
        jars = self.fetch_jars()
        self._write_properties()
        self._format_storage(jars)
        process = self.server.launch(
            [
                "java",
                "-Xms128m",
                f"-Xmx{self.settings.kafka_heap_mb}m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                "-cp",
                f"{jars}/*",
                "kafka.Kafka",
                str(self.properties_file),
            ]
        )
        self.wait_ready(process)
        return self.status()

    def wait_ready(self, process: subprocess.Popen[bytes] | None = None) -> None:
        """Loop on a real client call until the broker answers; on timeout raise with its log tail.

        The call goes to the PLAINTEXT listener on `kafka_bootstrap`, which this broker always serves
        (`start` refuses settings that would connect otherwise)."""
        from kafka import KafkaAdminClient  # noqa: PLC0415  (kafka-python is slow to import)
        from kafka.errors import KafkaError  # noqa: PLC0415  (kafka-python is slow to import)

        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        quiet = logging.getLogger("kafka")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            while time.monotonic() < deadline:
                if process is not None and process.poll() is not None:
                    raise BrokerError(f"broker exited with code {process.returncode}:\n{self.log_tail()}")
                if not port_in_use(self.settings.kafka_host, self.settings.kafka_port):
                    time.sleep(0.1)  # a refused client would back off for seconds; a socket probe is instant
                    continue
                try:
                    admin = KafkaAdminClient(
                        bootstrap_servers=self.settings.kafka_bootstrap,
                        request_timeout_ms=3000,
                        client_id="xsell-stack",
                    )
                    admin.list_topics()
                    admin.close()
                    return
                except (KafkaError, OSError, ValueError):
                    time.sleep(0.25)
        finally:
            quiet.setLevel(level)
        raise BrokerError(
            f"broker did not accept clients on {self.settings.kafka_bootstrap} within "
            f"{self.settings.kafka_start_timeout_s:.0f}s; tail of {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after timeout); return True if one was running."""
        return self.server.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL the broker (crash tests)."""
        if (pid := self.running_pid()) is not None:
            os.kill(pid, signal.SIGKILL)
            psutil.Process(pid).wait(10)

    # -- state --------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """Pid of our broker if it is alive (checked against its command line, not just the pid)."""
        return self.server.running_pid()

    def status(self) -> BrokerStatus:
        """Whether the broker runs, with which pid, on which ports."""
        pid = self.running_pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.settings.kafka_bootstrap,
            controller_port=self.settings.controller_port,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the broker log, for error messages."""
        return self.server.log_tail(lines)

    # -- internals ----------------------------------------------------------------------------
    def _write_properties(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        template = (HERE / "server.properties").read_text()
        host = self.settings.kafka_host
        listener_properties = "".join(
            f"listener.name.{listener.name.lower()}.{key}={value}\n"
            for listener in self.listeners
            for key, value in listener.properties.items()
        )
        self.properties_file.write_text(
            template.format(
                host=host,
                port=self.settings.kafka_port,
                controller_port=self.settings.controller_port,
                data_dir=self.data_dir,
                extra_listeners="".join(f",{x.name}://{host}:{x.port}" for x in self.listeners),
                extra_protocols="".join(f",{x.name}:{x.protocol}" for x in self.listeners),
            )
            + listener_properties
        )

    def _format_storage(self, jars: Path) -> None:
        """Format KRaft storage on first start only (meta.properties marks a formatted dir)."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        result = subprocess.run(
            [
                "java",
                "-cp",
                f"{jars}/*",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
                *(
                    argument
                    for user, password in self.scram_users.items()
                    for mechanism in SCRAM_MECHANISMS
                    for argument in ("--add-scram", f'{mechanism}=[name={user},password="{password}"]')
                ),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting broker storage failed:\n{result.stdout}{result.stderr}")


def new_cluster_id() -> str:
    """A KRaft cluster id as `StorageTool random-uuid` makes it, without starting a JVM.

    URL-safe base64 of 16 random bytes, drawn again while it starts with `-`: the StorageTool would
    read such an id after `-t` as an option (Kafka's own `Uuid.randomUuid` redraws for the same reason).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (for tests and side-by-side runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
