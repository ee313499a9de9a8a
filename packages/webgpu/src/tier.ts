import { AttnkitError } from '@attnkit/spec';

/**
 * Kernel tiers, picked at `init()` from what the device offers: `baseline` is core WGSL (row
 * statistics of the tiled forward reduced through workgroup memory); `subgroups` adds the WGSL
 * `subgroups` extension (reduced with subgroup shuffles).
 */
export type KernelTier = 'baseline' | 'subgroups';

/** Every tier, in order of preference when none is asked for: the last available wins. */
export const KERNEL_TIERS: readonly KernelTier[] = ['baseline', 'subgroups'];

/** Subgroup sizes the adapter reports (`GPUAdapterInfo.subgroupMinSize` / `subgroupMaxSize`). */
export interface SubgroupSizes {
  min: number;
  max: number;
}

/** What a device offers toward the tiers. */
export interface TierSupport {
  /** Whether the device or adapter lists the `subgroups` feature. */
  subgroupsFeature: boolean;
  /** Its subgroup sizes, `null` where it does not report them. */
  sizes: SubgroupSizes | null;
}

/** Reads the subgroup sizes of an adapter's (or device's) info, `null` when absent or nonsensical. */
export function subgroupSizesOf(info: unknown): SubgroupSizes | null {
  if (typeof info !== 'object' || info === null) return null;
  const { subgroupMinSize: min, subgroupMaxSize: max } = info as Record<string, unknown>;
  if (typeof min !== 'number' || typeof max !== 'number' || !(min >= 1) || !(max >= min)) return null;
  return { min, max };
}

/**
 * The tiers this device can run: `subgroups` needs the feature and known subgroup sizes (the tiled
 * kernel checks that whole subgroups fill its workgroup, and that row groups fit in one).
 */
export function availableTiers(support: TierSupport): KernelTier[] {
  const tiers: KernelTier[] = ['baseline'];
  if (support.subgroupsFeature && support.sizes !== null && support.sizes.min >= 4) tiers.push('subgroups');
  return tiers;
}

/** The tier asked for (validated against what the device offers), else the best available. */
export function resolveTier(requested: KernelTier | undefined, support: TierSupport): KernelTier {
  const available = availableTiers(support);
  if (requested === undefined) return available[available.length - 1] ?? 'baseline';
  if (!available.includes(requested)) {
    const why = support.subgroupsFeature
      ? 'the device has the "subgroups" feature but reports no subgroup sizes of at least 4'
      : 'the adapter/device lacks the "subgroups" feature';
    throw new AttnkitError(
      'unsupported',
      `createWebGpuBackend: options.tier "${requested}" is not available on this device (${why}); available: ${available.join(', ')}`,
      { argument: 'options.tier', expected: `one of ${available.join(', ')}`, actual: requested },
    );
  }
  return requested;
}
