//! How much of the CPU other work takes, for the benchmarks that compare this project with
//! a peer (PyTorch, scikit-learn) on the same machine and must say when something else
//! shared it: the load average before a run, and during it the CPU time that processes
//! other than the benchmark and its children took (from `/proc`; on other systems neither
//! is known and nothing is said).

/// A 1-minute load average above this means other work shares the CPU.
const BUSY_LOAD: f64 = 0.5;

/// A share of the machine's CPU time above this, taken by work other than the benchmark
/// and its children, means the run was disturbed.
const OTHERS_SHARE: f64 = 0.1;

/// A benchmark run being watched for other work on the machine: started before the run,
/// asked after it.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    start: Option<CpuTimes>,
}

impl Watch {
    /// Starts watching; also the warning to give now when the load average shows other
    /// work (read before the run: after it, the average counts the benchmark's own threads).
    pub fn start() -> (Self, Option<String>) {
        let busy = load_average().filter(|l| *l > BUSY_LOAD).map(|load| {
            warning(&format!(
                "the load average at the start is {load:.2}: other work shares the CPU"
            ))
        });
        let watch = Watch {
            start: CpuTimes::now(),
        };
        (watch, busy)
    }

    /// The warning to give after the run when other work took more than a tenth of the
    /// CPU's time since [`Watch::start`], if it did.
    pub fn disturbed(&self) -> Option<String> {
        let share = self
            .start
            .zip(CpuTimes::now())
            .and_then(|(s, e)| s.others_share(&e))?;
        (share > OTHERS_SHARE).then(|| {
            warning(&format!(
                "other work took {:.0} % of the CPU's time during the run (besides this \
                 benchmark and its children)",
                share * 100.0
            ))
        })
    }
}

/// A warning line: what was seen, and what it means for the figures.
fn warning(what: &str) -> String {
    format!("warning: {what}, and the figures below are not this machine's best")
}

/// The 1-minute load average, where the system gives one.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time in clock ticks, read from `/proc`: the machine's busy and total time (all
/// CPUs; steal, the hypervisor's, counts as busy), and this process's own with its
/// waited-for children (a peer's runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuTimes {
    /// The times now; `None` where `/proc` does not give them.
    fn now() -> Option<Self> {
        let (busy, total) = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let ours = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(Self { busy, total, ours })
    }

    /// The share of the machine's time between `self` and `later` that was busy with work
    /// other than this process and its children.
    fn others_share(&self, later: &Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)?;
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.ours.saturating_sub(self.ours);
        Some(busy.saturating_sub(ours) as f64 / total as f64)
    }
}

/// Busy and total ticks from `/proc/stat`'s first line (`cpu user nice system idle iowait
/// irq softirq steal ...`; guest time is already inside user time).
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let t: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = t.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// This process's user and system ticks, its waited-for children's included, from
/// `/proc/self/stat` (fields 14-17, counted after the command name's closing bracket,
/// which may itself hold spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_from_proc_files() {
        let stat = "cpu  100 5 20 800 10 1 2 7 0 0\ncpu0 50 2 10 400 5 0 1 3 0 0\n";
        assert_eq!(machine_ticks(stat), Some((135, 945)));
        assert_eq!(machine_ticks("intr 1 2 3\n"), None);
        assert_eq!(machine_ticks("cpu 1 2 x 4 5 6 7 8\n"), None);
        // A command name with spaces and a bracket; utime, stime, cutime, cstime = 11, 12, 13, 14.
        let own = "4242 (bench (x) y) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 20 0 2 0 99";
        assert_eq!(process_ticks(own), Some(11 + 12 + 13 + 14));
        assert_eq!(process_ticks("4242 (bench) R 1 2"), None);
    }

    #[test]
    fn others_share_leaves_out_our_own_time() {
        let start = CpuTimes {
            busy: 1_000,
            total: 5_000,
            ours: 300,
        };
        // 2,000 ticks pass; 1,500 of them busy, 1,400 of those ours or PyTorch's.
        let alone = CpuTimes {
            busy: 2_500,
            total: 7_000,
            ours: 1_700,
        };
        assert_eq!(start.others_share(&alone), Some(0.05));
        // The same run beside 600 ticks of other work (a queue, a build).
        let shared = CpuTimes {
            busy: 3_100,
            total: 7_000,
            ours: 1_700,
        };
        assert_eq!(start.others_share(&shared), Some(0.35));
        assert!(start.others_share(&shared).unwrap() > OTHERS_SHARE);
        assert_eq!(start.others_share(&start), None);
    }
}
