/**
 * The gpu.js boundary: the only module that touches gpu.js objects (whose typings are loose, so `any`
 * is allowed here and nowhere else). Everything it hands out is typed.
 */
/* biome-ignore-all lint/suspicious/noExplicitAny: gpu.js boundary; its kernels, textures and contexts are untyped at runtime */

import { AttnkitError } from '@attnkit/spec';

/** The GL kernel classes of gpu.js that this backend accepts; anything else (cpu, webasm, webgpu) is refused. */
export const GL_KERNEL_CLASSES = ['WebGL2Kernel', 'WebGLKernel', 'HeadlessGLKernel'] as const;
/** One of {@link GL_KERNEL_CLASSES}. */
export type GlKernelClass = (typeof GL_KERNEL_CLASSES)[number];

/** Which browser context to ask for: `auto` tries webgl2, then webgl. Ignored in Node (headless-gl). */
export type GlContextKind = 'auto' | 'webgl2' | 'webgl';

/** A texture that stays on the GPU between kernels (a gpu.js pipeline texture). */
export interface GlTexture {
  readonly kind: 'texture';
  /** `[width, height]` of the kernel output it holds. */
  readonly output: readonly [number, number];
}

/** A host array uploaded as a 2-d kernel argument, indexed `a[y][x]` in kernel code. */
export interface GlInput {
  readonly kind: 'input';
}

/** What a kernel accepts. */
export type KernelArgument = GlTexture | GlInput | number;

/** A kernel's arguments by name: every declared parameter, nothing positional. */
export type KernelArguments<P extends string> = { readonly [K in P]: KernelArgument };

/** A compiled kernel with a dynamic 2-d output `[width, height]`, taking the parameters `P`. */
export interface GlKernel<P extends string = string> {
  /** Runs on the GPU; the result stays there (delete it with {@link GlRuntime.release}). */
  run(output: readonly [number, number], args: KernelArguments<P>): GlTexture;
}

/** What a kernel is made of. */
export interface KernelSpec<P extends string = string> {
  name: string;
  /**
   * The kernel function's parameters, the one place they are listed: the source's signature is
   * generated from them ({@link kernelSource}) and {@link GlKernel.run} takes its arguments by these
   * names, so no positional list is kept in step with the signature by hand.
   */
  params: readonly P[];
  /** The function body in gpu.js's kernel dialect (JavaScript), reading the parameters by name. */
  body: string;
  /** GLSL helpers the kernel calls. */
  nativeFunctions?: readonly { name: string; source: string }[];
  /** Output type when gpu.js cannot infer it (a native returning vec4: `'Array(4)'`). */
  returnType?: 'Array(4)';
  /** Upper bound for every `for` loop in the kernel (compiled in, so one value for all shapes). */
  loopMaxIterations: number;
}

/** One draw of a kernel, timed by {@link GlOptions.onPass}. */
export interface GlPass {
  /** The kernel's name (its spec's `name`). */
  kernel: string;
  /** `[width, height]` of its output. */
  output: readonly [number, number];
  /** Milliseconds from the end of the previous work on the context to the end of this draw. */
  ms: number;
}

/** How to open the GL runtime. */
export interface GlOptions {
  context?: GlContextKind;
  /**
   * Called after every kernel draw with its time. The draw is bracketed by two 1-pixel `readPixels`,
   * which wait for the GPU (in Chromium `gl.finish()` does not wait for SwiftShader), so passes never
   * overlap: for profiling only, every call gets slower.
   */
  onPass?: (pass: GlPass) => void;
}

/** A kernel spec with its parameter names kept as literal types (so `run` checks them by name). */
export function defineKernel<const P extends string>(spec: KernelSpec<P>): KernelSpec<P> {
  return spec;
}

/** The compiled kernel of a spec made by {@link defineKernel}. */
export type KernelOf<S> = S extends KernelSpec<infer P> ? GlKernel<P> : never;

/** The gpu.js kernel function source of `spec`: its signature from `params`, then its body. */
export function kernelSource(spec: KernelSpec): string {
  return `function ${spec.name}(${spec.params.join(', ')}) {\n${spec.body}\n}`;
}

