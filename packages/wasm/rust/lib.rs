//! attnkit's WebAssembly kernel: blocked attention with an online softmax, f32x4 SIMD, and a float64
//! accumulating matmul for the multi-head attention layer's projections.
//!
//! No external crates and no allocator: the TypeScript loader owns linear memory, writes the inputs
//! and a `Params` block, and calls the exports below. The same source builds twice: a single-thread
//! module, and a threads module (atomics + imported shared memory) whose instances, one per worker,
//! pull work items from one atomic counter in `Params`.
//!
//! The backward pass (FlashAttention-2's schedule, one work item per chunk of key tiles) follows the
//! forward at the end of the file; it reuses the forward's logits so that P matches the forward's lse.
#![no_std]

use core::arch::wasm32::*;
use core::sync::atomic::{AtomicU32, Ordering};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unreachable()
}

/// One attention call. Mirrors `PARAM` offsets in `src/abi.ts` (48 little-endian 32-bit words).
/// Pointers are byte offsets into linear memory; 0 means "absent". `d4`/`dv4` are the head dims
/// rounded up to a multiple of 4: the loader zero-pads q/k/v rows so the kernels never see a tail.
#[repr(C)]
pub struct Params {
    q: u32,
    k: u32,
    v: u32,
    out: u32,
    lse: u32,
    weights: u32,
    bias: u32,
    bias_sb: u32,
    bias_sh: u32,
    bias_si: u32,
    bias_sj: u32,
    key_mask: u32,
    alibi: u32,
    sinks: u32,
    v_bad: u32,
    batch: u32,
    hq: u32,
    hkv: u32,
    lq: u32,
    lk: u32,
    d4: u32,
    dv4: u32,
    scale: f32,
    softcap: f32,
    causal: u32,
    window: u32,
    block_q: u32,
    block_k: u32,
    n_items: u32,
    counter: u32,
    scratch: u32,
    scratch_stride: u32,
    // ---- backward only (a forward call leaves them 0) ----
    /// 0: `attn_run` runs forward items; 1: backward key-tile items (`bwd_item`).
    kind: u32,
    /// dLoss/dOutput, rows of `dv4` like `out` (which holds the forward's output for the backward).
    grad_out: u32,
    /// `D_i = dot(dO_i, O_i)` per row (float64), written by `bwd_prep`.
    delta: u32,
    /// `n_chunks` dQ partials of `B*Hq*Lq*d4` floats, `gq_stride` bytes apart; the first is the result.
    grad_q: u32,
    gq_stride: u32,
    /// Compensation (two-sum error) partials beside `grad_q`, or 0 when the chunks are short enough.
    gq_comp: u32,
    /// Key tiles are dealt round-robin into this many chunks, one work item each (with b, g). The
    /// KV cache: split-K chunks per (row, kv head, query tile).
    n_chunks: u32,
    grad_k: u32,
    grad_v: u32,
    /// float64 accumulators in the bias's own shape (its strides), or 0.
    grad_bias: u32,
    /// `[Hq]`, or 0.
    grad_sinks: u32,
    /// 1: one work item covers every batch (a bias broadcast over batch: its cells would collide).
    merge_b: u32,
    /// 1: one work item covers every kv head (a bias broadcast over heads).
    merge_g: u32,
    /// 1: some q, k or dO row holds NaN/inf: weighted sums skip zero weights (`0 * inf` is not 0).
    guard: u32,
    /// A row whose D, taken from the float32 output, could move dQ/dK by more than this (the bound
    /// in `bwd_prep`) gets D recomputed from its probabilities instead.
    exact_delta_above: f32,
    /// One byte per row, set by `bwd_prep`: 1 where D was recomputed; such a row's dP - D is then
    /// formed in float64 too (the same error, from dP's float32 sum, would come back otherwise).
    exact_rows: u32,
    // ---- KV cache only (kind 2; other calls leave them 0) ----
    /// First page: page `n` of stream `s = b * hkv + g` sits at `pages + (n * streams + s) * page_bytes`,
    /// its `page_tokens` K rows, then as many V rows at `page_v`, then one non-finite flag byte per V row at `page_flags`.
    pages: u32,
    page_bytes: u32,
    page_tokens: u32,
    page_v: u32,
    page_flags: u32,
    /// `B * hkv`.
    streams: u32,
    /// `[B]` u32: tokens each row holds.
    lengths: u32,
    /// Per work item, `rows * dv4` unnormalised output floats, then `rows` maxima, then `rows` sums.
    part: u32,
    /// Keys per split-K chunk (a multiple of `page_tokens`); `n_chunks` says how many per (row, kv head, query tile).
    chunk_keys: u32,
    /// Query positions per tile: a tile's rows are its positions times the group's query heads.
    tile_positions: u32,
}

const NEG_INF: f32 = f32::NEG_INFINITY;

#[inline(always)]
unsafe fn ld(p: *const f32) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
unsafe fn st(p: *mut f32, x: v128) {
    v128_store(p as *mut v128, x)
}

/// IEEE max that lets NaN through (the spec's `Math.max`); Rust's `f32::max` would drop it.
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if a != a || b != b {
        f32::NAN
    } else if a > b {
        a
    } else {
        b
    }
}

/// `[sum(a), sum(b), sum(c), sum(d)]`: reduces four dot-product accumulators with shuffles.
#[inline(always)]
fn hsum4(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = f32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
    let cd = f32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
    f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
}

#[inline(always)]
fn hsum(a: v128) -> f32 {
    let t = f32x4_add(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
    f32x4_extract_lane::<0>(t) + f32x4_extract_lane::<1>(t)
}

#[inline(always)]
fn hmax(a: v128) -> f32 {
    let t = f32x4_max(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
    let t = f32x4_max(t, i32x4_shuffle::<1, 0, 3, 2>(t, t));
    f32x4_extract_lane::<0>(t)
}

/// e^x, Cephes' single-precision polynomial (about 1 ulp). `-inf` and anything below the smallest
/// normal result give exactly 0 (masked keys must weigh nothing); NaN propagates.
/// Uses only instructions that map to one x86 SSE op each: pseudo-min/max (which keep a NaN first
/// operand) instead of wasm's NaN-propagating min/max, and the 1.5 * 2^23 trick for rounding.
#[inline(always)]
fn exp4(x: v128) -> v128 {
    let lo = f32x4_splat(-87.336_54);
    // pmax(x, lo) = x < lo ? lo : x, so a NaN x passes through
    let xc = f32x4_pmin(f32x4_pmax(x, lo), f32x4_splat(88.722_83));
    let magic = f32x4_splat(12_582_912.0);
    let t = f32x4_add(f32x4_mul(xc, f32x4_splat(core::f32::consts::LOG2_E)), magic);
    let n = f32x4_sub(t, magic);
    // one-constant range reduction: ln2's float32 error (1.9e-9) times |n| <= 126 stays below 2.4e-7
    let r = f32x4_sub(xc, f32x4_mul(n, f32x4_splat(core::f32::consts::LN_2)));
    // Cephes' coefficients without the r^7 term: truncation below 1.3e-7 for |r| <= ln2/2
    let mut p = f32x4_splat(1.398_2e-3);
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(8.333_452e-3));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(4.166_579_6e-2));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(1.666_666_5e-1));
    p = f32x4_add(f32x4_mul(p, r), f32x4_splat(5.000_000_1e-1));
    p = f32x4_add(f32x4_mul(f32x4_mul(p, r), r), f32x4_add(r, f32x4_splat(1.0)));
    // t's low mantissa bits hold n (two's complement within the 1.5 * 2^23 bias): 2^n = (n + 127) << 23
    let pow2 = i32x4_shl(i32x4_add(t, i32x4_splat(127 - 0x4b40_0000)), 23);
    let y = f32x4_mul(p, pow2);
    v128_andnot(y, f32x4_lt(x, lo))
}

#[inline(always)]
fn exp1(x: f32) -> f32 {
    f32x4_extract_lane::<0>(exp4(f32x4_splat(x)))
}

/// tanh, Cephes' split: an odd polynomial below |x| = 0.625, `1 - 2 / (e^{2|x|} + 1)` above.
#[inline(always)]
fn tanh4(x: v128) -> v128 {
    let ax = f32x4_abs(x);
    let z = f32x4_mul(x, x);
    let mut p = f32x4_splat(-5.704_988_7e-3);
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(2.063_908_9e-2));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(-5.373_971_6e-2));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(1.333_144_2e-1));
    p = f32x4_add(f32x4_mul(p, z), f32x4_splat(-3.333_328_2e-1));
    let small = f32x4_add(x, f32x4_mul(f32x4_mul(x, z), p));
    let e = exp4(f32x4_add(ax, ax));
    let big = f32x4_sub(
        f32x4_splat(1.0),
        f32x4_div(f32x4_splat(2.0), f32x4_add(e, f32x4_splat(1.0))),
    );
    // copy x's sign onto |tanh|
    let sign = v128_and(x, u32x4_splat(0x8000_0000));
    let big = v128_or(big, sign);
    v128_bitselect(small, big, f32x4_lt(ax, f32x4_splat(0.625)))
}

