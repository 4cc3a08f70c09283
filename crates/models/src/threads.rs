//! Where a computation on a CPU backend runs: on one of the compute threads of flex and
//! ndarray (rayon's global pool) rather than on the caller's thread.
//!
//! Both backends split a large operation between rayon's threads. Called from a thread
//! outside that pool (a program's main thread), each such operation is handed to the pool
//! and the caller sleeps until it is done: two thread wake-ups per operation, and a
//! training step of report 002's MLP has a few dozen of them. Run from one of the pool's
//! threads, an operation's parts are shared out by work stealing with no hand-over: that
//! MLP trained 17-21 % faster and predicted 2-7 % faster (`bench`, alternated runs;
//! docs/performance.md item 16). Which thread runs an operation changes none of its
//! numbers: the parts and their sums are the same.

use std::cell::Cell;

thread_local! {
    /// Set on threads that train side by side with others (a search's workers).
    static STAYS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on one of the CPU backends' compute threads and returns its result: moved
/// there from any other thread (the caller waits), run in place on a compute thread, on a
/// thread marked by [`stay_on_this_thread`], and in a build without a CPU backend.
pub fn on_compute_threads<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if rayon::current_thread_index().is_none() && !STAYS.get() {
        return rayon::scope(|_| work());
    }
    work()
}

/// Marks the calling thread as one of several that train models at the same time (a
/// search's workers): [`on_compute_threads`] then runs work where it is called. Moved into
/// the pool, such trainings would share its threads unevenly: a pool thread waiting on one
/// model's operation may take up another whole model, which then holds the first back.
pub fn stay_on_this_thread() {
    STAYS.set(true);
}

#[cfg(all(test, any(feature = "flex", feature = "ndarray")))]
mod tests {
    use super::*;

    #[test]
    fn work_moves_to_a_compute_thread_unless_its_thread_stays() {
        let outside = std::thread::spawn(|| on_compute_threads(rayon::current_thread_index))
            .join()
            .expect("thread ran");
        assert!(outside.is_some(), "work ran outside the pool");
        let stayed = std::thread::spawn(|| {
            stay_on_this_thread();
            on_compute_threads(rayon::current_thread_index)
        })
        .join()
        .expect("thread ran");
        assert_eq!(stayed, None, "a staying thread's work moved");
        let nested = on_compute_threads(|| on_compute_threads(rayon::current_thread_index));
        assert!(nested.is_some());
    }
}