/** A live gpu.js instance bound to one GL context. */
export interface GlRuntime {
  readonly kernelClass: GlKernelClass;
  readonly renderer: string;
  readonly version: string;
  readonly maxTextureSize: number;
  kernel<P extends string>(spec: KernelSpec<P>): GlKernel<P>;
  /** Uploads `data` as a `[width, height]` 2-d argument. */
  input(data: Float32Array, width: number, height: number): GlInput;
  /** Reads a texture back: `width * height` floats, row-major (`y * width + x`). */
  read(texture: GlTexture): Float32Array;
  /** Reads an RGBA (`returnType: 'Array(4)'`) texture back: four floats per output element, in order. */
  readTexels(texture: GlTexture): Float32Array;
  release(texture: GlTexture): void;
  /** Bytes of textures alive on the context now (tracked at the GL calls). */
  deviceBytes(): number;
  /** Textures alive on the context now. */
  liveTextures(): number;
  destroy(): Promise<void>;
}

interface TextureHandle extends GlTexture {
  readonly raw: any;
}

interface InputHandle extends GlInput {
  readonly raw: any;
}

function unavailable(reason: string, cause?: unknown): AttnkitError {
  return new AttnkitError('unavailable', `webgl: backend unavailable: ${reason}`, {
    argument: 'environment',
    expected: `a WebGL context that gpu.js runs as one of ${GL_KERNEL_CLASSES.join(', ')}`,
    actual: reason,
    ...(cause !== undefined && { cause }),
  });
}

/** Loads gpu.js lazily, so creating a backend (or importing this package in Node) acquires nothing. */
async function loadGpuJs(): Promise<any> {
  try {
    const module: any = await import('gpu.js');
    // The CommonJS build appears as `default` in some loaders, as named exports in others.
    return module.GPU ? module : module.default;
  } catch (error) {
    throw unavailable(`gpu.js could not be loaded (${(error as Error).message})`, error);
  }
}

function hasDocument(): boolean {
  return typeof (globalThis as any).document?.createElement === 'function';
}

/**
 * Makes a GL context ourselves (instead of letting gpu.js pick) so that the kernel class is decided by
 * the context, never by gpu.js's fallback order, and so texture memory can be tracked at the GL calls.
 */
function createContext(
  gpujs: any,
  context: GlContextKind,
): { context: any; canvas: any; kernelClass: GlKernelClass } {
  const attributes = { alpha: false, depth: false, antialias: false, stencil: false };
  const g = globalThis as any;
  if (hasDocument() || typeof g.OffscreenCanvas === 'function') {
    const canvas = hasDocument() ? g.document.createElement('canvas') : new g.OffscreenCanvas(1, 1);
    canvas.width = 1;
    canvas.height = 1;
    const webgl2 = context === 'webgl' ? null : canvas.getContext('webgl2', attributes);
    if (webgl2) {
      if (!webgl2.getExtension('EXT_color_buffer_float')) {
        throw unavailable('WebGL2 has no EXT_color_buffer_float: float textures cannot be rendered to');
      }
      return { context: webgl2, canvas, kernelClass: 'WebGL2Kernel' };
    }
    if (context === 'webgl2')
      throw unavailable('this browser gives no webgl2 context (and webgl2 was required)');
    const canvas1 = hasDocument() ? g.document.createElement('canvas') : new g.OffscreenCanvas(1, 1);
    canvas1.width = 1;
    canvas1.height = 1;
    const webgl1 = canvas1.getContext('webgl', attributes);
    if (webgl1) {
      if (!webgl1.getExtension('OES_texture_float') || !webgl1.getExtension('WEBGL_color_buffer_float')) {
        // gpu.js would then compute in 8-bit 'unsigned' precision: not attention-grade.
        throw unavailable('WebGL1 has no OES_texture_float/WEBGL_color_buffer_float (float render targets)');
      }
      return { context: webgl1, canvas: canvas1, kernelClass: 'WebGLKernel' };
    }
    throw unavailable(
      'this browser gives neither a webgl2 nor a webgl context (GPU blocklisted or disabled?)',
    );
  }
  // Node: only headless-gl, which gpu.js probes through its optional `gl` dependency.
  if (!gpujs.HeadlessGLKernel?.isSupported) {
    throw unavailable(
      'no browser WebGL here and headless-gl (npm "gl", an optional dependency of gpu.js) is not installed, ' +
        'not built, or has no X display (run under xvfb-run)',
    );
  }
  return { context: gpujs.HeadlessGLKernel.testContext, canvas: null, kernelClass: 'HeadlessGLKernel' };
}

