"""The Grafana dashboard (deploy/grafana/dashboards/scott-serve.json) against what the real server exports.

Every panel query is parsed with a PromQL parser; each series it names must be one the running server
(tiny model, one generation) exports on /metrics, with the labels it filters or groups by, and counters and
histograms must be read through rate(). A metric renamed in server/metrics.py fails here, not silently on
a dashboard of empty panels.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.deploy import ROOT, TARGET_LABELS, exported_series

promql = pytest.importorskip("promql_parser", reason="the dev extra installs promql-parser")

DASHBOARD = ROOT / "deploy/grafana/dashboards/scott-serve.json"
RATE_FUNCTIONS = {"rate", "irate", "increase"}
CUMULATIVE = ("_total", "_bucket", "_sum", "_count")  # counters and histogram series: only their rate means anything
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Selector:
    name: str
    labels: frozenset[str]  # label names in the matchers
    functions: tuple[str, ...]  # enclosing functions, outermost first


@dataclass
class Query:
    expr: str
    selectors: list[Selector] = field(default_factory=list)
    groupings: list[tuple[frozenset[str], list[Selector]]] = field(default_factory=list)  # by/without labels
    quantiles: list[tuple[float, list[Selector], frozenset[str]]] = field(default_factory=list)

    def names(self) -> set[str]:
        return {s.name for s in self.selectors}


def analyse(expr: str) -> Query:
    text = expr
    for variable, value in GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    query = Query(expr)
    _visit(promql.parse(text), (), query)  # raises ValueError on a syntax error
    return query


def _visit(node: Any, functions: tuple[str, ...], query: Query) -> list[Selector]:
    match node:
        case promql.VectorSelector():
            matchers = frozenset(m.name for m in node.matchers.matchers)
            selector = Selector(node.name, matchers, functions)
            query.selectors.append(selector)
            return [selector]
        case promql.MatrixSelector():
            return _visit(node.vector_selector, functions, query)
        case promql.Call():
            name = node.func.name
            inner = [s for arg in node.args for s in _visit(arg, (*functions, name), query)]
            if name == "histogram_quantile":
                grouped = (
                    frozenset(node.args[1].modifier.labels) if isinstance(node.args[1], promql.AggregateExpr) else None
                )
                query.quantiles.append((node.args[0].val, inner, grouped or frozenset()))
            return inner
        case promql.AggregateExpr():
            inner = _visit(node.expr, functions, query)
            if node.modifier is not None:
                query.groupings.append((frozenset(node.modifier.labels), inner))
            return inner
        case promql.BinaryExpr():
            return _visit(node.lhs, functions, query) + _visit(node.rhs, functions, query)
        case promql.ParenExpr() | promql.UnaryExpr() | promql.SubqueryExpr():
            return _visit(node.expr, functions, query)
        case _:  # number and string literals
            return []


@functools.cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield from panel.get("panels", [])  # collapsed rows hold their panels
        if panel["type"] != "row":
            yield panel


def queries() -> list[tuple[str, Query]]:
    return [(p["title"], analyse(t["expr"])) for p in panels() for t in p["targets"]]


@pytest.fixture(scope="module")
def series(live_server) -> dict[str, set[str]]:
    return exported_series(live_server.url)


# -- every query against the server ----------------------------------------------------------------------


def test_queries_parse_and_name_only_exported_series(series: dict[str, set[str]]) -> None:
    assert len(queries()) >= 10
    for title, query in queries():
        for selector in query.selectors:
            assert selector.name in series, f"{title!r}: {selector.name} is not exported (exported: {sorted(series)})"
            unknown = selector.labels - series[selector.name] - TARGET_LABELS
            assert not unknown, f"{title!r}: {selector.name} has no label {sorted(unknown)}"


def test_grouping_labels_exist_on_the_grouped_series(series: dict[str, set[str]]) -> None:
    for title, query in queries():
        for labels, inner in query.groupings:
            available = set().union(*(series[s.name] for s in inner)) | TARGET_LABELS
            assert labels <= available, f"{title!r}: groups by {sorted(labels - available)}, which no series has"


def test_counters_and_histograms_are_read_through_rate() -> None:
    for title, query in queries():
        for selector in query.selectors:
            in_rate = bool(RATE_FUNCTIONS & set(selector.functions))
            cumulative = selector.name.endswith(CUMULATIVE)
            assert in_rate == cumulative, (
                f"{title!r}: {selector.name} {'needs' if cumulative else 'is a gauge, no'} rate()"
            )


def test_quantiles_come_from_buckets_grouped_by_le() -> None:
    for title, query in queries():
        for q, inner, grouped in query.quantiles:
            assert 0 < q < 1
            assert inner and all(s.name.endswith("_bucket") for s in inner), f"{title!r}: quantile of non-buckets"
            assert "le" in grouped, f"{title!r}: histogram_quantile needs `sum by (le, ...)`"


def test_template_variable_reads_an_exported_series(series: dict[str, set[str]]) -> None:
    for variable in dashboard()["templating"]["list"]:
        definition = variable["definition"]
        assert definition.startswith("label_values(") and definition.endswith(")")
        metric, label = (part.strip() for part in definition[len("label_values(") : -1].split(","))
        assert metric in series and label in TARGET_LABELS | series[metric]


# -- what the issue asks the dashboard to show -----------------------------------------------------------


def _quantiles_of(metric: str) -> set[float]:
    return {q for _, query in queries() for q, inner, _ in query.quantiles if {s.name for s in inner} == {metric}}


def _grouped_by(metric_prefix: str) -> set[str]:
    return {
        label
        for _, query in queries()
        for labels, inner in query.groupings
        if any(s.name.startswith(metric_prefix) for s in inner)
        for label in labels
    }


def test_dashboard_shows_what_the_issue_asks() -> None:
    names = set().union(*(query.names() for _, query in queries()))
    assert {0.5, 0.95, 0.99} <= _quantiles_of("scott_request_duration_seconds_bucket"), "p50/p95/p99 latency"
    assert {0.5, 0.95, 0.99} <= _quantiles_of("scott_queue_wait_seconds_bucket"), "queue wait quantiles"
    assert "scott_queue_depth" in names
    assert {"scott_batch_size_sum", "scott_batch_size_count"} <= names, "mean batch size"
    assert "scott_images_generated_total" in names, "images/s"
    assert "reason" in _grouped_by("scott_rejections"), "rejections by reason"
    assert "stage" in _grouped_by("scott_inference_stage_seconds"), "per-stage time (text, unet, vae)"


def test_panel_layout_is_sane() -> None:
    all_panels = list(panels())
    assert len({p["id"] for p in all_panels}) == len(all_panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{panel['title']!r} leaves the 24-column grid"
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']!r} overlaps another panel"
        cells |= area
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["title"] and refs and len(set(refs)) == len(refs)
    assert dashboard()["uid"] == "scott-serve"