/// Natural log in float64 for the per-row log-sum-exp (`x` is the softmax denominator, >= 1 or NaN).
fn ln64(x: f64) -> f64 {
    if x != x || x <= 0.0 {
        return if x == 0.0 { f64::NEG_INFINITY } else { f64::NAN };
    }
    if x == f64::INFINITY {
        return x;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if e == -1023 {
        // subnormal: renormalise
        let y = x * 4503599627370496.0; // 2^52
        let b = y.to_bits();
        e = ((b >> 52) & 0x7ff) as i64 - 1023 - 52;
        m = f64::from_bits((b & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    }
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    // 2 atanh(t), |t| < 0.172: the series to t^21 is exact to double precision
    let mut s = 1.0 / 21.0;
    let mut k = 19.0;
    while k >= 1.0 {
        s = s * t2 + 1.0 / k;
        k -= 2.0;
    }
    2.0 * t * s + (e as f64) * core::f64::consts::LN_2
}

/// The keys `[begin, end)` any of the `n` consecutive queries from index `i0` (positions from
/// `shift + i0`) can see among `lk`: from the first query's start to the last one's end (both
/// bounds only grow with the position).
#[inline(always)]
fn tile_key_range(shift: i64, i0: usize, n: usize, lk: usize, causal: bool, window: i64) -> (usize, usize) {
    let (first_start, first_end) = key_range(shift + i0 as i64, lk as i64, causal, window);
    let (_, last_end) = key_range(shift + (i0 + n - 1) as i64, lk as i64, causal, window);
    let end = (last_end.max(first_end) as usize).min(lk);
    ((first_start as usize).min(end), end)
}

/// The key interval `[start, end)` that causal and window leave to the query at `pos` (masking.ts).
#[inline(always)]
fn key_range(pos: i64, lk: i64, causal: bool, window: i64) -> (i64, i64) {
    let mut start = 0i64;
    let mut end = lk;
    if causal && pos + 1 < end {
        end = pos + 1;
    }
    if window > 0 {
        if pos - window + 1 > start {
            start = pos - window + 1;
        }
        if !causal && pos + window < end {
            end = pos + window;
        }
    }
    if end < start {
        end = start;
    }
    (start.max(0), end.max(0))
}

/// `s[r][c] = dot(q[r], k[c])` for an `nq x nk` tile; rows of q and k are `d4` floats.
/// Two query rows by four keys per step: eight f32x4 accumulators fit the registers.
unsafe fn score_tile(q: *const f32, k: *const f32, d4: usize, nq: usize, nk: usize, s: *mut f32, ss: usize) {
    let mut r = 0;
    while r + 2 <= nq {
        let q0 = q.add(r * d4);
        let q1 = q0.add(d4);
        let mut c = 0;
        while c + 4 <= nk {
            let k0 = k.add(c * d4);
            let k1 = k0.add(d4);
            let k2 = k1.add(d4);
            let k3 = k2.add(d4);
            let z = f32x4_splat(0.0);
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (mut b0, mut b1, mut b2, mut b3) = (z, z, z, z);
            let mut d = 0;
            while d < d4 {
                let x0 = ld(q0.add(d));
                let x1 = ld(q1.add(d));
                let y = ld(k0.add(d));
                a0 = f32x4_add(a0, f32x4_mul(x0, y));
                b0 = f32x4_add(b0, f32x4_mul(x1, y));
                let y = ld(k1.add(d));
                a1 = f32x4_add(a1, f32x4_mul(x0, y));
                b1 = f32x4_add(b1, f32x4_mul(x1, y));
                let y = ld(k2.add(d));
                a2 = f32x4_add(a2, f32x4_mul(x0, y));
                b2 = f32x4_add(b2, f32x4_mul(x1, y));
                let y = ld(k3.add(d));
                a3 = f32x4_add(a3, f32x4_mul(x0, y));
                b3 = f32x4_add(b3, f32x4_mul(x1, y));
                d += 4;
            }
            st(s.add(r * ss + c), hsum4(a0, a1, a2, a3));
            st(s.add((r + 1) * ss + c), hsum4(b0, b1, b2, b3));
            c += 4;
        }
        while c < nk {
            let k0 = k.add(c * d4);
            let z = f32x4_splat(0.0);
            let (mut a0, mut b0) = (z, z);
            let mut d = 0;
            while d < d4 {
                let y = ld(k0.add(d));
                a0 = f32x4_add(a0, f32x4_mul(ld(q0.add(d)), y));
                b0 = f32x4_add(b0, f32x4_mul(ld(q1.add(d)), y));
                d += 4;
            }
            *s.add(r * ss + c) = hsum(a0);
            *s.add((r + 1) * ss + c) = hsum(b0);
            c += 1;
        }
        r += 2;
    }
    if r < nq {
        let q0 = q.add(r * d4);
        for c in 0..nk {
            let k0 = k.add(c * d4);
            let mut a0 = f32x4_splat(0.0);
            let mut d = 0;
            while d < d4 {
                a0 = f32x4_add(a0, f32x4_mul(ld(q0.add(d)), ld(k0.add(d))));
                d += 4;
            }
            *s.add(r * ss + c) = hsum(a0);
        }
    }
}

/// `o[r] += sum_c p[r][c] * v[c]` for an `nq x nk` tile of probabilities; rows of v and o are `dv4`.
unsafe fn pv_tile(p: *const f32, ps: usize, v: *const f32, dv4: usize, nq: usize, nk: usize, o: *mut f32) {
    let mut r = 0;
    while r + 2 <= nq {
        let p0 = p.add(r * ps);
        let p1 = p0.add(ps);
        let o0 = o.add(r * dv4);
        let o1 = o0.add(dv4);
        let mut cb = 0;
        while cb + 16 <= dv4 {
            let (mut a0, mut a1, mut a2, mut a3) = (ld(o0.add(cb)), ld(o0.add(cb + 4)), ld(o0.add(cb + 8)), ld(o0.add(cb + 12)));
            let (mut b0, mut b1, mut b2, mut b3) = (ld(o1.add(cb)), ld(o1.add(cb + 4)), ld(o1.add(cb + 8)), ld(o1.add(cb + 12)));
            let mut vr = v.add(cb);
            for c in 0..nk {
                let w0 = v128_load32_splat(p0.add(c) as *const u32);
                let w1 = v128_load32_splat(p1.add(c) as *const u32);
                let y = ld(vr);
                a0 = f32x4_add(a0, f32x4_mul(w0, y));
                b0 = f32x4_add(b0, f32x4_mul(w1, y));
                let y = ld(vr.add(4));
                a1 = f32x4_add(a1, f32x4_mul(w0, y));
                b1 = f32x4_add(b1, f32x4_mul(w1, y));
                let y = ld(vr.add(8));
                a2 = f32x4_add(a2, f32x4_mul(w0, y));
                b2 = f32x4_add(b2, f32x4_mul(w1, y));
                let y = ld(vr.add(12));
                a3 = f32x4_add(a3, f32x4_mul(w0, y));
                b3 = f32x4_add(b3, f32x4_mul(w1, y));
                vr = vr.add(dv4);
            }
            st(o0.add(cb), a0);
            st(o0.add(cb + 4), a1);
            st(o0.add(cb + 8), a2);
            st(o0.add(cb + 12), a3);
            st(o1.add(cb), b0);
            st(o1.add(cb + 4), b1);
            st(o1.add(cb + 8), b2);
            st(o1.add(cb + 12), b3);
            cb += 16;
        }
        while cb < dv4 {
            let mut a0 = ld(o0.add(cb));
            let mut b0 = ld(o1.add(cb));
            let mut vr = v.add(cb);
            for c in 0..nk {
                let y = ld(vr);
                a0 = f32x4_add(a0, f32x4_mul(v128_load32_splat(p0.add(c) as *const u32), y));
                b0 = f32x4_add(b0, f32x4_mul(v128_load32_splat(p1.add(c) as *const u32), y));
                vr = vr.add(dv4);
            }
            st(o0.add(cb), a0);
            st(o1.add(cb), b0);
            cb += 4;
        }
        r += 2;
    }
    if r < nq {
        let p0 = p.add(r * ps);
        let o0 = o.add(r * dv4);
        let mut cb = 0;
        while cb < dv4 {
            let mut a0 = ld(o0.add(cb));
            let mut vr = v.add(cb);
            for c in 0..nk {
                a0 = f32x4_add(a0, f32x4_mul(v128_load32_splat(p0.add(c) as *const u32), ld(vr)));
                vr = vr.add(dv4);
            }
            st(o0.add(cb), a0);
            cb += 4;
        }
    }
}

/// The same sum, but a key whose probability is exactly 0 is skipped, as the reference does, so a
/// non-finite value row of a masked key never turns `0 * inf` into NaN. Used only for tiles whose
/// V rows hold a non-finite number.
unsafe fn pv_tile_guarded(p: *const f32, ps: usize, v: *const f32, dv4: usize, nq: usize, nk: usize, o: *mut f32) {
    for r in 0..nq {
        let o0 = o.add(r * dv4);
        for c in 0..nk {
            let w = *p.add(r * ps + c);
            if w == 0.0 {
                continue;
            }
            let ws = f32x4_splat(w);
            let vr = v.add(c * dv4);
            let mut cb = 0;
            while cb < dv4 {
                st(o0.add(cb), f32x4_add(ld(o0.add(cb)), f32x4_mul(ws, ld(vr.add(cb)))));
                cb += 4;
            }
        }
    }
}

/// Bytes of scratch one worker needs for tiles of `bq x bk` and value rows of `dv4`.
#[no_mangle]
pub extern "C" fn attn_scratch_bytes(bq: u32, bk: u32, dv4: u32) -> u32 {
    let bk4 = (bk + 3) & !3;
    // logits/probabilities, their low parts, output accumulators with their tile sums and
    // compensations, running max and sum with its compensation, key lanes
    (2 * bq * bk4 + 3 * bq * dv4 + 3 * bq + bk4) * 4 + 64
}

/// Marks each of `rows` rows of `cols` floats that holds a NaN or an infinity; returns how many.
#[no_mangle]
pub unsafe extern "C" fn nonfinite_rows(data: *const f32, rows: u32, cols: u32, flags: *mut u8) -> u32 {
    let mut count = 0;
    let exp_mask = u32x4_splat(0x7f80_0000);
    for r in 0..rows as usize {
        let row = data.add(r * cols as usize);
        let mut bad = u32x4_splat(0);
        let mut c = 0usize;
        while c + 4 <= cols as usize {
            let x = v128_and(ld(row.add(c)), exp_mask);
            bad = v128_or(bad, i32x4_eq(x, exp_mask));
            c += 4;
        }
        let mut any = v128_any_true(bad);
        while c < cols as usize {
            if !(*row.add(c)).is_finite() {
                any = true;
            }
            c += 1;
        }
        *flags.add(r) = any as u8;
        count += any as u32;
    }
    count
}

/// Runs attention work items until the shared counter runs out. Every thread calls this with its own
/// `worker` index (its scratch slot); items are `(query tile, batch, head)`, heaviest tiles first.
#[no_mangle]
pub unsafe extern "C" fn attn_run(params: *const Params, worker: u32) {
    let p = &*params;
    let counter = &*(&p.counter as *const u32 as *const AtomicU32);
    let scratch = (p.scratch + worker * p.scratch_stride) as usize as *mut f32;
    loop {
        let item = counter.fetch_add(1, Ordering::Relaxed);
        if item >= p.n_items {
            break;
        }
        if p.kind == 1 {
            bwd_item(p, item, scratch);
        } else if p.kind == 2 {
            cache_item(p, item, scratch);
        } else {
            attn_item(p, item, scratch);
        }
    }
}

/// What every row of one work item shares when its logits are formed.
struct Item {
    i0: usize,
    lk: usize,
    shift: i64,
    causal: bool,
    window: i64,
    scale: f32,
    softcap: f32,
    /// bias at `[b, h, i0, 0]`, or null
    bias: *const f32,
    bias_si: usize,
    bias_sj: usize,
    has_alibi: bool,
    slope: f32,
    key_mask: *const u8,
    /// whether the tile's causal/window interval covers every row (no per-key position mask)
    first_end: i64,
    last_start: i64,
}

/// Two-sum: `a + b = hi + lo` exactly (Knuth). Bias of 1e4 on a score of 0.3 would otherwise lose
/// the score's low bits in float32, and the reference keeps them (float64).
#[inline(always)]
fn two_sum(a: v128, b: v128) -> (v128, v128) {
    let s = f32x4_add(a, b);
    let bb = f32x4_sub(s, a);
    let lo = f32x4_add(f32x4_sub(a, f32x4_sub(s, bb)), f32x4_sub(b, bb));
    (s, lo)
}

/// Scalar two-sum, for the running denominator.
#[inline(always)]
fn two_sum1(a: f32, b: f32) -> (f32, f32) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// The rounding error of `a * b` (Dekker's two-product with Veltkamp's split: wasm simd128 in Rust
/// 1.63 has no fused multiply-add). Exact for |a|, |b| below ~2^100; the caller drops a non-finite one.
#[inline(always)]
fn two_product_error(a: v128, b: v128, p: v128) -> v128 {
    let split = f32x4_splat(4097.0); // 2^12 + 1: halves of 12 bits multiply exactly
    let split_of = |x: v128| {
        let c = f32x4_mul(split, x);
        let hi = f32x4_sub(c, f32x4_sub(c, x));
        (hi, f32x4_sub(x, hi))
    };
    let (ah, al) = split_of(a);
    let (bh, bl) = split_of(b);
    let e = f32x4_add(f32x4_sub(f32x4_mul(ah, bh), p), f32x4_mul(ah, bl));
    f32x4_add(f32x4_add(e, f32x4_mul(al, bh)), f32x4_mul(al, bl))
}

/// The key-mask lanes of tile `[j0, j0 + nk)` from the batch's mask row (null: every key is
/// visible, lanes untouched); false when no key of the tile is visible.
unsafe fn key_lanes(mask: *const u8, j0: usize, nk: usize, lanes: *mut u32) -> bool {
    if mask.is_null() {
        return true;
    }
    let nk4 = (nk + 3) & !3;
    let mut visible = 0;
    for c in 0..nk4 {
        let on = c < nk && *mask.add(j0 + c) != 0;
        *lanes.add(c) = if on { u32::MAX } else { 0 };
        visible += on as u32;
    }
    visible > 0
}

impl Item {
    /// The item of query rows `[i0, i0 + nq)` of batch `b`, query head `h`.
    unsafe fn new(p: &Params, b: usize, h: usize, i0: usize, nq: usize) -> Item {
        let lk = p.lk as usize;
        let shift = lk as i64 - p.lq as i64;
        let causal = p.causal != 0;
        let window = p.window as i64;
        let (_, first_end) = key_range(shift + i0 as i64, lk as i64, causal, window);
        let (last_start, _) = key_range(shift + (i0 + nq - 1) as i64, lk as i64, causal, window);
        Item {
            i0,
            lk,
            shift,
            causal,
            window,
            scale: p.scale,
            softcap: p.softcap,
            bias: if p.bias != 0 {
                (p.bias as usize as *const f32)
                    .add(b * p.bias_sb as usize + h * p.bias_sh as usize + i0 * p.bias_si as usize)
            } else {
                core::ptr::null()
            },
            bias_si: p.bias_si as usize,
            bias_sj: p.bias_sj as usize,
            has_alibi: p.alibi != 0,
            slope: if p.alibi != 0 { *(p.alibi as usize as *const f32).add(h) } else { 0.0 },
            key_mask: if p.key_mask != 0 { (p.key_mask as usize as *const u8).add(b * lk) } else { core::ptr::null() },
            first_end,
            last_start,
        }
    }

    /// Builds the key-mask lanes of tile `[j0, j0 + nk)`; false when no key of it is visible.
    unsafe fn key_lanes(&self, j0: usize, nk: usize, lanes: *mut u32) -> bool {
        key_lanes(self.key_mask, j0, nk, lanes)
    }

    /// Turns row `r`'s raw dot products in `srow[0..nk4]` into logits (scale, softcap, bias, ALiBi,
    /// masks as `-inf`); with bias or ALiBi, their rounding error goes to `lorow`. Returns the max.
    /// With softcap and a non-null `throw`, `tanh(r / cap)` goes there (the backward's derivative).
    #[inline(always)]
    unsafe fn logits(
        &self,
        r: usize,
        j0: usize,
        nk: usize,
        lanes: *const u32,
        srow: *mut f32,
        lorow: *mut f32,
        throw: *mut f32,
    ) -> f32 {
        let nk4 = (nk + 3) & !3;
        let i = self.i0 + r;
        let pos = self.shift + i as i64;
        let full = self.last_start <= j0 as i64 && self.first_end >= (j0 + nk) as i64;
        let (lo, hi) = if full {
            (0, nk as i64)
        } else {
            let (rs, re) = key_range(pos, self.lk as i64, self.causal, self.window);
            ((rs - j0 as i64).clamp(0, nk as i64), (re - j0 as i64).clamp(0, nk as i64))
        };
        let lo = i32x4_splat(lo as i32);
        let hi = i32x4_splat(hi as i32);
        let scale = f32x4_splat(self.scale);
        let neg_inf4 = f32x4_splat(NEG_INF);
        let finite = f32x4_splat(f32::INFINITY);
        let iota = i32x4(0, 1, 2, 3);
        let brow = if self.bias.is_null() { core::ptr::null() } else { self.bias.add(r * self.bias_si + j0 * self.bias_sj) };
        let split = !brow.is_null() || self.has_alibi;
        let dist0 = i32x4_splat((j0 as i64 - pos) as i32);
        let mut rmax = neg_inf4;
        let mut nan = f32x4_splat(0.0);
        let plain = full && nk == nk4 && brow.is_null() && !self.has_alibi && self.key_mask.is_null() && self.softcap <= 0.0;
        if plain {
            // the common tile: every key visible, nothing added: scale and max only
            let mut c = 0;
            while c < nk4 {
                let x = f32x4_mul(ld(srow.add(c)), scale);
                st(srow.add(c), x);
                rmax = f32x4_pmax(rmax, x);
                nan = v128_or(nan, f32x4_ne(x, x));
                c += 4;
            }
            return if v128_any_true(nan) { f32::NAN } else { hmax(rmax) };
        }
        let mut c = 0;
        while c < nk4 {
            let mut x = f32x4_mul(ld(srow.add(c)), scale);
            if self.softcap > 0.0 {
                let cv = f32x4_splat(self.softcap);
                let t = tanh4(f32x4_div(x, cv));
                if !throw.is_null() {
                    st(throw.add(c), t);
                }
                x = f32x4_mul(cv, t);
            }
            let mut low = f32x4_splat(0.0);
            if !brow.is_null() {
                let bv = if self.bias_sj == 1 && c + 4 <= nk {
                    ld(brow.add(c))
                } else if self.bias_sj == 0 {
                    f32x4_splat(*brow)
                } else {
                    let g = |t: usize| if c + t < nk { *brow.add((c + t) * self.bias_sj) } else { 0.0 };
                    f32x4(g(0), g(1), g(2), g(3))
                };
                let (h, l) = two_sum(x, bv);
                x = h;
                low = l;
            }
            let col = i32x4_add(iota, i32x4_splat(c as i32));
            if self.has_alibi {
                // + slope * (j - p): the spec's -slope * (p - j)
                // the product is exact as product + two_product_error: |slope * (p - j)| of tens
                // would otherwise lose ~|term| * 2^-24 before the add
                let dist = f32x4_convert_i32x4(i32x4_add(dist0, col));
                let sv = f32x4_splat(self.slope);
                let prod = f32x4_mul(sv, dist);
                let (h, l) = two_sum(x, prod);
                x = h;
                low = f32x4_add(low, f32x4_add(l, two_product_error(sv, dist, prod)));
            }
            let mut keep = v128_and(i32x4_ge(col, lo), i32x4_lt(col, hi));
            if !self.key_mask.is_null() {
                keep = v128_and(keep, v128_load(lanes.add(c) as *const v128));
            }
            x = v128_bitselect(x, neg_inf4, keep);
            st(srow.add(c), x);
            if split {
                // an infinite logit has no low part (two_sum gives NaN there)
                let ok = v128_and(keep, f32x4_lt(f32x4_abs(low), finite));
                st(lorow.add(c), v128_and(low, ok));
            }
            rmax = f32x4_pmax(rmax, x);
            nan = v128_or(nan, f32x4_ne(x, x));
            c += 4;
        }
        if v128_any_true(nan) {
            f32::NAN
        } else {
            hmax(rmax)
        }
    }

    /// `exp((s - m) + lo)` over the row in place; returns the sum.
    #[inline(always)]
    unsafe fn exponentiate(&self, nk: usize, m: f32, srow: *mut f32, lorow: *const f32) -> f32 {
        let nk4 = (nk + 3) & !3;
        let split = !self.bias.is_null() || self.has_alibi;
        let mv = f32x4_splat(m);
        let mut sum = f32x4_splat(0.0);
        let mut c = 0;
        while c < nk4 {
            let mut t = f32x4_sub(ld(srow.add(c)), mv);
            if split {
                t = f32x4_add(t, ld(lorow.add(c)));
            }
            let e = exp4(t);
            st(srow.add(c), e);
            sum = f32x4_add(sum, e);
            c += 4;
        }
        hsum(sum)
    }
}

/// One row's tile folded into its online softmax: the tile's logits `srow` / `lorow` (max `rmax`)
/// become probabilities against the new running max, the running sum (`l` with its two-sum
/// compensation `lc`) and output (`o`, `oc`, `dv4` floats) are rescaled to it. A row that has seen
/// nothing visible yet gets zero probabilities, so the PV step adds nothing. The forward's and the
/// cache's items share it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn fold_row(
    it: &Item,
    nk: usize,
    bk4: usize,
    dv4: usize,
    rmax: f32,
    srow: *mut f32,
    lorow: *const f32,
    m: *mut f32,
    l: *mut f32,
    lc: *mut f32,
    o: *mut f32,
    oc: *mut f32,
) {
    let m_old = *m;
    let m_new = nan_max(m_old, rmax);
    if m_new == NEG_INF {
        for c in (0..bk4).step_by(4) {
            st(srow.add(c), f32x4_splat(0.0));
        }
        return;
    }
    let sum = it.exponentiate(nk, m_new, srow, lorow);
    let alpha = exp1(m_old - m_new);
    let (l_new, l_err) = two_sum1(*l * alpha, sum);
    *l = l_new;
    *lc = *lc * alpha + l_err;
    *m = m_new;
    if alpha != 1.0 {
        let a = f32x4_splat(alpha);
        for c in (0..dv4).step_by(4) {
            st(o.add(c), f32x4_mul(ld(o.add(c)), a));
            st(oc.add(c), f32x4_mul(ld(oc.add(c)), a));
        }
    }
}

/// The tile's probabilities `s_buf` times its values `v` added into the `rows` running outputs
/// `o_buf`: guarded where a value row of the tile is non-finite (a zero probability must add
/// nothing), and past 4096 keys (`compensate`) summed into `t_buf` first and two-summed in, the
/// error into `oc_buf`. The forward's and the cache's items share it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn add_tile_values(
    s_buf: *const f32,
    bk4: usize,
    v: *const f32,
    dv4: usize,
    rows: usize,
    nk: usize,
    guarded: bool,
    compensate: bool,
    o_buf: *mut f32,
    oc_buf: *mut f32,
    t_buf: *mut f32,
) {
    let acc = if compensate { t_buf } else { o_buf };
    if compensate {
        zero(t_buf, rows * dv4);
    }
    if guarded {
        pv_tile_guarded(s_buf, bk4, v, dv4, rows, nk, acc);
    } else {
        pv_tile(s_buf, bk4, v, dv4, rows, nk, acc);
    }
    if compensate {
        for c in (0..rows * dv4).step_by(4) {
            let (hi, lo) = two_sum(ld(o_buf.add(c)), ld(t_buf.add(c)));
            st(o_buf.add(c), hi);
            st(oc_buf.add(c), f32x4_add(ld(oc_buf.add(c)), lo));
        }
    }
}

unsafe fn attn_item(p: &Params, item: u32, scratch: *mut f32) {
    let bh_count = p.batch * p.hq;
    let n_qt = (p.lq + p.block_q - 1) / p.block_q;
    let qt = (n_qt - 1 - item / bh_count) as usize;
    let bh = (item % bh_count) as usize;
    let hq = p.hq as usize;
    let b = bh / hq;
    let h = bh % hq;
    let g = h / (hq / p.hkv as usize);
    let lq = p.lq as usize;
    let lk = p.lk as usize;
    let d4 = p.d4 as usize;
    let dv4 = p.dv4 as usize;
    let bq = p.block_q as usize;
    let bk = p.block_k as usize;
    let bk4 = (bk + 3) & !3;
    let i0 = qt * bq;
    let nq = bq.min(lq - i0);
    let causal = p.causal != 0;
    let window = p.window as i64;
    let shift = lk as i64 - lq as i64;

    let s_buf = scratch;
    let lo_buf = s_buf.add(bq * bk4);
    let o_buf = lo_buf.add(bq * bk4);
    let m_buf = o_buf.add(bq * dv4);
    let l_buf = m_buf.add(bq);
    // Compensated running sums: over millions of keys, adding each tile straight into the running
    // output and denominator drifts by ~sqrt(tiles) ulps (4M keys: 37x atol). Each tile's PV product
    // goes to a zeroed t_buf instead, then into o_buf by an exact two-sum whose error collects in
    // oc_buf (and the denominator's in lc_buf); both are rescaled with their sums. 2/nk extra work.
    let lc_buf = l_buf.add(bq);
    let t_buf = lc_buf.add(bq);
    let oc_buf = t_buf.add(bq * dv4);
    let lanes = oc_buf.add(bq * dv4) as *mut u32;

    let q = (p.q as usize as *const f32).add((bh * lq + i0) * d4);
    let kv_row0 = (b * p.hkv as usize + g) * lk;
    let k = (p.k as usize as *const f32).add(kv_row0 * d4);
    let v = (p.v as usize as *const f32).add(kv_row0 * dv4);
    let row0 = bh * lq + i0;
    let v_bad = if p.v_bad != 0 { (p.v_bad as usize as *const u8).add(kv_row0) } else { core::ptr::null() };
    let sink = if p.sinks != 0 { *(p.sinks as usize as *const f32).add(h) } else { NEG_INF };

    let (k_begin, k_end) = tile_key_range(shift, i0, nq, lk, causal, window);

    let it = Item::new(p, b, h, i0, nq);

    // the sink starts the running max and sum: exp(sink - sink) is 1, or NaN for a NaN/+inf sink
    let l0 = if sink == NEG_INF { 0.0 } else { exp1(sink - sink) };
    for r in 0..nq {
        *m_buf.add(r) = sink;
        *l_buf.add(r) = l0;
        *lc_buf.add(r) = 0.0;
        let o = o_buf.add(r * dv4);
        let oc = oc_buf.add(r * dv4);
        for c in (0..dv4).step_by(4) {
            st(o.add(c), f32x4_splat(0.0));
            st(oc.add(c), f32x4_splat(0.0));
        }
    }

    // Up to 4096 keys the plain running output (one rounding per key at its own size) drifts by
    // ~sqrt(keys) * 2^-24 relative, 4e-6 at 4096, under rtol; the compensation's extra pass over the
    // accumulators (~7% at D = 64) is paid only above that. Decided per item from its key range
    // alone, so the bits do not depend on the thread count.
    let compensate = k_end - k_begin > 4096;
    let mut j0 = k_begin;
    while j0 < k_end {
        let nk = bk.min(k_end - j0);
        if !it.key_lanes(j0, nk, lanes) {
            j0 += nk;
            continue;
        }
        score_tile(q, k.add(j0 * d4), d4, nq, nk, s_buf, bk4);
        for r in 0..nq {
            let srow = s_buf.add(r * bk4);
            let lorow = lo_buf.add(r * bk4);
            let rmax = it.logits(r, j0, nk, lanes, srow, lorow, core::ptr::null_mut());
            let (o, oc) = (o_buf.add(r * dv4), oc_buf.add(r * dv4));
            fold_row(&it, nk, bk4, dv4, rmax, srow, lorow, m_buf.add(r), l_buf.add(r), lc_buf.add(r), o, oc);
        }
        let mut guarded = false;
        if !v_bad.is_null() {
            for c in 0..nk {
                if *v_bad.add(j0 + c) != 0 {
                    guarded = true;
                }
            }
        }
        add_tile_values(s_buf, bk4, v.add(j0 * dv4), dv4, nq, nk, guarded, compensate, o_buf, oc_buf, t_buf);
        j0 += nk;
    }

    let out = (p.out as usize as *mut f32).add(row0 * dv4);
    for r in 0..nq {
        let m = *m_buf.add(r);
        let l = *l_buf.add(r);
        let lc = *lc_buf.add(r);
        let o = o_buf.add(r * dv4);
        let oc = oc_buf.add(r * dv4);
        let dst = out.add(r * dv4);
        let empty = m == NEG_INF;
        let inv = f32x4_splat(if empty { 0.0 } else { 1.0 / (l + lc) });
        for c in (0..dv4).step_by(4) {
            // a non-finite sum has a NaN two-sum error: keep the sum alone there
            let sum = ld(o.add(c));
            let err = ld(oc.add(c));
            let ok = f32x4_lt(f32x4_abs(err), f32x4_splat(f32::INFINITY));
            let total = v128_bitselect(f32x4_add(sum, err), sum, ok);
            let x = if empty { f32x4_splat(0.0) } else { f32x4_mul(total, inv) };
            st(dst.add(c), x);
        }
        if p.lse != 0 {
            let lse = if empty { NEG_INF } else { (m as f64 + ln64(l as f64 + lc as f64)) as f32 };
            *(p.lse as usize as *mut f32).add(row0 + r) = lse;
        }
    }

    if p.weights == 0 {
        return;
    }
    // Weights need the final max and sum, so a second pass recomputes the logits tile by tile
    // (inspection only: it doubles the score work, never the memory). The loader zero-filled them.
    let weights = (p.weights as usize as *mut f32).add(row0 * lk);
    let mut j0 = k_begin;
    while j0 < k_end {
        let nk = bk.min(k_end - j0);
        if !it.key_lanes(j0, nk, lanes) {
            j0 += nk;
            continue;
        }
        score_tile(q, k.add(j0 * d4), d4, nq, nk, s_buf, bk4);
        for r in 0..nq {
            let m = *m_buf.add(r);
            if m == NEG_INF {
                continue;
            }
            let srow = s_buf.add(r * bk4);
            let lorow = lo_buf.add(r * bk4);
            it.logits(r, j0, nk, lanes, srow, lorow, core::ptr::null_mut());
            it.exponentiate(nk, m, srow, lorow);
            let l = *l_buf.add(r) + *lc_buf.add(r);
            let w = weights.add(r * lk + j0);
            for c in 0..nk {
                *w.add(c) = *srow.add(c) / l;
            }
        }
        j0 += nk;
    }
}

/// `c[m, n] = a[m, k] @ b[k, n] (+ bias[n])`, accumulated in float64 and rounded once: the layer's
/// projections feed attention, so they should not add float32 summation error of their own.
#[no_mangle]
pub unsafe extern "C" fn matmul(a: *const f32, b: *const f32, bias: *const f32, c: *mut f32, m: u32, k: u32, n: u32) {
    let (m, k, n) = (m as usize, k as usize, n as usize);
    for row in 0..m {
        let arow = a.add(row * k);
        let crow = c.add(row * n);
        let mut col = 0;
        while col + 4 <= n {
            let z = f64x2_splat(0.0);
            let (mut lo, mut hi) = (z, z);
            for t in 0..k {
                let x = f64x2_splat(*arow.add(t) as f64);
                let y = ld(b.add(t * n + col));
                lo = f64x2_add(lo, f64x2_mul(x, f64x2_promote_low_f32x4(y)));
                hi = f64x2_add(hi, f64x2_mul(x, f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 0, 1>(y, y))));
            }
            if !bias.is_null() {
                let y = ld(bias.add(col));
                lo = f64x2_add(lo, f64x2_promote_low_f32x4(y));
                hi = f64x2_add(hi, f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 0, 1>(y, y)));
            }
            let lo32 = f32x4_demote_f64x2_zero(lo);
            let hi32 = f32x4_demote_f64x2_zero(hi);
            st(crow.add(col), i32x4_shuffle::<0, 1, 4, 5>(lo32, hi32));
            col += 4;
        }
        while col < n {
            let mut s = 0.0f64;
            for t in 0..k {
                s += *arow.add(t) as f64 * *b.add(t * n + col) as f64;
            }
            if !bias.is_null() {
                s += *bias.add(col) as f64;
            }
            *crow.add(col) = s as f32;
            col += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward: FlashAttention-2's schedule. `bwd_prep` forms D_i = dot(dO_i, O_i) (and the sinks'
// gradient); then each work item owns a chunk of key tiles (tiles c, c + C, c + 2C, ... so that
// causal chunks weigh the same) for one (batch, kv head): per key tile it walks the query tiles
// that can see it, for every query head of the group, recomputes P from the forward's logits and
// lse, and accumulates dV, dK in scratch (no race: it owns the tile) and dQ into its chunk's own
// partial buffer (no race: it owns the chunk); `bwd_finish` sums the C partials in float64 in
// chunk order. C depends on the shape only, so the bits do not depend on the thread count.
// ---------------------------------------------------------------------------------------------

/// Bytes of scratch one worker needs for backward tiles of `bq x bk` and rows of `d4`/`dv4`.
#[no_mangle]
pub extern "C" fn bwd_scratch_bytes(bq: u32, bk: u32, d4: u32, dv4: u32) -> u32 {
    let bk4 = (bk + 3) & !3;
    // P, logit low parts (then dS for the bias), tanh, dP (then scale * dR); lse and D per row;
    // dK and dV: the query tile's share, running sums and compensations; the tile's dQ; key lanes
    (4 * bq * bk4 + 2 * bq + 3 * bk4 * (d4 + dv4) + bq * d4 + bk4) * 4 + 64
}

#[inline(always)]
unsafe fn zero(p: *mut f32, n4: usize) {
    let z = f32x4_splat(0.0);
    let mut c = 0;
    while c < n4 {
        st(p.add(c), z);
        c += 4;
    }
}

/// `dot(a, b)` over `n4` floats in float64: float32 products are exact there.
#[inline(always)]
unsafe fn dot64(a: *const f32, b: *const f32, n4: usize) -> f64 {
    let (mut lo, mut hi) = (f64x2_splat(0.0), f64x2_splat(0.0));
    let mut c = 0;
    while c < n4 {
        let x = ld(a.add(c));
        let y = ld(b.add(c));
        lo = f64x2_add(lo, f64x2_mul(f64x2_promote_low_f32x4(x), f64x2_promote_low_f32x4(y)));
        let x = i32x4_shuffle::<2, 3, 0, 1>(x, x);
        let y = i32x4_shuffle::<2, 3, 0, 1>(y, y);
        hi = f64x2_add(hi, f64x2_mul(f64x2_promote_low_f32x4(x), f64x2_promote_low_f32x4(y)));
        c += 4;
    }
    let t = f64x2_add(lo, hi);
    f64x2_extract_lane::<0>(t) + f64x2_extract_lane::<1>(t)
}

/// Largest |x| over `n4` floats (NaN ignored: pmax keeps the first operand).
unsafe fn max_abs(x: *const f32, n4: usize) -> f32 {
    let mut m = f32x4_splat(0.0);
    let mut c = 0;
    while c < n4 {
        m = f32x4_pmax(m, f32x4_abs(ld(x.add(c))));
        c += 4;
    }
    hmax(m)
}

/// A bound on `|dot(dO_i, O_i) - dot(dO_i, O_i exact)|` from the output's float32 rounding: half an
/// ulp of each `O_d` (its exponent bits times 2^-24), weighted by `|dO_d|`.
unsafe fn delta_error_bound(o: *const f32, g: *const f32, n4: usize) -> f64 {
    let mut acc = f32x4_splat(0.0);
    let mut c = 0;
    while c < n4 {
        let half_ulp = f32x4_mul(v128_and(ld(o.add(c)), u32x4_splat(0x7f80_0000)), f32x4_splat(5.960_464_5e-8));
        acc = f32x4_add(acc, f32x4_mul(f32x4_abs(ld(g.add(c))), half_ulp));
        c += 4;
    }
    // a margin for the bound's own float32 rounding
    hsum(acc) as f64 * 1.001
}

/// `D_i` from the row's recomputed probabilities, `sum_j P_j dP_j / (sum_j P_j + P_sink)` with `dP`
/// in float64: the output's own rounding does not enter, and the normalisation cancels the common
/// factor that the float32 lse puts on every P. One row's scores, tile by tile, in `scratch`.
unsafe fn exact_delta(p: &Params, b: usize, h: usize, i: usize, scratch: *mut f32) -> f64 {
    let (hq, hkv, lq, lk) = (p.hq as usize, p.hkv as usize, p.lq as usize, p.lk as usize);
    let (d4, dv4, bk) = (p.d4 as usize, p.dv4 as usize, p.block_k as usize);
    let bk4 = (bk + 3) & !3;
    let row = (b * hq + h) * lq + i;
    let lse = *(p.lse as usize as *const f32).add(row);
    let srow = scratch;
    let lorow = srow.add(bk4);
    let lanes = lorow.add(bk4) as *mut u32;
    let it = Item::new(p, b, h, i, 1);
    let split = !it.bias.is_null() || it.has_alibi;
    let (start, end) = key_range(it.shift + i as i64, lk as i64, it.causal, it.window);
    let kv0 = (b * hkv + h / (hq / hkv)) * lk;
    let q = (p.q as usize as *const f32).add(row * d4);
    let g = (p.grad_out as usize as *const f32).add(row * dv4);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut j0 = start as usize;
    while j0 < end as usize {
        let nk = bk.min(end as usize - j0);
        if key_lanes(it.key_mask, j0, nk, lanes) {
            score_tile(q, (p.k as usize as *const f32).add((kv0 + j0) * d4), d4, 1, nk, srow, bk4);
            it.logits(0, j0, nk, lanes, srow, lorow, core::ptr::null_mut());
            probabilities(split, nk, lse, srow, lorow);
            for c in 0..nk {
                let w = *srow.add(c);
                if w != 0.0 {
                    num += w as f64 * dot64(g, (p.v as usize as *const f32).add((kv0 + j0 + c) * dv4), dv4);
                    den += w as f64;
                }
            }
        }
        j0 += nk;
    }
    if p.sinks != 0 {
        den += exp1(*(p.sinks as usize as *const f32).add(h) - lse) as f64;
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// Before the key-tile pass, on one thread: `D_i = dot(dO_i, O_i)` for every row (float64, rounded
/// once) and, with sinks, `gradSinks[h] = -sum_{b,i} exp(sink_h - lse_i) D_i`, summed in float64 in
/// a fixed order. A row with no visible key and no sink (`lse = -inf`) contributes nothing.
///
/// D from the float32 output carries that output's rounding (up to half an ulp per element), and
/// dS = P (dP - D) turns it into an absolute error of `|scale| * |k or q| * error(D)` in dQ and dK:
/// on a peaked row (logits near 60: dP - D nearly cancels, dQ ~ 1e-5) that alone is ~2e-6, twice
/// atol. Where the bound of that error passes `exact_delta_above`, the row's D is recomputed from
/// its probabilities (`exact_delta`: one more pass over the row's keys, Lk (D + Dv) multiply-adds;
/// rows of ordinary data, such as the bench's, stay far below the bound and cost nothing).
#[no_mangle]
pub unsafe extern "C" fn bwd_prep(params: *const Params) {
    let p = &*params;
    let (batch, hq, hkv, lq, lk) = (p.batch as usize, p.hq as usize, p.hkv as usize, p.lq as usize, p.lk as usize);
    let (d4, dv4) = (p.d4 as usize, p.dv4 as usize);
    let o = p.out as usize as *const f32;
    let g = p.grad_out as usize as *const f32;
    let delta = p.delta as usize as *mut f64;
    let exact = p.exact_rows as usize as *mut u8;
    let lse = p.lse as usize as *const f32;
    let scratch = p.scratch as usize as *mut f32;
    let amplify = (if p.scale < 0.0 { -p.scale } else { p.scale }) as f64
        * max_abs(p.k as usize as *const f32, batch * hkv * lk * d4)
            .max(max_abs(p.q as usize as *const f32, batch * hq * lq * d4)) as f64;
    for h in 0..hq {
        let sink = if p.sinks != 0 { *(p.sinks as usize as *const f32).add(h) } else { NEG_INF };
        let mut sink_sum = 0.0f64;
        for b in 0..batch {
            for i in 0..lq {
                let row = (b * hq + h) * lq + i;
                let l = *lse.add(row);
                let mut d = dot64(o.add(row * dv4), g.add(row * dv4), dv4);
                let recompute = l != NEG_INF
                    && amplify * delta_error_bound(o.add(row * dv4), g.add(row * dv4), dv4) > p.exact_delta_above as f64;
                if recompute {
                    d = exact_delta(p, b, h, i, scratch);
                }
                *delta.add(row) = d;
                *exact.add(row) = recompute as u8;
                if p.grad_sinks != 0 && l != NEG_INF {
                    sink_sum += exp1(sink - l) as f64 * d;
                }
            }
        }
        if p.grad_sinks != 0 {
            *(p.grad_sinks as usize as *mut f32).add(h) = (-sink_sum) as f32;
        }
    }
}

/// After the key-tile pass, on one thread: dQ = the chunks' partials (and their compensations)
/// summed in float64 in chunk order and rounded once, into the first partial.
#[no_mangle]
pub unsafe extern "C" fn bwd_finish(params: *const Params) {
    let p = &*params;
    let chunks = p.n_chunks as usize;
    if chunks <= 1 && p.gq_comp == 0 {
        return;
    }
    let n = (p.batch * p.hq * p.lq * p.d4) as usize;
    let stride = p.gq_stride as usize / 4;
    let part = p.grad_q as usize as *mut f32;
    let comp = p.gq_comp as usize as *const f32;
    let finite = f32x4_splat(f32::INFINITY);
    let add = |acc: (v128, v128), x: v128| {
        let hi = i32x4_shuffle::<2, 3, 0, 1>(x, x);
        (
            f64x2_add(acc.0, f64x2_promote_low_f32x4(x)),
            f64x2_add(acc.1, f64x2_promote_low_f32x4(hi)),
        )
    };
    let mut e = 0;
    while e < n {
        let mut acc = (f64x2_splat(0.0), f64x2_splat(0.0));
        for c in 0..chunks {
            acc = add(acc, ld(part.add(c * stride + e)));
            if !comp.is_null() {
                // a non-finite partial has a NaN two-sum error: keep the partial alone there
                let err = ld(comp.add(c * stride + e));
                acc = add(acc, v128_and(err, f32x4_lt(f32x4_abs(err), finite)));
            }
        }
        let lo32 = f32x4_demote_f64x2_zero(acc.0);
        let hi32 = f32x4_demote_f64x2_zero(acc.1);
        st(part.add(e), i32x4_shuffle::<0, 1, 4, 5>(lo32, hi32));
        e += 4;
    }
}

/// `o[a] (+)= sum_s w[a * w_out + s * w_sum] * x[s]` for `n_out` rows `a` of `dd` floats (rows of
/// `x` are `dd` too); `fresh` starts from zero instead of `o`. Two rows by 16 columns per step (eight
/// accumulators), like `pv_tile`; the strides let one kernel read a tile as stored (dQ = dS K) or
/// transposed (dV = P^T dO, dK = dS^T Q) without copying it.
unsafe fn wsum_tile(
    w: *const f32,
    w_out: usize,
    w_sum: usize,
    x: *const f32,
    dd: usize,
    n_out: usize,
    n_sum: usize,
    o: *mut f32,
    fresh: bool,
) {
    let z = f32x4_splat(0.0);
    let mut a = 0;
    while a + 2 <= n_out {
        let w0 = w.add(a * w_out);
        let w1 = w0.add(w_out);
        let o0 = o.add(a * dd);
        let o1 = o0.add(dd);
        let mut cb = 0;
        while cb + 16 <= dd {
            let (mut a0, mut a1, mut a2, mut a3, mut b0, mut b1, mut b2, mut b3) = if fresh {
                (z, z, z, z, z, z, z, z)
            } else {
                (
                    ld(o0.add(cb)),
                    ld(o0.add(cb + 4)),
                    ld(o0.add(cb + 8)),
                    ld(o0.add(cb + 12)),
                    ld(o1.add(cb)),
                    ld(o1.add(cb + 4)),
                    ld(o1.add(cb + 8)),
                    ld(o1.add(cb + 12)),
                )
            };
            let mut xr = x.add(cb);
            let mut ws = 0;
            for _ in 0..n_sum {
                let u0 = v128_load32_splat(w0.add(ws) as *const u32);
                let u1 = v128_load32_splat(w1.add(ws) as *const u32);
                let y = ld(xr);
                a0 = f32x4_add(a0, f32x4_mul(u0, y));
                b0 = f32x4_add(b0, f32x4_mul(u1, y));
                let y = ld(xr.add(4));
                a1 = f32x4_add(a1, f32x4_mul(u0, y));
                b1 = f32x4_add(b1, f32x4_mul(u1, y));
                let y = ld(xr.add(8));
                a2 = f32x4_add(a2, f32x4_mul(u0, y));
                b2 = f32x4_add(b2, f32x4_mul(u1, y));
                let y = ld(xr.add(12));
                a3 = f32x4_add(a3, f32x4_mul(u0, y));
                b3 = f32x4_add(b3, f32x4_mul(u1, y));
                xr = xr.add(dd);
                ws += w_sum;
            }
            st(o0.add(cb), a0);
            st(o0.add(cb + 4), a1);
            st(o0.add(cb + 8), a2);
            st(o0.add(cb + 12), a3);
            st(o1.add(cb), b0);
            st(o1.add(cb + 4), b1);
            st(o1.add(cb + 8), b2);
            st(o1.add(cb + 12), b3);
            cb += 16;
        }
        while cb < dd {
            let (mut a0, mut b0) = if fresh { (z, z) } else { (ld(o0.add(cb)), ld(o1.add(cb))) };
            let mut xr = x.add(cb);
            let mut ws = 0;
            for _ in 0..n_sum {
                let y = ld(xr);
                a0 = f32x4_add(a0, f32x4_mul(v128_load32_splat(w0.add(ws) as *const u32), y));
                b0 = f32x4_add(b0, f32x4_mul(v128_load32_splat(w1.add(ws) as *const u32), y));
                xr = xr.add(dd);
                ws += w_sum;
            }
            st(o0.add(cb), a0);
            st(o1.add(cb), b0);
            cb += 4;
        }
        a += 2;
    }
    if a < n_out {
        let w0 = w.add(a * w_out);
        let o0 = o.add(a * dd);
        let mut cb = 0;
        while cb < dd {
            let mut a0 = if fresh { z } else { ld(o0.add(cb)) };
            let mut xr = x.add(cb);
            let mut ws = 0;
            for _ in 0..n_sum {
                a0 = f32x4_add(a0, f32x4_mul(v128_load32_splat(w0.add(ws) as *const u32), ld(xr)));
                xr = xr.add(dd);
                ws += w_sum;
            }
            st(o0.add(cb), a0);
            cb += 4;
        }
    }
}

/// `wsum_tile` where a weight of exactly 0 contributes nothing even against a NaN/inf row of `x`,
/// as in the reference, which skips masked keys. Used only when q, k or dO holds a non-finite value.
unsafe fn wsum_guarded(
    w: *const f32,
    w_out: usize,
    w_sum: usize,
    x: *const f32,
    dd: usize,
    n_out: usize,
    n_sum: usize,
    o: *mut f32,
    fresh: bool,
) {
    for a in 0..n_out {
        let oa = o.add(a * dd);
        if fresh {
            zero(oa, dd);
        }
        for s in 0..n_sum {
            let wv = *w.add(a * w_out + s * w_sum);
            if wv == 0.0 {
                continue;
            }
            let ws = f32x4_splat(wv);
            let xr = x.add(s * dd);
            let mut cb = 0;
            while cb < dd {
                st(oa.add(cb), f32x4_add(ld(oa.add(cb)), f32x4_mul(ws, ld(xr.add(cb)))));
                cb += 4;
            }
        }
    }
}

/// `P = exp((s - m) + lo)` over a row of logits in place, `m` the row's lse. A masked key (`-inf`)
/// gets exactly 0 even where `m` is NaN (the reference never visits it).
#[inline(always)]
unsafe fn probabilities(split: bool, nk: usize, m: f32, srow: *mut f32, lorow: *const f32) {
    let nk4 = (nk + 3) & !3;
    let mv = f32x4_splat(m);
    let neg_inf4 = f32x4_splat(NEG_INF);
    let mut c = 0;
    while c < nk4 {
        let s = ld(srow.add(c));
        let mut t = f32x4_sub(s, mv);
        if split {
            t = f32x4_add(t, ld(lorow.add(c)));
        }
        st(srow.add(c), v128_andnot(exp4(t), f32x4_eq(s, neg_inf4)));
        c += 4;
    }
}

/// `(sum, err) += t` by an exact two-sum.
///
/// dK and dV are sums over every query row of a group, with signs that cancel: added row by row,
/// each rounding is at the size of the running sum, which wanders ~sqrt(rows) times further than
/// the terms. Each query tile's share is summed from zero instead (its roundings at the size of 64
/// terms), then added here exactly: ~6 flops per accumulator per tile, against 2 * 64 for the
/// products. Measured worst dV error in atol/rtol units, 3 heads on 9 keys: 1500 rows 1.01 -> 0.26,
/// 6000 rows 2.67 -> 0.35 (summing plainly over 1024-row windows before).
#[inline(always)]
unsafe fn absorb(t: *const f32, sum: *mut f32, err: *mut f32, n4: usize) {
    let mut c = 0;
    while c < n4 {
        let (hi, lo) = two_sum(ld(sum.add(c)), ld(t.add(c)));
        st(sum.add(c), hi);
        st(err.add(c), f32x4_add(ld(err.add(c)), lo));
        c += 4;
    }
}

/// `dst = sum + err`, the error dropped where it is not finite (a non-finite sum's two-sum error
/// is NaN).
#[inline(always)]
unsafe fn settle(dst: *mut f32, sum: *const f32, err: *const f32, n4: usize) {
    let finite = f32x4_splat(f32::INFINITY);
    let mut c = 0;
    while c < n4 {
        let s = ld(sum.add(c));
        let e = ld(err.add(c));
        let ok = f32x4_lt(f32x4_abs(e), finite);
        st(dst.add(c), v128_bitselect(f32x4_add(s, e), s, ok));
        c += 4;
    }
}

/// One backward work item: chunk `item % n_chunks` of the key tiles, for one (batch, kv head), or
/// for all of them when a broadcast bias merges them (its gradient cells would collide otherwise).
unsafe fn bwd_item(p: &Params, item: u32, scratch: *mut f32) {
    let chunks = p.n_chunks as usize;
    let (batch, hq, hkv, lq, lk) = (p.batch as usize, p.hq as usize, p.hkv as usize, p.lq as usize, p.lk as usize);
    let d4 = p.d4 as usize;
    let bk = p.block_k as usize;
    let group = hq / hkv;
    let nb = if p.merge_b != 0 { 1 } else { batch };
    let chunk = item as usize % chunks;
    let rest = item as usize / chunks;
    let (b_lo, b_hi) = if p.merge_b != 0 { (0, batch) } else { (rest % nb, rest % nb + 1) };
    let (g_lo, g_hi) = if p.merge_g != 0 { (0, hkv) } else { (rest / nb, rest / nb + 1) };
    let n_kt = (lk + bk - 1) / bk;
    let stride = p.gq_stride as usize / 4;
    let part = (p.grad_q as usize as *mut f32).add(chunk * stride);
    let comp = if p.gq_comp != 0 { (p.gq_comp as usize as *mut f32).add(chunk * stride) } else { core::ptr::null_mut() };
    for b in b_lo..b_hi {
        for g in g_lo..g_hi {
            // this item alone writes its chunk's dQ partial for the group's query rows
            let at = (b * hq + g * group) * lq * d4;
            zero(part.add(at), group * lq * d4);
            if !comp.is_null() {
                zero(comp.add(at), group * lq * d4);
            }
            let mut kt = chunk;
            while kt < n_kt {
                bwd_key_tile(p, b, g, kt, part, comp, scratch);
                kt += chunks;
            }
        }
    }
}

/// dK and dV of key tile `kt` of (batch `b`, kv head `g`), and its share of dQ into `part`.
unsafe fn bwd_key_tile(p: &Params, b: usize, g: usize, kt: usize, part: *mut f32, comp: *mut f32, scratch: *mut f32) {
    let (hq, hkv, lq, lk) = (p.hq as usize, p.hkv as usize, p.lq as usize, p.lk as usize);
    let (d4, dv4) = (p.d4 as usize, p.dv4 as usize);
    let (bq, bk) = (p.block_q as usize, p.block_k as usize);
    let bk4 = (bk + 3) & !3;
    let group = hq / hkv;
    let j0 = kt * bk;
    let nk = bk.min(lk - j0);
    let causal = p.causal != 0;
    let window = p.window as i64;
    let shift = lk as i64 - lq as i64;

    let p_buf = scratch;
    let lo_buf = p_buf.add(bq * bk4);
    let th_buf = lo_buf.add(bq * bk4);
    let ds_buf = th_buf.add(bq * bk4);
    let m_tile = ds_buf.add(bq * bk4);
    let d_tile = m_tile.add(bq);
    let tk = d_tile.add(bq);
    let sk = tk.add(bk4 * d4);
    let ek = sk.add(bk4 * d4);
    let tv = ek.add(bk4 * d4);
    let sv = tv.add(bk4 * dv4);
    let ev = sv.add(bk4 * dv4);
    let tq = ev.add(bk4 * dv4);
    let lanes = tq.add(bq * d4) as *mut u32;

    let kv_row = (b * hkv + g) * lk + j0;
    let k_t = (p.k as usize as *const f32).add(kv_row * d4);
    let v_t = (p.v as usize as *const f32).add(kv_row * dv4);
    let gk = (p.grad_k as usize as *mut f32).add(kv_row * d4);
    let gv = (p.grad_v as usize as *mut f32).add(kv_row * dv4);
    let mask = if p.key_mask != 0 { (p.key_mask as usize as *const u8).add(b * lk) } else { core::ptr::null() };
    if !key_lanes(mask, j0, nk, lanes) {
        // no key of the tile is visible to anyone: no gradient, no dQ share
        zero(gk, nk * d4);
        zero(gv, nk * dv4);
        return;
    }
    for buf in [sk, ek] {
        zero(buf, nk * d4);
    }
    for buf in [sv, ev] {
        zero(buf, nk * dv4);
    }
    let lse = p.lse as usize as *const f32;
    let delta = p.delta as usize as *const f64;
    let exact = p.exact_rows as usize as *const u8;
    let n_qt = (lq + bq - 1) / bq;
    for h in g * group..(g + 1) * group {
        let bh = b * hq + h;
        for qt in 0..n_qt {
            let i0 = qt * bq;
            let nq = bq.min(lq - i0);
            // causal/window intervals move right with the row: the tile's rows see [first start, last end)
            let (first_start, _) = key_range(shift + i0 as i64, lk as i64, causal, window);
            let (_, last_end) = key_range(shift + (i0 + nq - 1) as i64, lk as i64, causal, window);
            if last_end <= j0 as i64 || first_start >= (j0 + nk) as i64 {
                continue;
            }
            let row0 = bh * lq + i0;
            // a row that sees no key and has no sink (lse = -inf) weighs nothing: m = +inf makes its P 0
            let mut live = false;
            let mut any_exact = false;
            for r in 0..nq {
                let l = *lse.add(row0 + r);
                live |= l != NEG_INF;
                any_exact |= *exact.add(row0 + r) != 0;
                *m_tile.add(r) = if l == NEG_INF { f32::INFINITY } else { l };
                *d_tile.add(r) = *delta.add(row0 + r) as f32;
            }
            if !live {
                continue;
            }
            let it = Item::new(p, b, h, i0, nq);
            let q_t = (p.q as usize as *const f32).add(row0 * d4);
            let do_t = (p.grad_out as usize as *const f32).add(row0 * dv4);

            // P, recomputed from the forward's logits and lse
            score_tile(q_t, k_t, d4, nq, nk, p_buf, bk4);
            let split = !it.bias.is_null() || it.has_alibi;
            let softcap = p.softcap > 0.0;
            for r in 0..nq {
                let srow = p_buf.add(r * bk4);
                let lorow = lo_buf.add(r * bk4);
                let throw = if softcap { th_buf.add(r * bk4) } else { core::ptr::null_mut() };
                it.logits(r, j0, nk, lanes, srow, lorow, throw);
                probabilities(split, nk, *m_tile.add(r), srow, lorow);
            }
            // dP = dO V^T, then dS = P (dP - D) in place (scaled, through the softcap)
            score_tile(do_t, v_t, dv4, nq, nk, ds_buf, bk4);
            if any_exact {
                // rows whose D was recomputed: dP - D in float64, left in place of dP (D then 0)
                for r in 0..nq {
                    if *exact.add(row0 + r) == 0 {
                        continue;
                    }
                    let d = *delta.add(row0 + r);
                    let g_row = do_t.add(r * dv4);
                    for c in 0..nk {
                        let diff = if *p_buf.add(r * bk4 + c) == 0.0 { 0.0 } else { dot64(g_row, v_t.add(c * dv4), dv4) - d };
                        *ds_buf.add(r * bk4 + c) = diff as f32;
                    }
                    *d_tile.add(r) = 0.0;
                }
            }
            let gbias = p.grad_bias as usize as *mut f64;
            let scale = f32x4_splat(p.scale);
            let one = f32x4_splat(1.0);
            let zero4 = f32x4_splat(0.0);
            for r in 0..nq {
                let prow = p_buf.add(r * bk4);
                let dsrow = ds_buf.add(r * bk4);
                let brow = lo_buf.add(r * bk4);
                let throw = th_buf.add(r * bk4);
                let dr = f32x4_splat(*d_tile.add(r));
                let mut c = 0;
                while c < ((nk + 3) & !3) {
                    let pv = ld(prow.add(c));
                    // P = 0 (masked, or a dead row): dS is 0 even against an infinite dP
                    let live = f32x4_ne(pv, zero4);
                    let ds = v128_and(f32x4_mul(pv, f32x4_sub(ld(dsrow.add(c)), dr)), live);
                    if !gbias.is_null() {
                        st(brow.add(c), ds);
                    }
                    let mut x = ds;
                    if softcap {
                        let t = ld(throw.add(c));
                        x = f32x4_mul(x, f32x4_sub(one, f32x4_mul(t, t)));
                    }
                    st(dsrow.add(c), v128_and(f32x4_mul(x, scale), live));
                    c += 4;
                }
                if !gbias.is_null() {
                    // the bias cell of (b, h, i, j): strides are 0 along its broadcast dimensions
                    let sj = p.bias_sj as usize;
                    let cell = gbias.add(
                        b * p.bias_sb as usize + h * p.bias_sh as usize + (i0 + r) * p.bias_si as usize + j0 * sj,
                    );
                    for c in 0..nk {
                        *cell.add(c * sj) += *brow.add(c) as f64;
                    }
                }
            }
            // dV += P^T dO, dK += (scale dR)^T Q, and this tile's dQ = (scale dR) K
            let sum = if p.guard != 0 { wsum_guarded } else { wsum_tile };
            sum(p_buf, 1, bk4, do_t, dv4, nk, nq, tv, true);
            sum(ds_buf, 1, bk4, q_t, d4, nk, nq, tk, true);
            absorb(tv, sv, ev, nk * dv4);
            absorb(tk, sk, ek, nk * d4);
            sum(ds_buf, bk4, 1, k_t, d4, nq, nk, tq, true);
            // into the chunk's partial: one rounding per key tile (two-sum when chunks are long)
            let dst = part.add(row0 * d4);
            if comp.is_null() {
                let mut c = 0;
                while c < nq * d4 {
                    st(dst.add(c), f32x4_add(ld(dst.add(c)), ld(tq.add(c))));
                    c += 4;
                }
            } else {
                let err = comp.add(row0 * d4);
                let mut c = 0;
                while c < nq * d4 {
                    let (hi, lo) = two_sum(ld(dst.add(c)), ld(tq.add(c)));
                    st(dst.add(c), hi);
                    st(err.add(c), f32x4_add(ld(err.add(c)), lo));
                    c += 4;
                }
            }
        }
    }
    settle(gk, sk, ek, nk * d4);
    settle(gv, sv, ev, nk * dv4);
}

// ---------------------------------------------------------------------------------------------
// KV cache decode: split-K ("flash-decoding") over fixed pages.
//
// q arrives grouped, `[B, hkv, Lq, G, d4]`, so that one query tile's rows (its positions times the
// G query heads that read kv head g) are contiguous: every K/V tile loaded serves all G heads. Each
// work item is one chunk of `chunk_keys` keys of one (row, kv head, query tile) and leaves a partial
// (unnormalised output, max, sum); `cache_merge` combines the chunks in chunk order, in float64, so
// the bits depend on the lengths and the shape only, never on the thread count or the schedule.
// ---------------------------------------------------------------------------------------------

/// Floats of one cache work item's partial for `rows` rows.
#[inline(always)]
fn cache_part_floats(rows: usize, dv4: usize) -> usize {
    rows * (dv4 + 2)
}

/// The per-row logit state of row `i` (a query position) of kv-cache row `len` tokens long.
#[inline(always)]
unsafe fn cache_row(p: &Params, len: usize, i: usize, h: usize) -> Item {
    let lq = p.lq as usize;
    let shift = len as i64 - lq as i64;
    let causal = p.causal != 0;
    let window = p.window as i64;
    let (rs, re) = key_range(shift + i as i64, len as i64, causal, window);
    Item {
        i0: i,
        lk: len,
        shift,
        causal,
        window,
        scale: p.scale,
        softcap: p.softcap,
        bias: core::ptr::null(),
        bias_si: 0,
        bias_sj: 0,
        has_alibi: p.alibi != 0,
        slope: if p.alibi != 0 { *(p.alibi as usize as *const f32).add(h) } else { 0.0 },
        key_mask: core::ptr::null(),
        first_end: re,
        last_start: rs,
    }
}

unsafe fn cache_item(p: &Params, item: u32, scratch: *mut f32) {
    let hq = p.hq as usize;
    let hkv = p.hkv as usize;
    let group = hq / hkv;
    let lq = p.lq as usize;
    let d4 = p.d4 as usize;
    let dv4 = p.dv4 as usize;
    let bk = p.block_k as usize;
    let bk4 = (bk + 3) & !3;
    let pt = p.page_tokens as usize;
    let tp = p.tile_positions as usize;
    let n_qt = (lq + tp - 1) / tp;
    let chunks = p.n_chunks as usize;
    let chunk = item as usize % chunks;
    let rest = item as usize / chunks;
    let qt = rest % n_qt;
    let bg = rest / n_qt;
    let b = bg / hkv;
    let g = bg % hkv;
    let len = *(p.lengths as usize as *const u32).add(b) as usize;
    let i0 = qt * tp;
    let npos = tp.min(lq - i0);
    let rows = npos * group;
    let causal = p.causal != 0;
    let window = p.window as i64;
    let shift = len as i64 - lq as i64;

    let s_buf = scratch;
    let lo_buf = s_buf.add(rows * bk4);
    let o_buf = lo_buf.add(rows * bk4);
    let m_buf = o_buf.add(rows * dv4);
    let l_buf = m_buf.add(rows);
    // compensated running sums past 4096 keys, as attn_item (a long chunk would drift otherwise)
    let lc_buf = l_buf.add(rows);
    let t_buf = lc_buf.add(rows);
    let oc_buf = t_buf.add(rows * dv4);

    // the items of one (b, g, query tile) are consecutive: item - chunk is the tile's first
    let tile_item = item as usize - chunk;
    let q = (p.q as usize as *const f32).add(((bg * lq) + i0) * group * d4);

    let (k_begin, k_end) = tile_key_range(shift, i0, npos, len, causal, window);
    let ck = p.chunk_keys as usize;
    let lo = k_begin.max(chunk * ck);
    let hi = k_end.min((chunk + 1) * ck);

    for r in 0..rows {
        *m_buf.add(r) = NEG_INF;
        *l_buf.add(r) = 0.0;
        *lc_buf.add(r) = 0.0;
        zero(o_buf.add(r * dv4), dv4);
        zero(oc_buf.add(r * dv4), dv4);
    }

    let compensate = hi > lo && hi - lo > 4096;
    let mut j0 = lo;
    while j0 < hi {
        let page = j0 / pt;
        let off = j0 - page * pt;
        // a tile never crosses a page: the next page is elsewhere in memory
        let nk = bk.min(hi - j0).min(pt - off);
        let page_at = p.pages as usize + (page * p.streams as usize + bg) * p.page_bytes as usize;
        let kp = (page_at as *const f32).add(off * d4);
        let vp = ((page_at + p.page_v as usize) as *const f32).add(off * dv4);
        let flags = ((page_at + p.page_flags as usize) as *const u8).add(off);
        score_tile(q, kp, d4, rows, nk, s_buf, bk4);
        for r in 0..rows {
            let it = cache_row(p, len, i0 + r / group, g * group + r % group);
            let srow = s_buf.add(r * bk4);
            let lorow = lo_buf.add(r * bk4);
            let rmax = it.logits(0, j0, nk, core::ptr::null(), srow, lorow, core::ptr::null_mut());
            let (o, oc) = (o_buf.add(r * dv4), oc_buf.add(r * dv4));
            fold_row(&it, nk, bk4, dv4, rmax, srow, lorow, m_buf.add(r), l_buf.add(r), lc_buf.add(r), o, oc);
        }
        let mut guarded = false;
        for c in 0..nk {
            if *flags.add(c) != 0 {
                guarded = true;
            }
        }
        add_tile_values(s_buf, bk4, vp, dv4, rows, nk, guarded, compensate, o_buf, oc_buf, t_buf);
        j0 += nk;
    }

    // the partial: this item alone writes it
    let stride = cache_part_floats(tp * group, dv4);
    let part = (p.part as usize as *mut f32).add((tile_item + chunk) * stride);
    for r in 0..rows {
        let o = o_buf.add(r * dv4);
        let oc = oc_buf.add(r * dv4);
        let dst = part.add(r * dv4);
        for c in (0..dv4).step_by(4) {
            // a non-finite sum has a NaN two-sum error: keep the sum alone there
            let sum = ld(o.add(c));
            let err = ld(oc.add(c));
            let ok = f32x4_lt(f32x4_abs(err), f32x4_splat(f32::INFINITY));
            st(dst.add(c), v128_bitselect(f32x4_add(sum, err), sum, ok));
        }
        *part.add(rows * dv4 + r) = *m_buf.add(r);
        *part.add(rows * dv4 + rows + r) = *l_buf.add(r) + *lc_buf.add(r);
    }
}

/// Merges the chunks' partials of every (row, kv head, query tile) in chunk order (float64 sums,
/// one rounding), adds the sink, and writes `out` as `[B, Hq, Lq, dv4]` and `lse` as `[B, Hq, Lq]`.
/// One thread: it reads `rows * dv4` floats per chunk, a sliver of the items' work.
#[no_mangle]
pub unsafe extern "C" fn cache_merge(params: *const Params) {
    let p = &*params;
    let hq = p.hq as usize;
    let hkv = p.hkv as usize;
    let group = hq / hkv;
    let lq = p.lq as usize;
    let dv4 = p.dv4 as usize;
    let tp = p.tile_positions as usize;
    let n_qt = (lq + tp - 1) / tp;
    let chunks = p.n_chunks as usize;
    let stride = cache_part_floats(tp * group, dv4);
    let acc = p.scratch as usize as *mut f64;
    for bg in 0..p.streams as usize {
        let b = bg / hkv;
        let g = bg % hkv;
        for qt in 0..n_qt {
            let i0 = qt * tp;
            let npos = tp.min(lq - i0);
            let rows = npos * group;
            let first = (p.part as usize as *const f32).add((bg * n_qt + qt) * chunks * stride);
            for r in 0..rows {
                let i = i0 + r / group;
                let h = g * group + r % group;
                let sink = if p.sinks != 0 { *(p.sinks as usize as *const f32).add(h) } else { NEG_INF };
                let mut m = sink;
                for c in 0..chunks {
                    let mc = *first.add(c * stride + rows * dv4 + r);
                    if mc != NEG_INF {
                        m = nan_max(m, mc);
                    }
                }
                let row = (b * hq + h) * lq + i;
                let dst = (p.out as usize as *mut f32).add(row * dv4);
                if m == NEG_INF {
                    // no visible key and no sink: the row is zero, its lse -inf
                    for d in 0..dv4 {
                        *dst.add(d) = 0.0;
                    }
                    if p.lse != 0 {
                        *(p.lse as usize as *mut f32).add(row) = NEG_INF;
                    }
                    continue;
                }
                for d in 0..dv4 {
                    *acc.add(d) = 0.0;
                }
                let mut l = if sink == NEG_INF { 0.0f64 } else { exp1(sink - m) as f64 };
                for c in 0..chunks {
                    let at = first.add(c * stride);
                    let mc = *at.add(rows * dv4 + r);
                    if mc == NEG_INF {
                        continue;
                    }
                    let e = exp1(mc - m);
                    if e == 0.0 {
                        continue; // underflowed: adds nothing, and must not turn an infinite value into NaN
                    }
                    let e = e as f64;
                    l += *at.add(rows * dv4 + rows + r) as f64 * e;
                    let o = at.add(r * dv4);
                    for d in 0..dv4 {
                        *acc.add(d) += *o.add(d) as f64 * e;
                    }
                }
                for d in 0..dv4 {
                    *dst.add(d) = (*acc.add(d) / l) as f32;
                }
                if p.lse != 0 {
                    *(p.lse as usize as *mut f32).add(row) = (m as f64 + ln64(l)) as f32;
                }
            }
        }
    }
}
