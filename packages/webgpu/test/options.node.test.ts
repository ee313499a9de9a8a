import { describe, expect, it } from 'vitest';
import { createWebGpuBackend } from '../src/index.js';

// Factory options are checked when the backend is created, before any adapter or device: no GPU needed.
describe('createWebGpuBackend options (one validator)', () => {
  it.each([null, 3, [1]])('rejects options = %j with invalid-argument, not a TypeError', (value) => {
    expect(() => createWebGpuBackend(value as never)).toThrow(
      expect.objectContaining({ name: 'AttnkitError', code: 'invalid-argument', argument: 'options' }),
    );
  });

  it('rejects { device: {} } naming options.device', () => {
    expect(() => createWebGpuBackend({ device: {} as GPUDevice })).toThrow(
      expect.objectContaining({
        code: 'invalid-argument',
        argument: 'options.device',
        expected: 'a GPUDevice (createBuffer, createComputePipeline, queue.writeBuffer)',
        actual: 'an object (Object)',
      }),
    );
  });

  it('rejects a typo listing the known options', () => {
    expect(() => createWebGpuBackend({ workgroupsize: 64 } as never)).toThrow(
      expect.objectContaining({
        code: 'invalid-argument',
        argument: 'options.workgroupsize',
        message:
          'createWebGpuBackend: options has unknown key "workgroupsize" (known: device, gpu, adapterOptions, nodeWebgpuModule, dawnFlags, workgroupSize, tier)',
      }),
    );
  });

  it.each([
    ['gpu', {}],
    ['adapterOptions', 'fast'],
    ['nodeWebgpuModule', 5],
    ['dawnFlags', [1]],
    ['workgroupSize', 0],
    ['workgroupSize', 1.5],
    ['tier', 'fast'],
  ])('rejects options.%s = %j', (name, value) => {
    expect(() => createWebGpuBackend({ [name]: value } as never)).toThrow(
      expect.objectContaining({ code: 'invalid-argument', argument: `options.${name}` }),
    );
  });

  it('accepts well-formed options without acquiring anything', async () => {
    const device = {
      createBuffer: () => null,
      createComputePipeline: () => null,
      queue: { writeBuffer: () => undefined },
    } as unknown as GPUDevice;
    for (const options of [undefined, {}, { device }, { workgroupSize: 64, dawnFlags: [] }]) {
      const backend = createWebGpuBackend(options);
      await backend.dispose();
    }
  });
});
