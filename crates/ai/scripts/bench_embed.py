#!/usr/bin/env python3
"""Embedding throughput in Python onnxruntime, to compare with `benches/embed.rs`.

Same model (int8 all-MiniLM-L6-v2), same tokenizer.json, same 64 sentences, batches of 32
(grouped by length), one intra-op thread, truncation at 256 tokens, padding to the longest of
each batch, mean pooling with the attention mask and L2 normalisation: the whole
`Embedder::embed` path, step for step.

Set up once (PyPI only):
    python3 -m venv /work/.venv-bench
    /work/.venv-bench/bin/pip install onnxruntime==1.31.1 tokenizers numpy
Run (after the models are prepared, e.g. by the Rust tests or benchmark):
    /work/.venv-bench/bin/python crates/ai/scripts/bench_embed.py [MODELS_DIR]
MODELS_DIR defaults to $LECTERN_TEST_MODELS_DIR, else <workspace>/.cache/models.
"""

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BATCH_SIZE = 32
MAX_TOKENS = 256
INTRA_THREADS = 1
SECONDS = 10.0

crate = Path(__file__).resolve().parent.parent
default_models = os.environ.get("LECTERN_TEST_MODELS_DIR") or str(crate.parent.parent / ".cache" / "models")
models = Path(sys.argv[1] if len(sys.argv) > 1 else default_models)
model_dir = models / "all-minilm-l6-v2-int8"

tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
# The file's default pads everything to 128; batches are padded to their longest below.
tokenizer.no_padding()
tokenizer.enable_truncation(MAX_TOKENS)

options = ort.SessionOptions()
options.intra_op_num_threads = INTRA_THREADS
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
input_names = {i.name for i in session.get_inputs()}

sentences = [line for line in (crate / "benches" / "sentences.txt").read_text().splitlines() if line]


def embed(texts):
    # Like `Embedder::embed`: tokenise everything, batch by length (less padding), pool,
    # normalise, and return the vectors in input order.
    encodings = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
    out = np.empty((len(texts), session.get_outputs()[0].shape[-1]), dtype=np.float32)
    for start in range(0, len(order), BATCH_SIZE):
        batch = order[start : start + BATCH_SIZE]
        longest = max(len(encodings[i].ids) for i in batch)
        ids = np.zeros((len(batch), longest), dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        types = np.zeros((len(batch), longest), dtype=np.int64)
        for row, i in enumerate(batch):
            e = encodings[i]
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
            types[row, : len(e.ids)] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in input_names:
            feeds["token_type_ids"] = types
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        out[batch] = pooled
    return out


reference = embed(["This is an example sentence"])[0]
print(f"reference check: {reference[:3].round(4).tolist()} (expected about [0.0677, 0.0635, 0.0487])")

for _ in range(3):  # warm-up
    embed(sentences)

# Like criterion: many timed samples, report the median rate. Two clocks: wall time, and
# this thread's CPU time (ONNX Runtime runs on the calling thread with one intra-op thread),
# which stays comparable on a machine shared with other work.
wall_rates = []
cpu_rates = []
deadline = time.perf_counter() + SECONDS
while time.perf_counter() < deadline:
    wall_started = time.perf_counter()
    cpu_started = time.thread_time()
    embed(sentences)
    cpu = time.thread_time() - cpu_started
    wall_rates.append(len(sentences) / (time.perf_counter() - wall_started))
    cpu_rates.append(len(sentences) / cpu if cpu > 0 else float("nan"))
print(
    f"python onnxruntime {ort.__version__}, {len(wall_rates)} runs of {len(sentences)} "
    f"sentences, batch {BATCH_SIZE}, {INTRA_THREADS} intra-op thread:"
)
print(
    f"  wall:       {statistics.median(wall_rates):.1f} sentences/s "
    f"(min {min(wall_rates):.1f}, max {max(wall_rates):.1f})"
)
print(
    f"  thread cpu: {statistics.median(cpu_rates):.1f} sentences/s "
    f"(min {min(cpu_rates):.1f}, max {max(cpu_rates):.1f})"
)
