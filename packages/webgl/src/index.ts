/**
 * @attnkit/webgl: attention on WebGL through gpu.js, tiled over keys so Lk is not bounded by the
 * texture size. Browsers through their WebGL2 (or WebGL1) context; Node only through headless-gl.
 * A backend that cannot get a GL kernel rejects `init()` with `unavailable`; it never runs gpu.js's
 * CPU or webasm fallback under its name.
 * @packageDocumentation
 */
import { createWebglBackend } from './backend.js';

export {
  createWebglBackend,
  WEBGL_TOLERANCE,
  type WebglBackendOptions,
} from './backend.js';
export {
  GL_KERNEL_CLASSES,
  type GlContextKind,
  type GlKernelClass,
  type GlOptions,
  type GlPass,
  type GlRuntime,
  openGl,
} from './gl.js';

/** Zero-argument factory (the conformance CLI and the bench import it): the default options. */
export default function createDefaultWebglBackend() {
  return createWebglBackend();
}
