import protobuf from 'protobufjs';
import { causalMask } from './workloads.js';

/**
 * The few ONNX messages an attention graph needs, field numbers as in onnx/onnx.proto. Writing them
 * here (instead of shipping the whole schema) keeps the model builder small and dependency-light.
 */
const SCHEMA = `
syntax = "proto3";
package onnx;
message AttributeProto {
  string name = 1; float f = 2; int64 i = 3; bytes s = 4; repeated int64 ints = 8; int32 type = 20;
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message NodeProto {
  repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4;
  repeated AttributeProto attribute = 5; string domain = 7;
}
message TensorProto {
  repeated int64 dims = 1; int32 data_type = 2; repeated float float_data = 4; string name = 8;
  repeated int64 int64_data = 7; bytes raw_data = 9;
}
message TensorShapeProto {
  message Dimension { int64 dim_value = 1; string dim_param = 2; }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  Tensor tensor_type = 1;
}
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message GraphProto {
  repeated NodeProto node = 1; string name = 2; repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12;
}
message ModelProto {
  int64 ir_version = 1; string producer_name = 2; GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`;

const FLOAT = 1;
const INT32 = 6;
const INT64 = 7;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

let modelType: protobuf.Type | null = null;
function model(): protobuf.Type {
  modelType ??= protobuf.parse(SCHEMA, { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

type Attr = { name: string; f?: number; i?: number; ints?: number[] };
function attr(a: Attr) {
  if (a.ints !== undefined) return { name: a.name, ints: a.ints, type: ATTR_INTS };
  if (a.f !== undefined) return { name: a.name, f: a.f, type: ATTR_FLOAT };
  return { name: a.name, i: a.i, type: ATTR_INT };
}
function node(op: string, inputs: string[], outputs: string[], attrs: Attr[] = [], domain = '') {
  return {
    op_type: op,
    input: inputs,
    output: outputs,
    name: `${op}_${outputs[0]}`,
    attribute: attrs.map(attr),
    domain,
  };
}
/** A graph input or output; a string dimension is symbolic (`dim_param`). */
function value(name: string, dims: (number | string)[], elemType: number = FLOAT) {
  const dim = dims.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d }));
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim } } } };
}

