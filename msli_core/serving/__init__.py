"""Serving: staged inference engine, ONNX export, benchmark harness, cost model (docs/design.md §2, §4)."""
