//! Measurements of processes: the shared monotonic clock, CPU time, resident
//! memory, zombie children and the library's futex counters.

use serde_json::{Value, json};

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host, so
/// a time taken in a child can be compared with one taken here.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of this process (all its threads), in nanoseconds
/// (`CLOCK_PROCESS_CPUTIME_ID`: nanosecond resolution, not 10 ms ticks).
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// `clock` in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own exclusively.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0, "clock_gettime({clock})");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) all threads of `pid` have used, in nanoseconds, from
/// `/proc/<pid>/task/*/schedstat` (nanosecond resolution, unlike `stat`'s ticks).
pub fn cpu_ns(pid: i32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| {
        let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse::<u64>().ok()
    })
    .sum()
}

/// CPU time this process has used (all threads), from `getrusage`, in nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `ru`, which we own exclusively.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(r, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Children of this process that are zombies (dead, not reaped).
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|v| v.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(me)
        })
        .collect()
}

/// `shmq::futex_calls()` as JSON fields.
pub fn futex_json() -> Value {
    let (waits, wakes) = shmq::futex_calls();
    json!({ "waits": waits, "wakes": wakes })
}
