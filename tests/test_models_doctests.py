"""The hand-checkable examples in the docstrings of the modeling modules are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "msli_core.models.late_interaction",
    "msli_core.models.fused_loss",
    "msli_core.models.segmenter",
    "msli_core.models.layers",
    "msli_core.models.baselines",
    "msli_core.metrics",
    "msli_core.evaluate",
    "msli_core.train",
    "msli_core.explain",
    "msli_core.trained",
    "msli_core.explain_view",
    "msli_core.serving.report",
    "msli_core.data.sources",
    "msli_core.data.files",
    "msli_core.data.texttable",
    "msli_core.data.movielens",
    "msli_core.data.timestamps",
    "msli_core.data.interactions",
    "msli_core.jsonable",
    "msli_core.quality",
    "msli_core.limits",
    "msli_core.kinds",
    "msli_core.progress",
    "msli_core.viz.common",
    "msli_core.viz.latency",
    "msli_core.serving.scoring",
    "msli_core.serving.bench",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