function readRenderer(context: any): string {
  try {
    const info = context.getExtension('WEBGL_debug_renderer_info');
    const renderer = info ? context.getParameter(info.UNMASKED_RENDERER_WEBGL) : null;
    return String(renderer ?? context.getParameter(context.RENDERER));
  } catch {
    return 'unknown renderer';
  }
}

/**
 * Counts texture bytes at the GL calls gpu.js makes: gpu.js keeps no total, and "flat memory over 1,000
 * calls" must be measured, not assumed. Float RGBA textures: 16 bytes a texel.
 */
function trackTextures(context: any): { bytes: () => number; count: () => number } {
  const sizes = new Map<any, number>();
  const bound = new Map<number, any>();
  const createTexture = context.createTexture.bind(context);
  const deleteTexture = context.deleteTexture.bind(context);
  const bindTexture = context.bindTexture.bind(context);
  const activeTexture = context.activeTexture.bind(context);
  const texImage2D = context.texImage2D.bind(context);
  let unit = 0;
  context.activeTexture = (u: number) => {
    unit = u;
    activeTexture(u);
  };
  context.bindTexture = (target: number, texture: any) => {
    bound.set(unit * 65536 + target, texture);
    bindTexture(target, texture);
  };
  context.createTexture = () => {
    const texture = createTexture();
    sizes.set(texture, 0);
    return texture;
  };
  context.deleteTexture = (texture: any) => {
    sizes.delete(texture);
    deleteTexture(texture);
  };
  context.texImage2D = (...args: any[]) => {
    const texture = bound.get(unit * 65536 + args[0]);
    if (texture && sizes.has(texture) && typeof args[3] === 'number' && typeof args[4] === 'number') {
      sizes.set(texture, args[3] * args[4] * 16);
    } else if (texture && sizes.has(texture) && args.length === 6 && args[5]) {
      const source = args[5];
      sizes.set(texture, (source.width ?? 0) * (source.height ?? 0) * 4);
    }
    return texImage2D(...args);
  };
  return {
    bytes: () => {
      let total = 0;
      for (const size of sizes.values()) total += size;
      return total;
    },
    count: () => sizes.size,
  };
}

function kernelClassOf(kernelRun: any): string {
  return kernelRun?.kernel?.constructor?.name ?? 'unknown';
}

/**
 * Opens a GL context and a gpu.js instance on it. Rejects with `unavailable` and the reason when no
 * GL kernel class can run here; it never lets gpu.js choose its CPU or webasm fallback.
 */
