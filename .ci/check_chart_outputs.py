#!/usr/bin/env python3
"""Checks the chart outputs of an executed notebook (Deq.Charts), one line per problem; exit 1 on any.

usage: check_chart_outputs.py NOTEBOOK --png required|absent

A chart output is a display_data whose text/html holds a Deq.Charts div. Each must draw offline:
its HTML carries plotly.js, or an earlier chart output of the notebook did (plotly.js is embedded
once per kernel session). With --png required each also carries a real image/png output (base64 PNG);
with --png absent none does, and a stream output says once that PNGs were skipped.
"""
import base64
import json
import sys

PLOTLY_MARK = "* plotly.js v"       # the licence header of the plotly.min.js that Plotly.NET ships
CHART_MARK = 'class="deq-chart"'
SKIP_MARK = "Deq.Charts: PNGs skipped"


def text(value):
    return "".join(value) if isinstance(value, list) else (value or "")


def main(path, png):
    nb = json.load(open(path, encoding="utf-8"))
    problems, charts, plotly_loaded, skip_lines = [], 0, False, 0
    for index, cell in enumerate(nb["cells"], 1):
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"cell {index}: error output {out.get('ename')}: {out.get('evalue')}")
            if kind == "stream":
                skip_lines += text(out.get("text")).count(SKIP_MARK)
            data = out.get("data", {})
            html = text(data.get("text/html"))
            if CHART_MARK not in html:
                if "image/png" in data:
                    problems.append(f"cell {index}: an image/png output without the chart's HTML beside it")
                continue
            charts += 1
            carries = PLOTLY_MARK in html
            if not (carries or plotly_loaded):
                problems.append(f"cell {index}: chart {charts} has no plotly.js and no earlier chart carried it")
            plotly_loaded |= carries
            if "Plotly.newPlot" not in html:
                problems.append(f"cell {index}: chart {charts} has no Plotly.newPlot call")
            b64 = text(data.get("image/png"))
            if png == "required":
                if not b64:
                    problems.append(f"cell {index}: chart {charts} has no image/png output")
                elif not base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n"):
                    problems.append(f"cell {index}: chart {charts}'s image/png is not a base64 PNG")
            elif b64:
                problems.append(f"cell {index}: chart {charts} has an image/png output although PNGs were off")
    if charts == 0:
        problems.append("no chart output found")
    if png == "absent" and skip_lines != 1:
        problems.append(f"expected one '{SKIP_MARK}' line, found {skip_lines}")
    for p in problems:
        print(f"{path}: {p}")
    print(f"{path}: {charts} chart output(s), png {png}: {'ok' if not problems else 'FAILED'}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] != "--png" or sys.argv[3] not in ("required", "absent"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[3]))
