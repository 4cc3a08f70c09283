//! Dense layers for inference with their weights packed once: `relu?(x · weight + bias)` on
//! flex, bit for bit the values of [`crate::kernels::dense`], at a fraction of its time on
//! CPUs with AVX-512.
//!
//! `kernels::dense` hands each thread a share of the rows and one single-threaded `gemm`
//! call, which copies (packs) the weights into its own layout on every call: for report
//! 002's MLP (784 x 768 weights, 128 rows) a sixth of inference. Here the weights are
//! packed once ([`PackedDense::new`], when a model is made ready for inference) into
//! 64-byte-aligned panels of 48 columns, `[panel][input][48]`, and each thread takes half
//! the panels for all rows, so that its half of the weights stays in its core's cache
//! from one batch to the next.
//!
//! The sums are gemm's: gemm adds the products of each output in blocks of `kc` inputs
//! (its `kernel_params`, from the CPU's cache sizes, for the shape of each thread's share
//! of rows), each block's products accumulated in order with fused multiply-adds from
//! zero and then added to the output, which starts at the bias. The kernel does the same,
//! with the same `kc` for each row, so that a table's test pass gives the same figures
//! either way; shapes where gemm takes another route (a share of one row, one unit, at
//! most two inputs) are left to `kernels::dense` ([`PackedDense::handles`]).

use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::tensor::Tensor;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kernels::{assume_init, dense_rows_per_thread, flex_tensor, runs_on_flex, uninit};

/// Columns per panel: three AVX-512 vectors.
const PANEL: usize = 48;
/// Rows per tile: 8 rows x 3 vectors = 24 accumulators of the 32 registers.
const ROWS: usize = 8;
/// Floats per 64-byte line.
const LINE: usize = 16;
/// gemm's AVX-512 f32 microkernel: 4 vectors of 16 rows by 6 columns (`gemm-f32`'s
/// `avx512f` `x4x6`), the sizes its `kernel_params` is called with.
const GEMM_MR: usize = 64;
const GEMM_NR: usize = 6;

/// Products run on packed weights since the program started ([`packed_products`]).
static PRODUCTS: AtomicUsize = AtomicUsize::new(0);

/// How many dense layers' products have run on packed weights in this process: for tests
/// that check which path a prediction took.
pub fn packed_products() -> usize {
    PRODUCTS.load(Ordering::Relaxed)
}

/// One 64-byte line of floats, so that a `Vec` of them is aligned for whole-line loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// A dense layer's weights and bias packed for inference ([`crate::packed_dense`]).
#[derive(Clone)]
pub struct PackedDense {
    /// `[panel][input][PANEL]`, the last panel padded with zeros.
    panels: Vec<Line>,
    bias: Vec<f32>,
    inputs: usize,
    units: usize,
}

