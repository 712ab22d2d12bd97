"""ONNX export of the nearline encoders and the online scorer, and ONNX Runtime sessions for them.

Three graphs per MS-LI model (``msli export --model DIR --out FILE.onnx``), one per stage of
:meth:`MSLIModel.score_histories` after the offline item table:

- ``FILE.onnx`` — the **online scorer**: inputs ``segment_vectors`` (B, K, d) float32,
  ``segment_mask`` (B, K) bool, ``item_vectors_t`` (d, N) float32 (the item table *transposed*, so the
  one product ``[u; q] (B, 2K, d) @ (d, N)`` streams contiguous rows, as the torch engine does);
  outputs ``scores`` (B, N) and ``contributions`` (B, K, N). B and N are dynamic; K is the model's
  (its age bias has K entries). The aggregation is :func:`aggregate`, the one the model trains with.
- ``FILE.segment_encoder.onnx`` — the **closed-segment encoder** (:meth:`MSLIModel.encode_segments`)
  with the offline item table baked in as a constant: input ``segment_items`` (B', S) int64 (one closed
  segment per row, 0-padded on the right), outputs ``segment_vectors`` (B', d) (attention-pooled; zeros
  for an all-padding row) and ``pooling_weights`` (B', S). B' (closed segments in a batch: at most K-O
  per user, each encoded once, when it closes) and S (≤ the model's S) are dynamic.
- ``FILE.open_encoder.onnx`` — the **open-window encoder** (:meth:`MSLIModel.open_vector`), item table
  baked in: input ``window_items`` (B, T) int64, the last ``max_len`` events of each user, left-aligned
  and 0-padded on the right; output ``open_vectors`` (B, O, d), the open slots ``u_{K-O}..u_{K-1}``
  (O = 1: the encoder's state at the last real event plus the recency path; O = 2, a model with
  ``recency_slot``: the state, then the recency path; zeros for an empty window). B and T (≤ the
  model's ``max_len``) are dynamic. Re-run on every new event (no KV cache in the graph).

Every file is written atomically, checked with ``onnx.checker`` and marked as msli's (:data:`MARK_KEY` in
its ``metadata_props``): an existing file at any of these paths is replaced only when it carries that
mark, so a model the user made is never overwritten. Optional int8 dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``) of both encoders and of a *catalog scorer* (the scorer
with the item table baked in, so its big MatMul gets int8 weights and reads 4× fewer bytes).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.models.late_interaction import aggregate
from msli_core.outputs import atomic_write_bytes, check_can_create

OPSET = 17
# Every file msli export writes carries this metadata_props entry (value: which graph it is); a file at an
# export path is replaced only when it carries it. ONNX keeps metadata_props through save and load.
MARK_KEY = "msli.export"
_METADATA_PROPS = 14  # ModelProto.metadata_props, a top-level field after the graph (7)
_MAX_ENTRY_BYTES = 1 << 16  # a metadata entry this large is not msli's mark


class OnlineScorer(nn.Module):
    """The online stage as one graph: (B, K, d), (B, K) bool, (d, N) -> (B, N) scores, (B, K, N) shares."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.K = model.config.segments
        self.aggregation = model.config.aggregation

    def forward(self, segment_vectors: Tensor, segment_mask: Tensor, item_vectors_t: Tensor):
        """The products read the transposed table once ((B, 2K, d) @ (d, N)); the aggregation is the
        model's own :func:`aggregate`."""
        m, K = self.model, self.K
        logits = values = None
        if self.aggregation in ("attention", "mlp"):
            queries = m.attention_queries(segment_vectors)  # (B, K, d)
            products = torch.cat([segment_vectors, queries], dim=1) @ item_vectors_t  # (B, 2K, N)
            scores, logits = products[:, :K], products[:, K:]  # (B, K, N)
            if self.aggregation == "mlp":
                values = m.mlp.interact(segment_vectors, item_vectors_t.T)  # (B, K, N)
        else:
            scores = segment_vectors @ item_vectors_t  # (B, K, N)
        return aggregate(
            scores,
            segment_mask,
            aggregation=self.aggregation,
            logits=logits,
            age_bias=m.age_bias,
            values=values,
            segment_weights=m.segment_weights,
        )


