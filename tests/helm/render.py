"""Renders a Helm chart with Helm's own engine (Helm v4's Go SDK, from PyPI's helm-python-sdk)
and lints it, for tests/tests/deployment.rs.

Usage: render.py CHART RELEASE NAMESPACE VALUES_JSON
Prints one JSON object: {"lint": {...}, "manifests": {template path: text}} or {"error": text}.
"""
import json
import sys

import helm_python as helm


def main():
    chart_dir, release, namespace, values = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    out = {"helm": helm.helm_sdk_version(), "lint": helm.lint(chart_dir, values=values)}
    try:
        with helm.Chart.load(chart_dir) as chart:
            out["manifests"] = chart.render(values, name=release, namespace=namespace)
    except helm.HelmError as e:
        out["error"] = str(e)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
