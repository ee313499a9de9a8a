/** WebGPU's buffer usage bits, as numbers so Node needs no `GPUBufferUsage` global. */
export const Usage = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
} as const;

/** `GPUMapMode.READ`. */
export const MAP_READ_MODE = 0x1;

/** Usage of every storage buffer the backend makes: bound in shaders, written by the queue, read back. */
export const STORAGE_USAGE = Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC;

/**
 * Buffers by usage and power-of-two size class, reused across calls so repeated calls do not grow
 * device memory. Every buffer it ever created is tracked so `destroyAll` frees them all.
 */
export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly created = new Set<GPUBuffer>();
  private bytes = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    /** Idle bytes kept per size class before extra buffers are destroyed instead of pooled. */
    private readonly keepPerClass = 4,
  ) {}

  /** Bytes of every live buffer this pool created (in use or idle). */
  get deviceBytes(): number {
    return this.bytes;
  }

  private sizeClass(bytes: number): number {
    const aligned = Math.max(16, Math.ceil(bytes / 16) * 16);
    let size = 256;
    while (size < aligned) size *= 2;
    return size <= this.maxBufferSize ? size : aligned;
  }

  /** A buffer of at least `bytes` bytes with exactly `usage`. */
  acquire(bytes: number, usage: number): GPUBuffer {
    const size = this.sizeClass(bytes);
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    const reused = list?.pop();
    if (reused !== undefined) return reused;
    const buffer = this.device.createBuffer({ size, usage, label: `attnkit:${key}` });
    this.created.add(buffer);
    this.bytes += size;
    return buffer;
  }

  /** Whether this pool made `buffer` (and so may take it back). */
  owns(buffer: GPUBuffer): boolean {
    return this.created.has(buffer);
  }

  /** Returns a buffer for reuse; past the per-class cap it is destroyed. */
  release(buffer: GPUBuffer): void {
    if (!this.created.has(buffer)) return;
    const key = `${buffer.usage}:${buffer.size}`;
    let list = this.free.get(key);
    if (list === undefined) {
      list = [];
      this.free.set(key, list);
    }
    if (list.includes(buffer)) return;
    if (list.length >= this.keepPerClass) {
      this.destroy(buffer);
      return;
    }
    list.push(buffer);
  }

  private destroy(buffer: GPUBuffer): void {
    if (!this.created.delete(buffer)) return;
    this.bytes -= buffer.size;
    buffer.destroy();
  }

  /** Destroys every buffer this pool created, pooled or handed out. */
  destroyAll(): void {
    for (const buffer of [...this.created]) this.destroy(buffer);
    this.free.clear();
  }
}
