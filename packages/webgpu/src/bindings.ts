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

/** What the host binds for each name of a table. */
export type BindingResources<T extends readonly Binding[]> = Record<T[number]['name'], GPUBufferBinding>;

/** The bind group entries of a table, numbered as {@link bindingDeclarations} numbers them. */
export function bindGroupEntries<T extends readonly Binding[]>(
  table: T,
  resources: BindingResources<T>,
): GPUBindGroupEntry[] {
  return table.map((b, index) => ({
    binding: index,
    resource: resources[b.name as T[number]['name']],
  }));
}
