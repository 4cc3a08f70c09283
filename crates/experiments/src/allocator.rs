//! The allocator of every binary of this crate: mimalloc. A training step of a small model
//! allocates and frees many small tensors; with glibc's malloc, allocation and freeing were
//! about a fifth of report 001's iris grid (perf), and mimalloc runs the grid 15-20 % faster
//! (`iris_grid_bench`, alternated runs). Allocation changes no figure a model computes.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in mimalloc v3's `mi_option_e` (the
/// version libmimalloc-sys builds by default), which the bindings do not name. The test
/// below checks that the option at this place has the purge delay's default, 1000 ms.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse instead of returning it to the system a second after it is
/// freed (mimalloc's default): a large model frees and allocates the same large buffers
/// every step, and giving them back costs page faults on every step (report 002's final
/// CNN trained 5-10 % slower, `bench` alternated with purging on and off). Call once at
/// start, before training; the same setting as `models::select_device`'s for glibc.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an option value (thread-safe, read by the
    // allocator when it next considers purging); no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_where_it_is_set() {
        // SAFETY: mi_option_get only reads an option value.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert!(
            default == 1000 || default == -1,
            "option {PURGE_DELAY} is {default}"
        );
        keep_freed_memory();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
