"""Serving: staged inference engine, ONNX export, benchmark harness, cost model (DESIGN §2, §4)."""