/** A float32 initializer stored as raw little-endian bytes (large masks would be slow as `float_data`). */
function floatInitializer(name: string, dims: number[], data: Float32Array) {
  return {
    name,
    data_type: FLOAT,
    dims,
    raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

function encode(graph: object, opsets: { domain: string; version: number }[]): Uint8Array {
  const m = model();
  const message = m.fromObject({
    ir_version: 10,
    producer_name: 'attnkit-bench',
    graph,
    opset_import: opsets,
  });
  return m.encode(message).finish();
}

/** Which ONNX formulation of attention: each is its own peer variant (best-op reporting). */
export type OnnxVariant = 'attention' | 'mha' | 'matmul';

/** Shapes of a single-batch attention model. */
export interface OnnxAttentionShape {
  queryHeads: number;
  kvHeads: number;
  queryLength: number;
  keyLength: number;
  headDim: number;
  causal: boolean;
  /**
   * How `mha` expresses causality: `attribute` (default) sets `unidirectional`, which the CPU kernels
   * honour; `bias` adds the causal mask as a constant `attention_bias` initializer `[1, 1, Lq, Lk]`,
   * because onnxruntime's WebGPU MultiHeadAttention refuses `unidirectional` ("Unidirectional MHA does
   * not support webgpu kernel") but takes a bias. Ignored by the other variants.
   */
  mhaCausal?: 'attribute' | 'bias';
}

/**
 * Input names and shapes of a built model. `q`, `k`, `v` layouts: `attention` and `matmul` take
 * `[1, H, L, D]` (kv heads repeated to Hq for `matmul`); `mha` takes `[1, L, H*D]` (query and kv heads
 * repeated). `mask` is the additive `[Lq, Lk]` causal mask, present for `matmul` when causal.
 */
export interface OnnxModel {
  bytes: Uint8Array;
  inputs: { name: string; dims: number[] }[];
}

/**
 * Builds a one-node (or one small graph) ONNX model of attention:
 * - `attention`: the standard `Attention` op, opset 23, `is_causal`, native grouped-query heads;
 * - `mha`: `com.microsoft.MultiHeadAttention` with `unidirectional` for causal;
 * - `matmul`: MatMul, Mul(scale), Add(mask), Softmax, MatMul: what runs where the fused ops do not.
 * Causal for a single query (decode) needs no mask: with bottom-right positions it sees every key, and
 * the fused ops' causal flag would align top-left there.
 */
export function buildAttentionModel(variant: OnnxVariant, s: OnnxAttentionShape): OnnxModel {
  const { queryHeads: Hq, kvHeads: Hkv, queryLength: Lq, keyLength: Lk, headDim: D } = s;
  const causal = s.causal && Lq > 1;
  const scale = 1 / Math.sqrt(D);
  if (variant === 'attention') {
    const inputs = [
      { name: 'q', dims: [1, Hq, Lq, D] },
      { name: 'k', dims: [1, Hkv, Lk, D] },
      { name: 'v', dims: [1, Hkv, Lk, D] },
    ];
    const graph = {
      name: 'attention',
      node: [
        node(
          'Attention',
          ['q', 'k', 'v'],
          ['o'],
          [
            { name: 'is_causal', i: causal ? 1 : 0 },
            { name: 'scale', f: scale },
          ],
        ),
      ],
      input: inputs.map((x) => value(x.name, x.dims)),
      output: [value('o', [1, Hq, Lq, D])],
    };
    return { bytes: encode(graph, [{ domain: '', version: 23 }]), inputs };
  }
  if (variant === 'mha') {
    const inputs = [
      { name: 'q', dims: [1, Lq, Hq * D] },
      { name: 'k', dims: [1, Lk, Hq * D] },
      { name: 'v', dims: [1, Lk, Hq * D] },
    ];
    const biasMask = causal && s.mhaCausal === 'bias';
    // MHA's inputs by position: query, key, value, bias, key_padding_mask, attention_bias
    const nodeInputs = biasMask ? ['q', 'k', 'v', '', '', 'causal_bias'] : ['q', 'k', 'v'];
    const graph = {
      name: 'mha',
      node: [
        node(
          'MultiHeadAttention',
          nodeInputs,
          ['o'],
          [
            { name: 'num_heads', i: Hq },
            { name: 'scale', f: scale },
            ...(biasMask ? [] : [{ name: 'unidirectional', i: causal ? 1 : 0 }]),
          ],
          'com.microsoft',
        ),
      ],
      // a model constant: it sits on the device once, like a model's own mask would
      initializer: biasMask ? [floatInitializer('causal_bias', [1, 1, Lq, Lk], causalMask(Lq, Lk))] : [],
      input: inputs.map((x) => value(x.name, x.dims)),
      output: [value('o', [1, Lq, Hq * D])],
    };
    return {
      bytes: encode(graph, [
        { domain: '', version: 17 },
        { domain: 'com.microsoft', version: 1 },
      ]),
      inputs,
    };
  }
  const inputs = [
    { name: 'q', dims: [1, Hq, Lq, D] },
    { name: 'k', dims: [1, Hq, Lk, D] },
    { name: 'v', dims: [1, Hq, Lk, D] },
  ];
  if (causal) inputs.push({ name: 'mask', dims: [Lq, Lk] });
  const nodes = [
    node('Transpose', ['k'], ['kt'], [{ name: 'perm', ints: [0, 1, 3, 2] }]),
    node('MatMul', ['q', 'kt'], ['s0']),
    node('Mul', ['s0', 'scale'], ['s1']),
    ...(causal ? [node('Add', ['s1', 'mask'], ['s2'])] : []),
    node('Softmax', [causal ? 's2' : 's1'], ['p'], [{ name: 'axis', i: -1 }]),
    node('MatMul', ['p', 'v'], ['o']),
  ];
  const graph = {
    name: 'matmul_softmax',
    node: nodes,
    initializer: [{ name: 'scale', data_type: FLOAT, dims: [], float_data: [scale] }],
    input: inputs.map((x) => value(x.name, x.dims)),
    output: [value('o', [1, Hq, Lq, D])],
  };
  return { bytes: encode(graph, [{ domain: '', version: 17 }]), inputs };
}

/** Sizes of one decode step of a GroupQueryAttention model (batch 1, one new token). */
export interface OnnxGqaDecodeShape {
  queryHeads: number;
  kvHeads: number;
  /** Tokens already in the cache before the step: `past_key` / `past_value` hold this many. */
  pastLength: number;
  headDim: number;
}

/** Sizes of a GroupQueryAttention call: `newTokens` queries and keys after `pastLength` cached ones. */
export interface OnnxGqaShape extends OnnxGqaDecodeShape {
  /** Tokens of this call: 1 for a decode step, N for a prefill (then usually `pastLength` 0). */
  newTokens: number;
}

/** A GroupQueryAttention model: its inputs with their ONNX element types, in feed order. */
export interface OnnxGqaModel {
  bytes: Uint8Array;
  inputs: { name: string; dims: number[]; type: 'float32' | 'int32' }[];
  /** The attention output: `[1, newTokens, Hq * D]`. */
  output: string;
}

/**
 * One `com.microsoft.GroupQueryAttention` node (the op transformers.js exports): the call's
 * `q [1, L, Hq*D]`, `k`, `v [1, L, Hkv*D]`, the cache so far as `past_key` / `past_value
 * [1, Hkv, past, D]` (BNSH; absent when `pastLength` is 0), `seqlens_k = [past + L - 1]` (total
 * length - 1) and `total_sequence_length = past + L`; outputs the attention `y [1, L, Hq*D]` and the
 * grown cache `present_key` / `present_value [1, Hkv, past + L, D]`. GQA is always causal, its
 * queries at the last L positions (bottom-right, as in the spec); its default scale is 1/sqrt(D).
 */
export function buildGqaModel(s: OnnxGqaShape): OnnxGqaModel {
  const { queryHeads: Hq, kvHeads: Hkv, pastLength: past, headDim: D, newTokens: L } = s;
  const withPast = past > 0;
  const inputs: OnnxGqaModel['inputs'] = [
    { name: 'q', dims: [1, L, Hq * D], type: 'float32' },
    { name: 'k', dims: [1, L, Hkv * D], type: 'float32' },
    { name: 'v', dims: [1, L, Hkv * D], type: 'float32' },
    ...(withPast
      ? [
          { name: 'past_key', dims: [1, Hkv, past, D], type: 'float32' as const },
          { name: 'past_value', dims: [1, Hkv, past, D], type: 'float32' as const },
        ]
      : []),
    { name: 'seqlens_k', dims: [1], type: 'int32' },
    { name: 'total_sequence_length', dims: [], type: 'int32' },
  ];
  // the node's inputs by position; an empty name is an omitted optional input
  const nodeInputs = withPast
    ? inputs.map((x) => x.name)
    : ['q', 'k', 'v', '', '', 'seqlens_k', 'total_sequence_length'];
  const graph = {
    name: withPast ? 'gqa_decode' : 'gqa_prefill',
    node: [
      node(
        'GroupQueryAttention',
        nodeInputs,
        ['y', 'present_key', 'present_value'],
        [
          { name: 'num_heads', i: Hq },
          { name: 'kv_num_heads', i: Hkv },
        ],
        'com.microsoft',
      ),
    ],
    input: inputs.map((x) => value(x.name, x.dims, x.type === 'int32' ? INT32 : FLOAT)),
    output: [
      value('y', [1, L, Hq * D]),
      // symbolic: ORT's shape inference gives present the past's length (its shared-buffer
      // layout) while the kernel makes it past + L here; a fixed length would be refused by one of them
      value('present_key', [1, Hkv, 'present_length', D]),
      value('present_value', [1, Hkv, 'present_length', D]),
    ],
  };
  return {
    bytes: encode(graph, [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ]),
    inputs,
    output: 'y',
  };
}

/**
 * One `com.microsoft.GroupQueryAttention` decode step as a decoder runs it per token: one new
 * token after `pastLength` cached ones ({@link buildGqaModel} with `newTokens` 1). A single new
 * query sees every key, as in the spec's bottom-right decode.
 */
export function buildGqaDecodeModel(s: OnnxGqaDecodeShape): OnnxGqaModel {
  return buildGqaModel({ ...s, newTokens: 1 });
}

/** Unused element type constant kept for int64 initializers if a graph ever needs shapes. */
export const ONNX_INT64 = INT64;
