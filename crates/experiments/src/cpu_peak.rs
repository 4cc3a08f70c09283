//! The CPU's single-precision peak, measured: every core runs a loop of independent fused
//! multiply-adds at the widest vector width it has, and the FLOPs it completes per second are
//! the peak that the benchmark's "fraction of peak" divides by.
//!
//! Estimating the peak from `/proc/cpuinfo` (cores x clock x lanes x two FMA units) was
//! wrong by a factor of two on this project's AMD EPYC (Zen 4): it runs a 512-bit FMA as two
//! 256-bit halves, so AVX-512 doubles no throughput, and the clock it reports is not the
//! clock it runs at. The estimate remains for CPUs without AVX2 and FMA, and is printed
//! beside the measurement.

use std::time::{Duration, Instant};

/// Independent accumulators per loop: enough to hide an FMA's latency (4 cycles) on two
/// units.
const CHAINS: usize = 12;

/// Iterations per timed call of the loop.
const ITERATIONS: u64 = 2_000_000;

/// The measured peak in GFLOP/s and how it was measured (with the estimate from
/// `/proc/cpuinfo` beside it); the estimate alone where the CPU has no AVX2 with FMA.
pub fn cpu_peak_gflops() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (estimate, how) = peak_from_cpuinfo(&info, cores);
    match measured_peak(cores, Duration::from_millis(300)) {
        Some((gflops, isa)) => (
            gflops,
            format!(
                "measured: {cores} threads of independent {isa} FMAs ({how} would estimate \
                 {estimate:.0})"
            ),
        ),
        None => (estimate, format!("estimated as {how}")),
    }
}

/// GFLOP/s of `threads` threads each running the FMA loop for about `time`, and the vector
/// instructions used; `None` on CPUs without AVX2 and FMA.
fn measured_peak(threads: usize, time: Duration) -> Option<(f64, &'static str)> {
    let (kernel, lanes, isa) = fma_kernel()?;
    let start = Instant::now();
    let calls: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut calls = 0;
                    let mut sink = 0.0;
                    while start.elapsed() < time {
                        sink += kernel(ITERATIONS);
                        calls += 1;
                    }
                    std::hint::black_box(sink);
                    calls
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let flops = calls.iter().sum::<u64>() as f64 * (ITERATIONS * CHAINS as u64) as f64 * lanes;
    Some((flops * 2.0 / seconds / 1e9, isa))
}

/// The widest FMA loop this CPU runs: the function, its lanes per FMA and its name.
#[allow(clippy::type_complexity)]
fn fma_kernel() -> Option<(fn(u64) -> f32, f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Some((x86::fma512_safe, 16.0, "AVX-512"));
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some((x86::fma256_safe, 8.0, "AVX2"));
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// [`fma512`] for a CPU with AVX-512F (checked by the only caller, `fma_kernel`).
    pub(super) fn fma512_safe(iterations: u64) -> f32 {
        // SAFETY: `fma_kernel` hands this function out only after detecting avx512f.
        unsafe { fma512(iterations) }
    }

    /// [`fma256`] for a CPU with AVX2 and FMA (checked by the only caller, `fma_kernel`).
    pub(super) fn fma256_safe(iterations: u64) -> f32 {
        // SAFETY: `fma_kernel` hands this function out only after detecting avx2 and fma.
        unsafe { fma256(iterations) }
    }

    /// `CHAINS` independent chains of 512-bit FMAs, `iterations` long; returns their sum
    /// so that the work cannot be optimised away.
    #[target_feature(enable = "avx512f")]
    fn fma512(iterations: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// `CHAINS` independent chains of 256-bit FMAs, `iterations` long; returns their sum.
    #[target_feature(enable = "avx2,fma")]
    fn fma256(iterations: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        // SAFETY: `lanes` holds the 8 floats the unaligned store writes.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }
}

/// The peak estimated from the text of `/proc/cpuinfo` and a core count: cores x clock x
/// FLOPs per cycle (two fused multiply-add units of the widest vectors the flags name).
fn peak_from_cpuinfo(info: &str, cores: usize) -> (f64, String) {
    let mhz = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(2000.0);
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let (lanes, isa) = if has("avx512f") {
        (16.0, "AVX-512")
    } else if has("avx2") {
        (8.0, "AVX2")
    } else {
        (4.0, "SSE")
    };
    let fma = if has("fma") { 2.0 } else { 1.0 };
    let per_cycle = lanes * fma * 2.0;
    let cores = cores as f64;
    let peak = cores * mhz / 1000.0 * per_cycle;
    (
        peak,
        format!(
            "{cores} cores x {:.2} GHz x {per_cycle} FLOP/cycle ({isa}{}, two units)",
            mhz / 1000.0,
            if fma > 1.0 { " FMA" } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_peak_counts_cores_clock_and_vector_width() {
        let cpu = |flags: &str| format!("cpu MHz\t\t: 2000.000\nflags\t\t: fpu {flags} sse2\n");
        let (peak, how) = peak_from_cpuinfo(&cpu("avx2 fma avx512f"), 2);
        assert_eq!(peak, 2.0 * 2.0 * 16.0 * 2.0 * 2.0, "{how}");
        assert!(how.contains("AVX-512 FMA"), "{how}");
        assert_eq!(peak_from_cpuinfo(&cpu("avx2 fma"), 2).0, 128.0);
        assert_eq!(peak_from_cpuinfo(&cpu("avx2"), 1).0, 32.0);
        assert_eq!(peak_from_cpuinfo(&cpu(""), 4).0, 64.0);
    }

    #[test]
    fn the_measurement_runs_where_the_cpu_has_fma() {
        match fma_kernel() {
            Some(_) => {
                let (gflops, isa) = measured_peak(2, Duration::from_millis(20)).unwrap();
                assert!(
                    gflops > 0.0 && gflops.is_finite(),
                    "{gflops} GFLOP/s ({isa})"
                );
                let (peak, how) = cpu_peak_gflops();
                assert!(how.starts_with("measured"), "{how}");
                assert!(peak > 0.0, "{peak}");
            }
            None => assert!(measured_peak(2, Duration::from_millis(20)).is_none()),
        }
    }
}
