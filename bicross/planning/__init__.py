"""The planning room: `bicross plan`, the decision framework measured on this machine.

Given a corpus (or its size and length), a p50 latency budget and optionally a quality floor, it measures the
components of a search here (measure.py, components.py: query encoding, BM25, each dense index kind, fusion,
cross-encoder seconds per pair as a function of pair length), predicts every candidate pipeline's p50 and
memory from them (model.py: the composition, pure functions), reads train/dev `bicross eval` reports for
quality (reports.py), and recommends one (recommend.py), with the reason every other was set aside.
planner.py runs it end to end. It uses the core; the core never imports it. Nothing heavy is imported here:
models load only when a profile is not in the cache.
"""

from __future__ import annotations

from bicross.planning.measure import Measured, MeasureOptions, measure
from bicross.planning.model import LatencyPrediction, Pipeline, predict_latency, predict_memory
from bicross.planning.planner import PlanRequest, PlanResult, make_plan, realise
from bicross.planning.recommend import Candidate, Plan, Requirements, recommend
from bicross.planning.reports import Quality, read_qualities

__all__ = [
    "Candidate",
    "LatencyPrediction",
    "MeasureOptions",
    "Measured",
    "Pipeline",
    "Plan",
    "PlanRequest",
    "PlanResult",
    "Quality",
    "Requirements",
    "make_plan",
    "measure",
    "predict_latency",
    "predict_memory",
    "read_qualities",
    "realise",
    "recommend",
]
