"""The publisher against a broker that wants a password (read from a file) over TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from suite_daemon.config import SuiteConfig
from suite_daemon.config.models import MqttSection, MqttTLS, SuiteSection
from suite_daemon.daemon.context import Submission
from suite_daemon.events import Event, utc_now
from suite_daemon.mqtt.outbox import Outbox
from suite_daemon.mqtt.publisher import Publisher
from suite_daemon.pipeline.correlation import Outcome
from suite_daemon.pipeline.loop import Pipeline
from suite_daemon.pipeline.routing import router
from suite_daemon.pipeline.unassigned import UnassignedCorrelator
from tests.broker import Mosquitto, free_port
from tests.test_outbox_outage import NullJournals


def make_ca_and_server(tmp: Path) -> tuple[Path, Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


def password_file(tmp: Path, user: str, password: str) -> Path:
    path = tmp / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True, timeout=30)
    return path


async def test_password_file_and_tls(tmp_path: Path, suite_id: str) -> None:
    ca, cert, key = make_ca_and_server(tmp_path)
    passwords = password_file(tmp_path, "daemon", "s3cret")
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path,
        anonymous=False,
        extra_conf=f"password_file {passwords}\nlistener {tls_port} 127.0.0.1\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
    )
    broker.start()
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    config = SuiteConfig(
        suite=SuiteSection(id=suite_id, state_dir=tmp_path / "state"),
        mqtt=MqttSection(
            host="127.0.0.1",
            port=tls_port,
            username="daemon",
            password_file=secret,
            tls=MqttTLS(ca_file=ca),
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        ),
    )
    received: list[bytes] = []
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{suite_id}-sub")
    subscriber.username_pw_set("daemon", "s3cret")
    subscriber.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    subscriber.on_message = lambda c, u, m: received.append(bytes(m.payload))
    subscriber.on_connect = lambda c, *a: c.subscribe(f"{config.topic_root}/#", qos=1)
    subscriber.connect("127.0.0.1", tls_port)
    subscriber.loop_start()
    outbox = Outbox(tmp_path / "outbox.sqlite3", 1000)
    await outbox.open()
    publisher = Publisher(config, outbox, utc_now())
    inputs: asyncio.Queue[Submission] = asyncio.Queue()
    pipeline = Pipeline(
        inputs, UnassignedCorrelator(), outbox, router(config.topic_root), NullJournals(), publisher.wake, 0.8
    )
    tasks = [asyncio.create_task(publisher.run()), asyncio.create_task(pipeline.run())]
    try:
        await asyncio.wait_for(publisher.connected.wait(), 20)
        inputs.put_nowait((Outcome(events=[Event("dose.sample", "test", {"ok": True}, "p1")]), None))
        for _ in range(100):
            if any(b'"ok":true' in r for r in received):
                break
            await asyncio.sleep(0.1)
        assert any(b'"ok":true' in r for r in received)
        assert any(b'"state":"online"' in r for r in received)
    finally:
        pipeline.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await outbox.close()
        subscriber.loop_stop()
        broker.stop()


async def test_wrong_password_keeps_retrying_without_crashing(tmp_path: Path, suite_id: str) -> None:
    passwords = password_file(tmp_path, "daemon", "right")
    broker = Mosquitto(tmp_path, anonymous=False, extra_conf=f"password_file {passwords}\n")
    broker.start()
    secret = tmp_path / "mqtt.password"
    secret.write_text("wrong\n")
    config = SuiteConfig(
        suite=SuiteSection(id=suite_id, state_dir=tmp_path / "state"),
        mqtt=MqttSection(
            host=broker.host,
            port=broker.port,
            username="daemon",
            password_file=secret,
            reconnect_min_s=0.1,
            reconnect_max_s=0.2,
        ),
    )
    outbox = Outbox(tmp_path / "outbox.sqlite3", 1000)
    await outbox.open()
    publisher = Publisher(config, outbox, utc_now())
    task = asyncio.create_task(publisher.run())
    try:
        await asyncio.sleep(1.5)
        assert not task.done()  # refused, retrying with backoff, never crashing
        assert not publisher.connected.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
        broker.stop()
