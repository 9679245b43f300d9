"""The same run on a Spark standalone cluster (losing a worker mid-run), and a batch ten times the usual size."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import SparkSession

from backfill_assets.generate import generate, write
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import CliRun, Lake

SPARK_CLASS = str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _records(df: Any) -> list[dict[str, Any]]:
    return [r.asDict() for r in df.collect()]


def generated_lake(spark: SparkSession, spark_resource: SparkIceberg, accounts: int, late_fraction: float) -> Lake:
    """A generated warehouse with its late batch waiting, and the reference model fed the same records."""
    lake = Lake(spark, spark_resource)
    data = generate(spark, accounts=accounts, months=36, end_month="2024-06", seed=5, late_fraction=late_fraction)
    write(data, lake.lakehouse)
    lake.model.deliver(_records(data.history))
    lake.model.run()
    lake.model.deliver(_records(data.late))
    return lake


def test_a_batch_ten_times_the_usual_size_is_exact(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    """Every account late (the usual batch is 10 % of them), on the test session's 2 GB driver."""
    lake = generated_lake(spark, spark_resource, accounts=800, late_fraction=1.0)
    report = lake.run()
    assert report.metadata["classified_accounts"]["case_III"] > 800
    lake.assert_matches_model()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A standalone master and two one-core workers on 127.0.0.1, from the installed pyspark."""

    def __init__(self, log_dir: Path) -> None:
        self.port, self.ui = _port(), _port()
        self.url = f"spark://127.0.0.1:{self.port}"
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
        self.log_dir = log_dir
        self.master = self._start(
            "master",
            env,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui),
        )
        self._wait(lambda page: '"status" : "ALIVE"' in page, "master")
        worker = [
            "org.apache.spark.deploy.worker.Worker",
            self.url,
            "--host",
            "127.0.0.1",
            "--cores",
            "1",
            "--memory",
            "2g",
            "--webui-port",
            "0",
        ]
        self.workers = [self._start(f"worker{i}", env, *worker) for i in (1, 2)]
        self._wait(lambda page: page.count('"state" : "ALIVE"') >= 2, "two workers")

    def _start(self, name: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        return subprocess.Popen(
            [SPARK_CLASS, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=5) as response:
                    if ready(response.read().decode()):
                        return
            except OSError:
                pass
            time.sleep(1)
        raise AssertionError(f"standalone cluster: no {what} after 120 s (logs in {self.log_dir})")

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """kill -9 of a daemon and the executors it launched (its process group)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(60)

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            self.kill(process)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path)
    yield started
    started.stop()


def test_a_standalone_cluster_run_losing_a_worker_is_exact(
    spark: SparkSession, spark_resource: SparkIceberg, cluster: Cluster
) -> None:
    """Configured only through the Spark resource (`master`); Spark retries the lost worker's tasks."""
    lake = generated_lake(spark, spark_resource, accounts=600, late_fraction=0.3)
    lake.lakehouse.ensure_tables()
    run = CliRun(lake, "summary_merge:0", master=cluster.url)
    run.wait_for("summary_merge")
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.ui}/json/", timeout=10) as response:
        master = response.read().decode()
    assert '"name" : "backfill_assets"' in master.split('"activeapps"')[1].split('"completedapps"')[0]  # on it
    Cluster.kill(cluster.workers[0])  # the MERGE's tasks are running on both workers
    assert run.process.wait(900) == 0, "".join(list(run.lines.queue)[-40:])
    lake.model.run()
    lake.assert_matches_model()
