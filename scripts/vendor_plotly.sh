#!/usr/bin/env bash
# Vendor plotly.js's "basic" partial bundle (scatter, bar, pie: all the report draws) for the
# report, gzipped: 1.2 MB of JavaScript becomes 0.4 MB, against 4.8 MB for the full bundle that
# the plotly Python package ships. Keep VERSION equal to the plotly.js of the Python package
# (python -c 'import plotly.offline as o; print(o.get_plotlyjs_version())'); a test checks it.
set -euo pipefail
VERSION=${1:-4.1.1}
cd "$(dirname "$0")/../src/fruitspark/report_assets"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "plotly.js-basic-dist-min@$VERSION" >/dev/null && tar xzf ./*.tgz)
gzip -9n < "$work/package/plotly-basic.min.js" > plotly-basic.min.js.gz
cp "$work/package/LICENSE" plotly-LICENSE.txt
