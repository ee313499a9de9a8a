/** The backend's declared accuracy, shared by the loader and the backward's row test. */

/**
 * The declared tolerance: atol/rtol the same as `@attnkit/cpu`'s, plus `fudge` 2 times the error of
 * the naive float32 composition (the conformance suite's yardstick). Float32 arithmetic: a logit of
 * magnitude |s| carries ~|s| * 2^-24 from the float32 dot product, as any float32 kernel's does, so
 * large non-integer logits need the fudge (measured worst: 1.01 times the naive error per row).
 * Bias and ALiBi are added exactly (two-sum, two-product), and the running sums are compensated,
 * so those need none: a 1-ulp exponential, float64 for the projections and the log-sum-exp.
 */
export const WASM_TOLERANCE = { atol: 1e-6, rtol: 1e-5, fudge: 2 } as const;
