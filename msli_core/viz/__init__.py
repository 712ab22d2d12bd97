"""Plotly figures of MS-LI Lab, shared by the Streamlit pages and the CLI's HTML reports.

Every function takes plain data (a dataset, a list of row dicts, a DataFrame) and returns a
``plotly.graph_objects.Figure``; nothing here imports streamlit or runs a model. Each figure has a
title and axis labels that say what the numbers are; :data:`HOW_TO_READ` holds the sentence the app
shows under each one, so the CLI report and the app tell the same story.

One module per page: :mod:`~msli_core.viz.common` (colours, labels, captions, numbers, ticks, layout,
HTML report), :mod:`~msli_core.viz.data`, :mod:`~msli_core.viz.train`, :mod:`~msli_core.viz.explain`,
:mod:`~msli_core.viz.latency` with :mod:`~msli_core.viz.stages`, and :mod:`~msli_core.viz.whatif`
(the cost model's figures). Every public name is re-exported here: ``viz.serving_ladder(...)``.
"""

from msli_core.viz.common import (
    HOW_TO_READ,
    MODEL_COLORS,
    MODEL_LABELS,
    SEGMENT_COLORS,
    STAGE_COLORS,
    STAGE_LABELS,
    figure_point_count,
    human_number,
    log_ticks,
    ms_text,
    ratio_text,
    set_log_ticks,
    write_html,
)
from msli_core.viz.data import (
    activity_long_tail,
    data_figures,
    history_length_distribution,
    interactions_over_time,
    item_popularity,
)
from msli_core.viz.explain import (
    contribution_heatmap,
    deletion_check,
    history_timeline,
    item_map,
    segment_label,
    within_segment_weights,
)
from msli_core.viz.latency import (
    encoder_parameters,
    latency_figures,
    latency_vs_encoder_size,
    latency_vs_segments,
    serving_ladder,
)
from msli_core.viz.stages import backend_comparison, nearline_update_comparison, stage_cost_bars
from msli_core.viz.train import quality_vs_latency, quality_vs_segments, training_curves
from msli_core.viz.whatif import (
    latency_budget,
    whatif_curve_vs_segments,
    whatif_measured_vs_predicted,
    whatif_stage_bars,
)

__all__ = [
    "HOW_TO_READ",
    "MODEL_COLORS",
    "MODEL_LABELS",
    "SEGMENT_COLORS",
    "STAGE_COLORS",
    "STAGE_LABELS",
    "activity_long_tail",
    "backend_comparison",
    "contribution_heatmap",
    "data_figures",
    "deletion_check",
    "encoder_parameters",
    "figure_point_count",
    "history_length_distribution",
    "history_timeline",
    "human_number",
    "interactions_over_time",
    "item_map",
    "item_popularity",
    "latency_budget",
    "latency_figures",
    "latency_vs_encoder_size",
    "latency_vs_segments",
    "log_ticks",
    "ms_text",
    "nearline_update_comparison",
    "quality_vs_latency",
    "quality_vs_segments",
    "ratio_text",
    "segment_label",
    "serving_ladder",
    "set_log_ticks",
    "stage_cost_bars",
    "training_curves",
    "whatif_curve_vs_segments",
    "whatif_measured_vs_predicted",
    "whatif_stage_bars",
    "within_segment_weights",
    "write_html",
]
