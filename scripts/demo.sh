#!/usr/bin/env bash
# Run the main job on a local warehouse: set up, generate a sample data set if there is none,
# apply the pending records with `backfill-assets run`, and say how to open the Dagster UI.
#
#   bash scripts/demo.sh
#
# Environment: BACKFILL_WAREHOUSE (default ./.warehouse), DAGSTER_HOME (default ./.dagster),
# DEMO_ACCOUNTS / DEMO_MONTHS / DEMO_SEED (size of the generated sample), BACKFILL_LAYOUT (a summary
# layout file, docs/layouts/; its tables then go to ./.warehouse-<layout name> unless BACKFILL_WAREHOUSE is set).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bash scripts/setup.sh

warehouse=$root/.warehouse
if [ -n "${BACKFILL_LAYOUT:-}" ]; then
  [ -f "$BACKFILL_LAYOUT" ] || { echo "demo: BACKFILL_LAYOUT: no such file: $BACKFILL_LAYOUT" >&2; exit 2; }
  BACKFILL_LAYOUT=$(cd "$(dirname "$BACKFILL_LAYOUT")" && pwd)/$(basename "$BACKFILL_LAYOUT")
  export BACKFILL_LAYOUT
  layout_name=$(basename "$BACKFILL_LAYOUT")
  warehouse=$root/.warehouse-${layout_name%.*}  # another layout's tables have other columns
  echo "demo: summary layout $BACKFILL_LAYOUT"
fi
export BACKFILL_WAREHOUSE=${BACKFILL_WAREHOUSE:-$warehouse}
export DAGSTER_HOME=${DAGSTER_HOME:-$root/.dagster}
mkdir -p "$BACKFILL_WAREHOUSE" "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

cli=.venv/bin/backfill-assets

# Hadoop-catalog layout: <warehouse>/<namespace>/<table>/metadata/ (default namespace edf_gold).
if [ ! -d "$BACKFILL_WAREHOUSE/edf_gold/accounts_all/metadata" ]; then
  # History up to the last complete month, plus a late delivery still to apply.
  echo "demo: generating a sample data set in $BACKFILL_WAREHOUSE"
  "$cli" generate --accounts "${DEMO_ACCOUNTS:-1000}" --months "${DEMO_MONTHS:-36}" --seed "${DEMO_SEED:-7}"
else
  echo "demo: using the tables already in $BACKFILL_WAREHOUSE"
fi

echo "demo: applying pending records (backfill-assets run)"
"$cli" run

cat <<EOF

demo: done. To browse the asset graph, partitions and this run in the Dagster UI:

  cd $(printf %q "$root")
  ${BACKFILL_LAYOUT:+BACKFILL_LAYOUT=$(printf %q "$BACKFILL_LAYOUT") }BACKFILL_WAREHOUSE=$(printf %q "$BACKFILL_WAREHOUSE") DAGSTER_HOME=$(printf %q "$DAGSTER_HOME") \\
    .venv/bin/dagster dev -h 127.0.0.1 -p 3000

then open http://127.0.0.1:3000 (stop it with Ctrl-C).
EOF
