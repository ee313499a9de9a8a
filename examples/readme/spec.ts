import { countParameters, referenceAttention64 } from '@attnkit/spec';

const shape = { batch: 1, queryHeads: 1, queryLength: 2, headDim: 2 };
const q = new Float32Array([1, 0, 0, 1]);
const { output, lse } = referenceAttention64({ q, k: q, v: q, shape }, { causal: true, returnLse: true });
console.log(output.slice(0, 2), lse); // row 0 sees only key 0: output[0..2] = [1, 0]

console.log(countParameters({ modelDim: 12288, queryHeads: 96, headDim: 128, layers: 96 }).total); // 57_982_058_496