impl std::fmt::Debug for PackedDense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedDense")
            .field("inputs", &self.inputs)
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl PackedDense {
    /// Packs `weight` (`[inputs, units]`) and `bias` (`[units]`) of a layer on flex for
    /// inference; `None` where the packed kernel would not run: tensors on another backend
    /// or tracked by autodiff, or a CPU without AVX-512.
    pub fn new(weight: &Tensor<2>, bias: &Tensor<1>) -> Option<Self> {
        if !crate::avx512() || !runs_on_flex(weight) || weight.device().is_autodiff() {
            return None;
        }
        let [inputs, units] = weight.dims();
        // Read in place (no copy of the weights besides the packed one).
        let weight = flex_float(weight.clone())?;
        let bias = flex_float(bias.clone())?;
        let bias = crate::kernels::f32_values(&bias).into_owned();
        if bias.len() != units {
            return None;
        }
        Some(Self {
            panels: pack(&crate::kernels::f32_values(&weight), inputs, units),
            bias,
            inputs,
            units,
        })
    }

    /// Whether [`PackedDense::apply`] takes an input of `rows` rows: where gemm, in
    /// `kernels::dense`, would sum by another route (a thread's share of one row, one
    /// unit, at most two inputs), its values could differ in the last bit, and the caller
    /// uses `kernels::dense` instead.
    pub fn handles(&self, rows: usize) -> bool {
        self.inputs > 2 && self.units > 1 && shares(rows, self).iter().all(|s| s.rows > 1)
    }

    /// `relu?(x · weight + bias)` for `x` `[rows, inputs]` on flex: the values of
    /// `kernels::dense` with the same weights, bit for bit. Call only where
    /// [`PackedDense::handles`] the rows.
    pub fn apply(&self, x: Tensor<2>, relu: bool) -> Tensor<2> {
        let [rows, inputs] = x.dims();
        assert_eq!(inputs, self.inputs, "the layer's inputs");
        let DispatchTensor { kind, autodiff } = x.into_dispatch();
        let DispatchTensorKind::Flex(BackendTensor::Float(x)) = kind else {
            panic!("PackedDense::apply takes a tensor on flex without autodiff (PackedDense::new)");
        };
        let out = self.forward(&x, rows, relu);
        PRODUCTS.fetch_add(1, Ordering::Relaxed);
        Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(out)),
            autodiff,
        })
    }

    fn forward(&self, x: &FlexTensor, rows: usize, relu: bool) -> FlexTensor {
        let x = crate::kernels::f32_values(x);
        let n = self.units;
        let mut out = uninit::<f32>(rows * n);
        let shares = shares(rows, self);
        let panels = n.div_ceil(PANEL);
        let target = Target(out.as_mut_ptr().cast::<f32>());
        let target = &target;
        if shares.len() <= panels {
            // As many threads as `kernels::dense` would use, each with its own panels (its
            // part of the weights stays in its core's cache).
            let threads = shares.len();
            (0..threads).into_par_iter().for_each(|t| {
                let mine = (t * panels / threads)..((t + 1) * panels / threads);
                for share in &shares {
                    // SAFETY: `x` holds `rows * inputs` values, the output `rows * n`; this
                    // task alone writes its panels' columns.
                    unsafe { self.share_rows(&x, mine.clone(), share, relu, target.0) };
                }
            });
        } else {
            // Fewer panels than threads (a narrow layer, as an MLP's output layer): each
            // thread its share of the rows, so that no thread waits idle for another.
            shares.par_iter().for_each(|share| {
                // SAFETY: `x` holds `rows * inputs` values, the output `rows * n`; this task
                // alone writes its share's rows.
                unsafe { self.share_rows(&x, 0..panels, share, relu, target.0) };
            });
        }
        // SAFETY: the panels cover every column and the shares every row.
        let out = unsafe { assume_init(out) };
        flex_tensor(out, [rows, n])
    }

    /// The share's rows by the columns of `panels`, a panel at a time, 8 rows at a time
    /// down it: the panel's weights are read from the core's second-level cache once per 8
    /// rows. (Rows outside, with each 8 rows' inputs kept in the first-level cache across
    /// the panels, ran report 002's MLP a fifth slower.)
    ///
    /// # Safety
    /// `x` holds the layer's input rows; `out` addresses `rows x units` values, and no other
    /// thread writes these rows of these panels' columns.
    unsafe fn share_rows(
        &self,
        x: &[f32],
        panels: Range<usize>,
        share: &Share,
        relu: bool,
        out: *mut f32,
    ) {
        let end = share.first + share.rows;
        for panel in panels {
            let mut row = share.first;
            while row < end {
                let tile_rows = row..(row + ROWS).min(end);
                // SAFETY: as the function's contract.
                unsafe { self.tile(x, panel, tile_rows.clone(), share.kc, relu, out) };
                row = tile_rows.end;
            }
        }
    }

    /// Up to 8 `rows` by panel `panel`'s columns, over the inputs in blocks of `kc` (gemm's
    /// order: each block summed from zero, then added to the bias or the output so far).
    ///
    /// # Safety
    /// As [`PackedDense::share_rows`].
    unsafe fn tile(
        &self,
        x: &[f32],
        panel: usize,
        rows: Range<usize>,
        kc: usize,
        relu: bool,
        out: *mut f32,
    ) {
        let (k, n) = (self.inputs, self.units);
        let first_column = panel * PANEL;
        let width = (n - first_column).min(PANEL);
        let weights = self
            .panels
            .as_ptr()
            .cast::<f32>()
            .wrapping_add(panel * k * PANEL);
        let mut start = 0;
        while start < k {
            let depth = kc.min(k - start);
            let tile = Tile {
                x: x.as_ptr().wrapping_add(rows.start * k + start),
                x_stride: k,
                weights: weights.wrapping_add(start * PANEL),
                depth,
                out: out.wrapping_add(rows.start * n + first_column),
                out_stride: n,
                bias: (start == 0).then(|| self.bias.as_ptr().wrapping_add(first_column)),
                relu: relu && start + depth == k,
                width,
            };
            // SAFETY: the tile's rows, inputs and columns lie within `x`, the panel and
            // `out` (above), and `avx512()` held when the weights were packed.
            unsafe { tile.run(rows.len()) };
            start += depth;
        }
    }
}

