//! Facts about the machine pgx runs on: CPUs, memory, load average. Ground floor: imports
//! nothing of pgx.

/// The CPUs this process may use (1 when that cannot be read).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total memory, from /proc/meminfo (None elsewhere).
pub fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The 1, 5 and 15 minute load averages, from /proc/loadavg (None elsewhere).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_cores_memory_and_a_load_average() {
        assert!(super::cores() >= 1);
        assert!(super::memory_bytes().is_some_and(|b| b > 1 << 20));
        assert!(super::load_average().is_some_and(|l| l.iter().all(|x| *x >= 0.0)));
    }
}
