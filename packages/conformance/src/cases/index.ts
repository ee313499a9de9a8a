import type { ConformanceCase } from '../types.js';
import { backwardCases } from './backward.js';
import { backwardLayerCases } from './backward-layer.js';
import { behaviourCases } from './behaviour.js';
import { cacheCases } from './cache.js';
import { cacheLayerCases } from './cache-layer.js';
import { contractCases } from './contract.js';
import { deviceCases } from './device.js';
import { f16StorageCases } from './f16-storage.js';
import { float32Cases } from './float32.js';
import { numericCases } from './numeric.js';
import { semanticCases } from './semantics.js';

let cached: ConformanceCase[] | null = null;

/** Every case, in run order. Built once; data is generated when a case runs. */
export function allCases(): ConformanceCase[] {
  if (cached === null)
    cached = [
      ...semanticCases(),
      ...numericCases(),
      ...float32Cases(),
      ...f16StorageCases(),
      ...contractCases(),
      ...behaviourCases(),
      ...cacheCases(),
      ...cacheLayerCases(),
      ...backwardCases(),
      ...backwardLayerCases(),
      ...deviceCases(),
    ];
  return cached;
}
