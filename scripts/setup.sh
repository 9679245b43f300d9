#!/usr/bin/env bash
# Idempotent set-up: check what this script cannot install, then the .venv and the Iceberg jar.
#
#   bash scripts/setup.sh
#
# Environment: PYTHON (default python3.11), JAVA_HOME (else `java` on PATH),
# MAVEN_REPO (default ~/.m2/repository; the Spark resource reads the jar from the same place).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.installed"

say() { echo "setup: $*"; }
die() {
  echo "setup: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------- prerequisites

PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  die "Python 3.11 not found ('$PYTHON' is not on PATH). Install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv, or pyenv install 3.11) or set PYTHON=/path/to/python3.11."
fi
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
  die "'$PYTHON' does not run. Install Python 3.11 or set PYTHON=/path/to/python3.11."
[ "$py_version" = "3.11" ] || die "'$PYTHON' is Python $py_version; this project needs Python 3.11 (set PYTHON=/path/to/python3.11)."

JAVA=java
[ -n "${JAVA_HOME:-}" ] && JAVA="$JAVA_HOME/bin/java"
if ! command -v "$JAVA" >/dev/null 2>&1; then
  die "Java 17 not found ('$JAVA'). Spark needs a Java 17 runtime: e.g. apt-get install openjdk-17-jre-headless (or set JAVA_HOME)."
fi
java_version=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
java_major=${java_version%%.*}
[ "$java_major" = "1" ] && java_major=$(echo "$java_version" | cut -d. -f2) # 1.8.0_x -> 8
if [ "$java_major" != "17" ]; then
  die "Java ${java_version:-?} found ('$JAVA'); Spark 3.5 here needs Java 17: e.g. apt-get install openjdk-17-jre-headless, then point JAVA_HOME at it."
fi

# ---------------------------------------------------------------------------- Python environment

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  say "$VENV is broken or not Python 3.11: recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON ($py_version)"
  "$PYTHON" -m venv "$VENV" ||
    die "could not create $VENV (on Debian/Ubuntu: apt-get install python3.11-venv)."
fi

# Reinstall only when pyproject.toml changed since the last successful install (the install is editable).
want=$(cksum <pyproject.toml)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/backfill-assets" ]; then
  say "Python packages up to date"
else
  say "installing the package and its dev tools into $VENV (first time: 1-4 minutes, ~1 GB)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  "$VENV/bin/python" -m pip install --quiet --no-input -e '.[dev]'
  echo "$want" >"$STAMP"
fi

# ---------------------------------------------------------------------------- Iceberg runtime jar

# Artifact and jar path come from the Spark resource, so set-up caches exactly the jar it looks for.
iceberg=$("$VENV/bin/python" -c 'from backfill_assets.resources.spark import ICEBERG_ARTIFACT as a, local_iceberg_jar as j
print(a, j())') || die "could not import backfill_assets.resources.spark with $VENV/bin/python."
read -r ICEBERG_ARTIFACT jar <<<"$iceberg"
repo=${MAVEN_REPO:-$HOME/.m2/repository}
if [ -f "$jar" ]; then
  say "Iceberg runtime jar present ($jar)"
elif command -v mvn >/dev/null 2>&1; then
  say "fetching $ICEBERG_ARTIFACT with Maven"
  if ! log=$(mvn -q -B -Dmaven.repo.local="$repo" dependency:get -Dartifact="$ICEBERG_ARTIFACT" -Dtransitive=false 2>&1); then
    echo "$log" >&2
    die "mvn could not fetch $ICEBERG_ARTIFACT (is Maven Central reachable?)."
  fi
  [ -f "$jar" ] || die "mvn finished but $jar is missing."
else
  # The Spark resource then sets spark.jars.packages, and Spark resolves the jar (via Ivy, from
  # Maven Central) when its first session starts; that needs network at run time, not here.
  say "WARNING: Maven (mvn) not found, so the Iceberg jar is not cached; Spark will download"
  say "         $ICEBERG_ARTIFACT itself on first start. To cache it: apt-get install maven, rerun."
fi

say "ready ($VENV, Python $py_version, Java $java_version)"
