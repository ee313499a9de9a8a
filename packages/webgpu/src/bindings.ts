/**
 * The bindings of a kernel, declared once. A kernel's table lists its bindings in order; the WGSL
 * declarations (`@group(0) @binding(i) var<...> NAME: TYPE;`) and the host's bind group entries are
 * both generated from it, so a binding's number is its place in the table and neither side can
 * drift from the other (the model: onnxruntime-web's WebGPU EP, which declares a program's inputs
 * and outputs once). The host names what it binds; a table entry it leaves out is a type error.
 */

/** Address space and access of a binding: the uniform block, or a storage buffer. */
export type BindingAccess = 'uniform' | 'read' | 'read_write';

/** One binding: its WGSL name, access and type. */
export interface Binding<N extends string = string> {
  readonly name: N;
  readonly access: BindingAccess;
  readonly type: string;
}

/** A binding; storage buffers default to `array<f32>`. */
export function binding<N extends string>(name: N, access: BindingAccess, type = 'array<f32>'): Binding<N> {
  return { name, access, type };
}

/** The uniform block every kernel reads as `P` (its `struct Params` is generated from the kernel's field list). */
export const PARAMS_BINDING = binding('P', 'uniform', 'Params');

/** The WGSL declarations of a table, one line a binding, numbered by their place in it. */
export function bindingDeclarations(table: readonly Binding[]): string {
  return table
    .map((b, index) => {
      const space = b.access === 'uniform' ? 'uniform' : `storage, ${b.access}`;
      return `@group(0) @binding(${index}) var<${space}> ${b.name}: ${b.type};`;
    })
    .join('\n');
}

/** The storage buffers a host binds to a table, by name (every binding but the uniform block `P`). */
export type BindingBuffers<T extends readonly Binding[]> = Record<Exclude<T[number]['name'], 'P'>, GPUBuffer>;

/**
 * The bind group entries of a table, numbered as {@link bindingDeclarations} numbers them: `P` the
 * uniform block (`uniform.bytes` of it), every other binding the buffer of its name, bound up to
 * `bindingLimit` bytes (a pooled buffer can be a size class above one binding's limit; what the
 * kernel reads never is).
 */
export function bindGroupEntries<T extends readonly Binding[]>(
  table: T,
  uniform: { buffer: GPUBuffer; bytes: number },
  buffers: BindingBuffers<T>,
  bindingLimit: number,
): GPUBindGroupEntry[] {
  return table.map((b, index): GPUBindGroupEntry => {
    if (b.access === 'uniform')
      return { binding: index, resource: { buffer: uniform.buffer, size: uniform.bytes } };
    const buffer = buffers[b.name as Exclude<T[number]['name'], 'P'>];
    return {
      binding: index,
      resource: { buffer, size: Math.min(buffer.size, bindingLimit) },
    };
  });
}

/** `GPUShaderStage.COMPUTE` (a literal: Dawn's Node binding defines no `GPUShaderStage` global). */
const COMPUTE_STAGE = 4;

/**
 * The bind group layout entries of a table, numbered as {@link bindGroupEntries} numbers them: every
 * pipeline's layout, so a kernel variant that compiles an option's code out (leaving its binding
 * unused) takes the same bind group, which `layout: 'auto'` would reject.
 */
export function bindGroupLayoutEntries(table: readonly Binding[]): GPUBindGroupLayoutEntry[] {
  return table.map((b, index) => ({
    binding: index,
    visibility: COMPUTE_STAGE,
    buffer: {
      type: b.access === 'uniform' ? 'uniform' : b.access === 'read' ? 'read-only-storage' : 'storage',
    },
  }));
}
