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
  /** Buffers acquired and not yet released inside the running {@link collect} (it never nests). */
  private recording: Set<GPUBuffer> | null = null;

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
    if (reused !== undefined) {
      this.recording?.add(reused);
      return reused;
    }
    const buffer = this.device.createBuffer({ size, usage, label: `attnkit:${key}` });
    this.created.add(buffer);
    this.bytes += size;
    this.recording?.add(buffer);
    return buffer;
  }

  /**
   * A buffer of exactly `bytes` (rounded to 16) that is never pooled: long-lived storage such as a KV
   * cache, counted in {@link deviceBytes} until {@link destroyResident} (or {@link destroyAll}) destroys it, so
   * freeing it returns the count to what it was.
   */
  allocate(bytes: number, usage: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const buffer = this.device.createBuffer({ size, usage, label: 'attnkit:resident' });
    this.created.add(buffer);
    this.bytes += size;
    return buffer;
  }

  /** Destroys a buffer from {@link allocate} now (no-op for one this pool no longer holds). */
  destroyResident(buffer: GPUBuffer): void {
    this.destroy(buffer);
  }

  /** Whether this pool made `buffer` (and so may take it back). */
  owns(buffer: GPUBuffer): boolean {
    return this.created.has(buffer);
  }

  /** Returns a buffer for reuse; past the per-class cap it is destroyed. */
  release(buffer: GPUBuffer): void {
    if (!this.created.has(buffer)) return;
    this.recording?.delete(buffer);
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

  /**
   * Runs `work` (synchronous) and returns, beside its value, the buffers it acquired and still holds:
   * exactly this call's, since no other call can run in between. If `work` throws they are released,
   * so a call that fails half-way through encoding gives back what it took.
   */
  collect<T>(work: () => T): { value: T; held: GPUBuffer[] } {
    if (this.recording !== null) throw new Error('attnkit: BufferPool.collect does not nest');
    const held = new Set<GPUBuffer>();
    this.recording = held;
    try {
      const value = work();
      return { value, held: [...held] };
    } catch (error) {
      this.recording = null;
      for (const buffer of held) this.release(buffer);
      throw error;
    } finally {
      this.recording = null;
    }
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