/// `t`'s flex tensor, where it is one on flex without autodiff.
fn flex_float<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    match t.into_dispatch().kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) => Some(t),
        _ => None,
    }
}

/// The output, shared by the tasks that write its column panels.
struct Target(*mut f32);
// SAFETY: each task writes a disjoint set of columns (`PackedDense::forward`).
unsafe impl Sync for Target {}

/// One thread's rows in `kernels::dense` and the `kc` gemm sums them with.
struct Share {
    first: usize,
    rows: usize,
    kc: usize,
}

/// The rows `kernels::dense` gives each thread for `rows` rows, with gemm's `kc` for each
/// (gemm transposes a row-major product: its `m` is the units, its `n` the rows).
fn shares(rows: usize, layer: &PackedDense) -> Vec<Share> {
    let (k, n) = (layer.inputs, layer.units);
    let per = dense_rows_per_thread([rows, n, k]);
    (0..rows)
        .step_by(per)
        .map(|first| {
            let share = per.min(rows - first);
            let kc = if n <= 64 && share <= 64 {
                k.min(512)
            } else {
                gemm_common::cache::kernel_params(n, share, k, GEMM_MR, GEMM_NR, 4).kc
            };
            Share {
                first,
                rows: share,
                kc: kc.max(1),
            }
        })
        .collect()
}

/// `weight` `[inputs, units]` as panels of 48 columns, `[panel][input][48]`.
fn pack(weight: &[f32], inputs: usize, units: usize) -> Vec<Line> {
    let panels = units.div_ceil(PANEL);
    let mut lines = vec![Line([0.0; LINE]); panels * inputs * PANEL / LINE];
    // SAFETY: `Line` is 16 `f32`s with no padding (`repr(C)`); the slice covers the vector.
    let values = unsafe {
        std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), lines.len() * LINE)
    };
    for (p, panel) in values.chunks_mut(inputs * PANEL).enumerate() {
        let first = p * PANEL;
        let width = (units - first).min(PANEL);
        for (i, row) in panel.chunks_mut(PANEL).enumerate() {
            row[..width].copy_from_slice(&weight[i * units + first..][..width]);
        }
    }
    lines
}

/// Up to 8 rows by one panel's `width` columns, over `depth` inputs.
struct Tile {
    x: *const f32,
    x_stride: usize,
    /// The panel at the first input: `depth` lines of 48, 64-byte aligned.
    weights: *const f32,
    depth: usize,
    out: *mut f32,
    out_stride: usize,
    /// Set for the first block of inputs: the sums start from the bias, not the output.
    bias: Option<*const f32>,
    /// Set for the last block: the ReLU is applied as the values are stored.
    relu: bool,
    width: usize,
}

