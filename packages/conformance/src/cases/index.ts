import type { ConformanceCase } from '../types.js';
import { behaviourCases } from './behaviour.js';
import { contractCases } from './contract.js';
import { numericCases } from './numeric.js';
import { semanticCases } from './semantics.js';

let cached: ConformanceCase[] | null = null;

/** Every case, in run order. Built once; data is generated when a case runs. */
export function allCases(): ConformanceCase[] {
  if (cached === null)
    cached = [...semanticCases(), ...numericCases(), ...contractCases(), ...behaviourCases()];
  return cached;
}
