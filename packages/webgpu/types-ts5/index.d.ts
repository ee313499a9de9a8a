// Declarations for TypeScript < 6 (picked by the `types@<6.0` condition in package.json): those
// versions have no WebGPU types in lib "dom", so the GPUBuffer, GPUDevice, ... that dist/ names come
// from @webgpu/types (a dependency of this package). TypeScript 6 and later get dist/index.d.ts, with
// no reference: their lib "dom" declares WebGPU, and @webgpu/types next to it is a conflict error.
/// <reference types="@webgpu/types" />
export * from '../dist/index.js';
export { default } from '../dist/index.js';