impl Tile {
    /// # Safety
    /// The pointers address `rows` rows of `depth` inputs, the panel's `depth` lines and
    /// `rows` rows of `width` outputs; the CPU has AVX-512.
    unsafe fn run(&self, rows: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as the function's contract.
        unsafe {
            match self.width.div_ceil(LINE) {
                3 => self.rows::<3>(rows),
                2 => self.rows::<2>(rows),
                _ => self.rows::<1>(rows),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("PackedDense::new packs only where AVX-512 runs ({rows} rows)");
    }

    /// [`Tile::run`] with `V` vectors of columns.
    ///
    /// # Safety
    /// As [`Tile::run`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn rows<const V: usize>(&self, rows: usize) {
        // SAFETY: as the function's contract.
        unsafe {
            match rows {
                8 => avx512::tile::<8, V>(self),
                7 => avx512::tile::<7, V>(self),
                6 => avx512::tile::<6, V>(self),
                5 => avx512::tile::<5, V>(self),
                4 => avx512::tile::<4, V>(self),
                3 => avx512::tile::<3, V>(self),
                2 => avx512::tile::<2, V>(self),
                _ => avx512::tile::<1, V>(self),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LINE, PANEL, Tile};

    /// The columns of vector `v` that lie within `width`.
    fn mask(width: usize, v: usize) -> __mmask16 {
        let n = width.saturating_sub(v * LINE).min(LINE);
        ((1u32 << n) - 1) as __mmask16
    }

    /// `R` rows and `V` vectors of columns of a tile: per output, the block's products summed in order with fused
    /// multiply-adds from zero (gemm's microkernel), then added to the bias or to the
    /// output so far (gemm's `dst + acc`).
    ///
    /// # Safety
    /// As [`Tile::run`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const R: usize, const V: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let (mut x, mut w) = (t.x, t.weights);
        for _ in 0..t.depth {
            // SAFETY: `w` is within the panel's `depth` aligned lines of 48; `x + r *
            // stride` within row r's inputs (the contract).
            unsafe {
                let b: [__m512; V] = std::array::from_fn(|v| _mm512_load_ps(w.add(v * LINE)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*x.add(r * t.x_stride));
                    for (acc, &b) in acc.iter_mut().zip(&b) {
                        *acc = _mm512_fmadd_ps(b, a, *acc);
                    }
                }
                x = x.add(1);
                w = w.add(PANEL);
            }
        }
        let zero = _mm512_setzero_ps();
        for (r, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                let m = mask(t.width, v);
                // SAFETY: row r's columns `v * 16..` under the mask lie within the width.
                unsafe {
                    let out = t.out.add(r * t.out_stride + v * LINE);
                    let base = match t.bias {
                        Some(bias) => _mm512_maskz_loadu_ps(m, bias.add(v * LINE)),
                        None => _mm512_maskz_loadu_ps(m, out),
                    };
                    let mut value = _mm512_add_ps(base, acc);
                    if t.relu {
                        value = _mm512_max_ps(value, zero);
                    }
                    _mm512_mask_storeu_ps(out, m, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dense;
    use burn::tensor::{Device, Distribution};

    fn bits(t: Tensor<2>) -> Vec<u32> {
        t.into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 values")
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn packed_dense_is_bit_for_bit_the_dense_kernel() {
        let device = Device::flex();
        if !crate::avx512() {
            eprintln!("no AVX-512 on this CPU: the packed kernel does not run");
            return;
        }
        // Report 002's MLP (threaded, two blocks of inputs), its output layer (gemm's small
        // route, blocks of 512 and 256; fewer panels than shares, so split by rows), a narrow
        // layer split by rows into uneven shares with partial tiles, uneven shares of rows,
        // three blocks of inputs, partial panels and tiles, one thread.
        for (m, k, n) in [
            (128, 784, 768),
            (128, 768, 10),
            (101, 200, 20),
            (129, 784, 100),
            (200, 1100, 50),
            (37, 300, 97),
            (7, 33, 5),
            (2, 3, 2),
            (1024, 128, 64),
        ] {
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 0.2), &device);
            let b = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let packed = PackedDense::new(&w, &b).expect("packs on flex with AVX-512");
            assert!(packed.handles(m), "{m}x{k}x{n}");
            for relu in [false, true] {
                let ours = bits(packed.apply(x.clone(), relu));
                let kernel = bits(dense(x.clone(), w.clone(), b.clone(), relu));
                let differ = ours.iter().zip(&kernel).filter(|(a, b)| a != b).count();
                assert_eq!(differ, 0, "{m}x{k}x{n} relu {relu}: values differ");
            }
        }
    }

    #[test]
    fn gemms_other_routes_are_left_to_the_dense_kernel() {
        let device = Device::flex();
        let layer = |k: usize, n: usize| {
            PackedDense::new(
                &Tensor::<2>::zeros([k, n], &device),
                &Tensor::<1>::zeros([n], &device),
            )
        };
        if !crate::avx512() {
            assert!(layer(4, 4).is_none());
            return;
        }
        let wide = layer(784, 768).expect("packs");
        let threads = rayon::current_num_threads();
        assert!(wide.handles(2 * threads) && wide.handles(128));
        assert!(!wide.handles(1), "one row is gemm's vector route");
        // Two rows a thread but the last, which gets one.
        assert!(!wide.handles(2 * threads - 1), "a share of one row");
        assert!(!layer(784, 1).expect("packs").handles(64), "one unit");
        assert!(!layer(2, 10).expect("packs").handles(64), "two inputs");
        let tracked = Tensor::<2>::zeros([4, 4], &Device::flex().autodiff());
        assert!(PackedDense::new(&tracked, &Tensor::<1>::zeros([4], &device)).is_none());
    }
}