class SegmentEncoderGraph(nn.Module):
    """Nearline, closed segments: (B', S) item ids -> segment vectors (B', d), pooling weights (B', S)."""

    def __init__(self, model, table: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("table", table.detach().clone())  # (N+1, d), baked in

    def forward(self, segment_items: Tensor):
        vectors, weights = self.model.encode_segments(segment_items.unsqueeze(1), self.table)  # (B', 1, ...)
        return vectors[:, 0], weights[:, 0]


class OpenEncoderGraph(nn.Module):
    """Nearline, the open slots: (B, T) window ids (left-aligned, 0-padded) -> open vectors (B, O, d)."""

    def __init__(self, model, table: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("table", table.detach().clone())  # (N+1, d), baked in

    def forward(self, window_items: Tensor):
        return self.model.open_vector(window_items, self.table)  # (B, O, d)


class CatalogScorer(nn.Module):
    """The online scorer with the item table baked in (for int8 weights): (B, K, d), (B, K) -> (B, N+1)."""

    def __init__(self, model, table: Tensor):
        super().__init__()
        self.scorer = OnlineScorer(model)
        self.register_buffer("table_t", table.detach().T.contiguous())  # (d, N+1)

    def forward(self, segment_vectors: Tensor, segment_mask: Tensor):
        scores, _ = self.scorer(segment_vectors, segment_mask, self.table_t)
        return scores


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], axes: dict) -> bytes:
    buf = io.BytesIO()
    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: simple dynamic axes, no onnxscript rewriting
        )
    data = buf.getvalue()
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    return data


def scorer_onnx(model) -> bytes:
    """The online scorer graph (see module docstring), checked."""
    K, d = model.config.segments, model.config.dim
    args = (torch.randn(2, K, d), torch.ones(2, K, dtype=torch.bool), torch.randn(d, 7))
    return _export(
        OnlineScorer(model),
        args,
        ["segment_vectors", "segment_mask", "item_vectors_t"],
        ["scores", "contributions"],
        {
            "segment_vectors": {0: "B"},
            "segment_mask": {0: "B"},
            "item_vectors_t": {1: "N"},
            "scores": {0: "B", 1: "N"},
            "contributions": {0: "B", 2: "N"},
        },
    )


