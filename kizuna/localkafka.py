"""A real Apache Kafka broker (KRaft, single node) for tests and `make kafka`.

The broker's jars come from Maven Central through Maven (deploy/kafka/pom.xml) into a cache
outside the repository; the broker starts on free loopback ports with a small heap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DEPLOY = REPO_ROOT / "deploy" / "kafka"


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kizuna" / "kafka"
    return Path(os.environ.get("KIZUNA_KAFKA_CACHE", default))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_jars() -> Path:
    """Fetch the broker's jars once; later calls reuse the cache."""
    pom = KAFKA_DEPLOY / "pom.xml"
    libs = cache_dir() / "libs"
    stamp = libs / ".complete"
    if stamp.exists() and stamp.read_text() == pom.read_text():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker; install it first")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    stamp.write_text(pom.read_text())
    return libs


@dataclass
class LocalKafka:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    owns_data_dir: bool

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop abruptly, as a crash would (for failure tests)."""
        self.process.kill()
        self.process.wait()


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else shutil.which("java")
    if not java:
        raise RuntimeError("Java 17+ is needed to run the Kafka broker")
    return str(java)


def _write_config(data_dir: Path, port: int, controller_port: int) -> Path:
    config = data_dir / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data_dir / 'logs'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "group.min.session.timeout.ms=1000",
                "auto.create.topics.enable=false",
                "",
            ]
        )
    )
    return config


def _java_command(libs: Path, *args: str) -> list[str]:
    return [
        _java(),
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        *args,
    ]


def start(
    data_dir: Path | None = None, port: int | None = None, timeout: float = 90.0
) -> LocalKafka:
    libs = ensure_jars()
    owns = data_dir is None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="kizuna-kafka-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port, controller_port = _ports(data_dir, port)
    config = _write_config(data_dir, port, controller_port)
    if not (data_dir / "logs" / "meta.properties").exists():
        subprocess.run(
            _java_command(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(config),
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    log = (data_dir / "broker.log").open("ab")
    process = subprocess.Popen(
        _java_command(libs, "kafka.Kafka", str(config)), stdout=log, stderr=subprocess.STDOUT
    )
    broker = LocalKafka(process, port, data_dir, owns)
    deadline = time.monotonic() + timeout
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            tail = (data_dir / "broker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka broker did not start:\n{tail}")
        time.sleep(0.2)
    return broker


def _ports(data_dir: Path, port: int | None) -> tuple[int, int]:
    """Reuse a data directory's ports, so a restarted broker is where clients left it."""
    saved = data_dir / "ports.json"
    if saved.exists():
        broker, controller = json.loads(saved.read_text())
        if port is None or port == broker:
            return int(broker), int(controller)
    ports = (port or _free_port(), _free_port())
    saved.write_text(json.dumps(ports))
    return ports


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local single-node Kafka broker.")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--data-dir", type=Path, default=Path(".kizuna/kafka"))
    args = parser.parse_args()
    broker = start(args.data_dir.resolve(), args.port)
    print(f"Kafka is up at {broker.bootstrap}", flush=True)
    print(
        f"Run the platform on it:  KIZUNA_BUS_URL=kafka://{broker.bootstrap} make dev", flush=True
    )
    try:
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