export async function openGl(options: GlOptions = {}): Promise<GlRuntime> {
  const gpujs = await loadGpuJs();
  const { context, kernelClass } = createContext(gpujs, options.context ?? 'auto');
  const tracker = trackTextures(context);
  const KernelClass = gpujs[kernelClass];
  if (!KernelClass?.isContextMatch(context)) {
    throw unavailable(`gpu.js does not accept this context as ${kernelClass}`);
  }
  let gpu: any;
  try {
    const mode =
      kernelClass === 'WebGL2Kernel' ? 'webgl2' : kernelClass === 'WebGLKernel' ? 'webgl' : 'headlessgl';
    // gpu.js resizes its canvas to the largest output it has drawn; the context renders to textures
    // only, so it gets a stand-in object and the real canvas keeps a 1x1 drawing buffer.
    gpu = new gpujs.GPU({ mode, context, canvas: { width: 1, height: 1 } });
  } catch (error) {
    throw unavailable(`gpu.js refused the ${kernelClass} context: ${(error as Error).message}`, error);
  }
  // Compare classes, not names: a minifying bundler renames gpu.js's classes.
  if (gpu.Kernel !== KernelClass) {
    throw unavailable(`gpu.js chose ${gpu.Kernel?.name ?? 'no kernel'} instead of ${kernelClass}`);
  }
  const version = String(context.getParameter(context.VERSION));
  const maxTextureSize = Number(context.getParameter(context.MAX_TEXTURE_SIZE));
  const renderer = readRenderer(context);
  const input = gpujs.input as (data: Float32Array, size: number[]) => any;
  const onPass = options.onPass;
  // Waits for the GPU: one pixel of whatever framebuffer is bound, in the format the implementation
  // reads it in (a float output texture, or the 1x1 default framebuffer before any draw).
  const waitForGpu = () => {
    const type = context.getParameter(context.IMPLEMENTATION_COLOR_READ_TYPE);
    const format = context.getParameter(context.IMPLEMENTATION_COLOR_READ_FORMAT);
    const pixel = type === context.FLOAT ? new Float32Array(4) : new Uint8Array(4);
    context.readPixels(0, 0, 1, 1, format, type, pixel);
  };

  const runtime: GlRuntime = {
    kernelClass,
    renderer,
    version,
    maxTextureSize,
    kernel(spec) {
      let fallback: string | null = null;
      const settings: any = {
        output: [1, 1],
        pipeline: true,
        immutable: true,
        dynamicOutput: true,
        dynamicArguments: true,
        precision: 'single',
        tactic: 'precision',
        loopMaxIterations: spec.loopMaxIterations,
        // gpu.js would otherwise rebuild this kernel on the CPU when the GL build fails: refuse.
        onRequestFallback: () => {
          fallback = `gpu.js asked to fall back to the CPU for kernel ${spec.name}`;
          throw new AttnkitError('device', `webgl: ${fallback}; refusing (no silent CPU fallback)`, {
            argument: spec.name,
            expected: kernelClass,
            actual: 'CPUKernel fallback',
          });
        },
      };
      if (spec.returnType) settings.returnType = spec.returnType;
      if (spec.nativeFunctions) settings.nativeFunctions = spec.nativeFunctions.map((f) => ({ ...f }));
      const kernelRun = gpu.createKernel(kernelSource(spec), settings);
      return {
        run(output, args) {
          // setOutput reallocates the output texture and resizes the shared canvas: only on a change.
          const current = kernelRun.output as number[] | null;
          if (!current || current[0] !== output[0] || current[1] !== output[1]) {
            kernelRun.setOutput([output[0], output[1]]);
          }
          // gpu.js draws a quad scaled by texSize / maxTexSize, where maxTexSize is shared by all
          // kernels and only ever grows, but it sets the (global) viewport only in setOutput/build:
          // put it back for this kernel, or a kernel run after another one grew it maps wrongly.
          const maxTexSize = kernelRun.kernel.maxTexSize as number[] | null;
          if (maxTexSize) context.viewport(0, 0, maxTexSize[0], maxTexSize[1]);
          const raw = spec.params.map((name) => {
            const a = args[name];
            return typeof a === 'number' ? a : (a as TextureHandle | InputHandle).raw;
          });
          let result: any;
          let started = 0;
          try {
            if (onPass !== undefined) {
              waitForGpu();
              started = performance.now();
            }
            result = kernelRun(...raw);
            if (onPass !== undefined) waitForGpu();
          } catch (error) {
            if (error instanceof AttnkitError) throw error;
            throw new AttnkitError(
              'device',
              `webgl: kernel ${spec.name} failed: ${(error as Error).message}`,
              {
                argument: spec.name,
                cause: error,
              },
            );
          }
          const ran = kernelClassOf(kernelRun);
          if (kernelRun.kernel?.constructor !== KernelClass || fallback !== null) {
            throw new AttnkitError('device', `webgl: kernel ${spec.name} ran as ${ran}, not ${kernelClass}`, {
              argument: spec.name,
              expected: kernelClass,
              actual: ran,
            });
          }
          const handle: TextureHandle = { kind: 'texture', output: [output[0], output[1]], raw: result };
          onPass?.({ kernel: spec.name, output: [output[0], output[1]], ms: performance.now() - started });
          return handle;
        },
      };
    },
    input(data, width, height) {
      const handle: InputHandle = { kind: 'input', raw: input(data, [width, height]) };
      return handle;
    },
    read(texture) {
      const raw = (texture as TextureHandle).raw;
      const rgba: Float32Array = raw.renderRawOutput();
      const [width, height] = texture.output;
      const out = new Float32Array(width * height);
      // gpu.js writes value n of a 2-d output (n = y * width + x) to texel n, red channel.
      for (let n = 0; n < out.length; n++) out[n] = rgba[n * 4];
      return out;
    },
    readTexels(texture) {
      const rgba: Float32Array = (texture as TextureHandle).raw.renderRawOutput();
      const [width, height] = texture.output;
      return rgba.slice(0, width * height * 4);
    },
    release(texture) {
      (texture as TextureHandle).raw.delete();
    },
    deviceBytes: () => tracker.bytes(),
    liveTextures: () => tracker.count(),
    async destroy() {
      await gpu.destroy();
    },
  };
  return runtime;
}