def segment_encoder_onnx(model, table: Tensor | None = None) -> bytes:
    """The closed-segment encoder graph with the item table baked in, checked."""
    with torch.no_grad():
        table = model.item_table() if table is None else table
    S = model.config.S
    example = torch.randint(1, model.config.n_items + 1, (3, S))
    example[0, S // 2 :] = 0  # a partly filled segment, so the tracer sees padding
    return _export(
        SegmentEncoderGraph(model, table),
        (example,),
        ["segment_items"],
        ["segment_vectors", "pooling_weights"],
        {"segment_items": {0: "B", 1: "S"}, "segment_vectors": {0: "B"}, "pooling_weights": {0: "B", 1: "S"}},
    )


def open_encoder_onnx(model, table: Tensor | None = None) -> bytes:
    """The open-window encoder graph with the item table baked in, checked."""
    with torch.no_grad():
        table = model.item_table() if table is None else table
    T = model.config.max_len
    example = torch.randint(1, model.config.n_items + 1, (3, T))
    example[0, max(1, T // 2) :] = 0  # a window not yet full, so the tracer sees padding
    example[1] = 0  # an empty window
    return _export(
        OpenEncoderGraph(model, table),
        (example,),
        ["window_items"],
        ["open_vectors"],
        {"window_items": {0: "B", 1: "T"}, "open_vectors": {0: "B"}},
    )


def catalog_scorer_onnx(model, table: Tensor | None = None) -> bytes:
    with torch.no_grad():
        table = model.item_table() if table is None else table
    K, d = model.config.segments, model.config.dim
    return _export(
        CatalogScorer(model, table),
        (torch.randn(2, K, d), torch.ones(2, K, dtype=torch.bool)),
        ["segment_vectors", "segment_mask"],
        ["scores"],
        {"segment_vectors": {0: "B"}, "segment_mask": {0: "B"}, "scores": {0: "B"}},
    )


def quantize_int8(model_bytes: bytes) -> bytes:
    """int8 dynamic quantization (weights int8, activations quantized per call) with onnxruntime's tool."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the tool logs a pre-processing hint on the root logger for every call
    try:
        with tempfile.TemporaryDirectory(prefix="msli-quant-") as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(model_bytes)
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            return dst.read_bytes()
    finally:
        root.setLevel(level)


def _beside(scorer_path: str | os.PathLike, suffix: str) -> Path:
    p = Path(scorer_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(f"{stem}.{suffix}")


def encoder_path_for(scorer_path: str | os.PathLike) -> Path:
    """``FILE.onnx`` -> ``FILE.segment_encoder.onnx`` (beside it)."""
    return _beside(scorer_path, "segment_encoder.onnx")


def open_encoder_path_for(scorer_path: str | os.PathLike) -> Path:
    """``FILE.onnx`` -> ``FILE.open_encoder.onnx`` (beside it)."""
    return _beside(scorer_path, "open_encoder.onnx")


INT8_GRAPHS = ("segment_encoder", "open_encoder", "catalog")  # FILE.<name>.int8.onnx with --int8


def mark(model_bytes: bytes, graph: str) -> bytes:
    """``model_bytes`` (a serialized ModelProto) with msli's mark added: ``metadata_props`` entry
    :data:`MARK_KEY` = ``graph``. The graph itself is unchanged."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    entry = model.metadata_props.add()
    entry.key, entry.value = MARK_KEY, graph
    return model.SerializeToString()


def _looks_like_onnx(path: Path) -> bool:
    """True for a file that starts as a serialized ONNX ModelProto does (field 1, ir_version, a small
    varint)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x08 and 1 <= head[1] <= 64


def _varint(fh) -> int:
    value = 0
    for shift in range(0, 70, 7):
        byte = fh.read(1)
        if not byte:
            raise ValueError("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
    raise ValueError("varint longer than 10 bytes")


def carries_mark(path: str | os.PathLike) -> bool:
    """True when ``path`` is a serialized ONNX model whose ``metadata_props`` hold :data:`MARK_KEY`, i.e.
    a file msli export wrote. Reads the top-level fields only, seeking past the graph (which may hold a
    catalog-sized item table), so checking a large file costs a few reads; anything unreadable or
    malformed is not marked."""
    from google.protobuf.message import DecodeError
    from onnx import StringStringEntryProto

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while fh.tell() < size:
                key = _varint(fh)
                field, wire = key >> 3, key & 7
                if wire == 0:
                    _varint(fh)
                elif wire == 1:
                    fh.seek(8, os.SEEK_CUR)
                elif wire == 5:
                    fh.seek(4, os.SEEK_CUR)
                elif wire != 2:
                    return False  # groups (3, 4) and unknown wire types are not in a ModelProto
                else:
                    length = _varint(fh)
                    if field == _METADATA_PROPS and length <= _MAX_ENTRY_BYTES:
                        entry = StringStringEntryProto.FromString(fh.read(length))
                        if entry.key == MARK_KEY:
                            return True
                    else:
                        fh.seek(length, os.SEEK_CUR)
    except (OSError, ValueError, DecodeError):
        return False
    return False


def export_paths(out: str | os.PathLike, *, quantize: bool = False) -> dict[str, Path]:
    """The files ``msli export --out FILE.onnx`` writes, checked before anything is built or written.

    Each is a new file or replaces a file an earlier export wrote (it carries :data:`MARK_KEY`, see
    :func:`carries_mark`); any other file (an ONNX model the user made included), a folder or a symbolic
    link in the way, a name not ending in ``.onnx``, or a folder that takes no new files is refused with a
    sentence. :func:`export_model` checks again just before it writes.
    """
    out = Path(out)
    if not out.name.endswith(".onnx") or out.name == ".onnx":
        raise MsliError(f"--out {out} must name a .onnx file, e.g. model.onnx.")
    stem = out.name[: -len(".onnx")]
    paths = {
        "scorer": out,
        "segment_encoder": encoder_path_for(out),
        "open_encoder": open_encoder_path_for(out),
    }
    if quantize:
        for name in INT8_GRAPHS:
            paths[f"{stem}.{name}.int8.onnx"] = out.with_name(f"{stem}.{name}.int8.onnx")
    for path in paths.values():
        if path.is_symlink():
            raise MsliError(
                f"{path} is a symbolic link, which msli export does not replace; choose another --out name."
            )
        if path.exists() and not path.is_file():
            raise MsliError(f"{path} is a folder or a special file; choose another --out name.")
        if path.is_file() and not carries_mark(path):  # never overwrite a file msli did not write
            if not _looks_like_onnx(path):
                raise MsliError(
                    f"{path} exists and is not an ONNX model, so msli export will not replace it; choose "
                    "another --out or move that file away."
                )
            raise MsliError(
                f"{path} is an ONNX model without the mark msli export writes into its files, so msli "
                "will not replace it; choose another --out or move that file away."
            )
    if out.parent.exists() and not out.parent.is_dir():
        raise MsliError(f"--out {out}: {out.parent} is not a folder; choose another --out path.")
    check_can_create(out, fix="choose a writable --out path")
    return paths


def check_exportable(model, source: str | os.PathLike = "the model") -> None:
    """Refuse a model ``msli export`` cannot export (only MS-LI and two-tower have these graphs)."""
    if not kinds.is_late_interaction(getattr(model, "kind", None)):
        raise MsliError(
            f"{source} holds a {getattr(model, 'kind', '?')} model; `msli export` exports MS-LI and "
            "two-tower models: pass the folder of a model trained with --model msli or two-tower."
        )


def export_model(model, out: str | os.PathLike, *, quantize: bool = False) -> dict[str, str]:
    """Write the scorer to ``out`` and both encoders beside it, each atomically. Returns the paths.

    With ``quantize``, also ``FILE.segment_encoder.int8.onnx``, ``FILE.open_encoder.int8.onnx`` and
    ``FILE.catalog.int8.onnx``. Every path is checked (:func:`export_paths`) and every graph built before
    the first file is written; the paths are checked again just before writing (a file put there during
    the build is not replaced). Every file carries msli's mark (:func:`mark`).
    """
    check_exportable(model, "`msli export`: the model")
    targets = export_paths(out, quantize=quantize)
    out = Path(out)
    model = model.eval()
    with torch.no_grad():
        table = model.item_table()
    graphs = {
        "scorer": scorer_onnx(model),
        "segment_encoder": segment_encoder_onnx(model, table),
        "open_encoder": open_encoder_onnx(model, table),
    }
    if quantize:
        stem = out.name[: -len(".onnx")]
        floats = {
            "segment_encoder": graphs["segment_encoder"],
            "open_encoder": graphs["open_encoder"],
            "catalog": catalog_scorer_onnx(model, table),
        }
        for name in INT8_GRAPHS:
            graphs[f"{stem}.{name}.int8.onnx"] = quantize_int8(floats[name])
    stem = out.name[: -len(".onnx")]
    marked = {  # the mark's value names the graph: scorer, ..., segment_encoder.int8
        key: mark(data, key.removeprefix(f"{stem}.").removesuffix(".onnx")) for key, data in graphs.items()
    }
    # everything is built before anything is written: a failure leaves no partial output
    export_paths(out, quantize=quantize)  # still new or msli's own (nothing was put there meanwhile)
    for key, data in marked.items():
        atomic_write_bytes(targets[key], data, fix="choose a writable --out path")
    return {key: str(targets[key]) for key in graphs}


class OrtSession:
    """An ONNX Runtime CPU session with a fixed intra-op thread count (recorded in bench rows)."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = int(threads)
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, *inputs: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        feed = dict(zip(self.input_names, inputs, strict=True))
        return self.session.run(outputs, feed)


class OrtScorer(OrtSession):
    def score(self, segment_vectors: np.ndarray, segment_mask: np.ndarray, item_vectors_t: np.ndarray):
        """(B, K, d) float32, (B, K) bool, (d, N) float32 -> scores (B, N), contributions (B, K, N)."""
        scores, contributions = self.run(
            np.ascontiguousarray(segment_vectors, dtype=np.float32),
            np.ascontiguousarray(segment_mask, dtype=bool),
            np.ascontiguousarray(item_vectors_t, dtype=np.float32),
        )
        return scores, contributions


class OrtSegmentEncoder(OrtSession):
    def encode(self, segment_items: np.ndarray):
        """(B', S) int64 closed segments -> segment vectors (B', d), pooling weights (B', S)."""
        vectors, weights = self.run(np.ascontiguousarray(segment_items, dtype=np.int64))
        return vectors, weights


class OrtOpenEncoder(OrtSession):
    def encode(self, window_items: np.ndarray) -> np.ndarray:
        """(B, T) int64 windows (left-aligned, 0-padded, T <= max_len) -> open vectors (B, O, d) (a graph
        exported before models had O open slots outputs (B, d): read as O = 1)."""
        (vectors,) = self.run(np.ascontiguousarray(window_items, dtype=np.int64))
        return vectors.reshape(len(vectors), -1, vectors.shape[-1])


def export_folder(model_dir: str | os.PathLike, out: str | os.PathLike, *, quantize: bool = False) -> dict:
    """``msli export``: load a saved model folder and export it (bad folder → MsliError sentence)."""
    from msli_core.models.registry import load_model

    export_paths(out, quantize=quantize)
    loaded = load_model(model_dir)
    check_exportable(loaded.model, f"Model folder {model_dir}")
    paths = export_model(loaded.model, out, quantize=quantize)
    return {"model": str(model_dir), "kind": loaded.kind, **paths}


class OrtMSLI(nn.Module):
    """An MS-LI model served by ONNX Runtime graphs (float or int8), with ``score_histories`` so that
    :func:`msli_core.evaluate.evaluate` ranks with it exactly as with the torch model."""

    def __init__(
        self,
        model,
        encoder: bytes,
        open_encoder: bytes,
        catalog: bytes,
        threads: int = 1,
        label: str = "onnxruntime",
    ):
        super().__init__()
        self.torch_model = model  # only its segmenter (numpy) and config are used
        self.kind = f"msli-{label}"
        self.encoder = OrtSegmentEncoder(encoder, threads)
        self.open_encoder = OrtOpenEncoder(open_encoder, threads)
        self.catalog = OrtSession(catalog, threads)

    def slot_vectors(self, histories, timestamps=None) -> tuple[np.ndarray, np.ndarray]:
        """(B, K, d) slot vectors and (B, K) mask, as :meth:`MSLIModel.slot_vectors`: the non-empty
        closed segments through the segment graph (empty ones stay zero), the window through the open one."""
        batch = self.torch_model.segment_batch(histories, timestamps)
        B, K = batch.mask.shape
        d, C = self.torch_model.config.dim, self.torch_model.config.closed_slots
        vectors = np.zeros((B, K, d), dtype=np.float32)
        if B == 0:
            return vectors, batch.mask
        closed_mask = batch.mask[:, :C]  # (B, C)
        if closed_mask.any():
            closed, _ = self.encoder.encode(batch.items[:, :C][closed_mask])  # (B'', d)
            vectors[:, :C][closed_mask] = closed
        vectors[:, C:] = self.open_encoder.encode(batch.window)  # (B, O, d); zeros for an empty history
        return vectors, batch.mask

    def score_histories(self, histories, timestamps=None) -> Tensor:
        """(B, N+1) scores; column 0 is padding (the evaluator masks it)."""
        vectors, mask = self.slot_vectors(histories, timestamps)
        if not len(vectors):
            return torch.zeros(0, self.torch_model.config.n_items + 1)
        (scores,) = self.catalog.run(vectors, mask)  # (B, N+1)
        return torch.from_numpy(scores)


def quantized_quality(model, data, *, threads: int = 1, users: np.ndarray | None = None) -> dict:
    """NDCG@10 (and the other metrics) of float vs int8 ONNX graphs on ``data``, beside their latency.

    Latency: p50 of one request's catalog scoring (B = 1, K cached vectors, all N+1 items) and of one
    nearline update, the open-window graph over a full (1, max_len) window (what every new event
    re-runs), each timed over 50 calls after a warm-up, ``threads`` intra-op threads.
    """
    from msli_core.evaluate import evaluate
    from msli_core.serving.timing import summarize, time_calls

    model = model.eval()
    with torch.no_grad():
        table = model.item_table()
    graphs = {
        "float32": (
            segment_encoder_onnx(model, table),
            open_encoder_onnx(model, table),
            catalog_scorer_onnx(model, table),
        )
    }
    graphs["int8"] = tuple(quantize_int8(g) for g in graphs["float32"])
    K, d, T = model.config.segments, model.config.dim, model.config.max_len
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1, K, d)).astype(np.float32)
    mask = np.ones((1, K), dtype=bool)
    window = rng.integers(1, model.config.n_items + 1, size=(1, T))
    result: dict = {"threads": threads}
    for label, (encoder, open_encoder, catalog) in graphs.items():
        served = OrtMSLI(model, encoder, open_encoder, catalog, threads, label)
        metrics = evaluate(served, data, users=users)
        online, _ = time_calls(
            lambda s=served: s.catalog.run(vectors, mask), warmup=3, repeats=50, budget_s=5
        )
        nearline, _ = time_calls(
            lambda s=served: s.open_encoder.encode(window), warmup=3, repeats=50, budget_s=5
        )
        result[label] = {
            **{k: metrics[k] for k in ("NDCG@10", "HR@10", "MRR") if k in metrics},
            "users": metrics.get("users"),
            "online_p50_ms": summarize(online)["p50_ms"],
            "nearline_p50_ms": summarize(nearline)["p50_ms"],
            "bytes": len(encoder) + len(open_encoder) + len(catalog),
        }
    result["NDCG@10_change"] = result["int8"]["NDCG@10"] - result["float32"]["NDCG@10"]
    return result
