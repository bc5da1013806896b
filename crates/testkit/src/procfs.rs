//! What a process and its threads are doing, read from `/proc`: thread ids,
//! the system call a thread is blocked in, process and thread states, and the
//! watchdog's report ([`diagnose`]).

use std::time::{Duration, Instant};

/// This thread's kernel id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// The system call a thread is blocked in (`None` if it is running).
pub fn thread_syscall(pid: i32, tid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Waits until thread `tid` of `pid` is seen inside `futex(2)`: asleep in a
/// futex wait. Returns whether it was seen before `timeout`.
pub fn wait_in_futex(pid: i32, tid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if thread_syscall(pid, tid) == Some(libc::SYS_futex) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...) from `/proc/<pid>/stat`.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// The state letters of every thread of `pid`.
fn thread_states(pid: i32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    })
    .collect()
}

/// Waits until every thread of `pid` is stopped (state `T`).
pub fn wait_stopped(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let states = thread_states(pid);
        if !states.is_empty() && states.iter().all(|&s| s == 'T') {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Waits until every thread of `pid` has exited (the process is a zombie or
/// gone): only then has the kernel closed its files and released its locks. A
/// zombie leader alone is not enough: its other threads may still be exiting.
pub fn wait_dead(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if thread_states(pid).iter().all(|&s| s == 'Z' || s == 'X') {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Process group of `pid` from `/proc/<pid>/stat`.
fn proc_pgrp(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state ppid pgrp ...
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Every process whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| proc_pgrp(p) == Some(pgid))
        .collect()
}

/// What every thread of `pid` (and of the rest of its process group) is doing:
/// for the watchdog's report.
pub fn diagnose(pid: i32) -> String {
    let mut out = String::new();
    let mut pids = group_members(pid);
    if !pids.contains(&pid) {
        pids.insert(0, pid);
    }
    for p in pids {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        out += &format!(
            "  process {p} ({}) state {:?}\n",
            comm.trim(),
            proc_state(p)
        );
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.filter_map(|e| e.ok()) {
            let tid = t.file_name().to_string_lossy().into_owned();
            let read = |f: &str| {
                std::fs::read_to_string(format!("/proc/{p}/task/{tid}/{f}"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|e| format!("<{e}>"))
            };
            out += &format!(
                "    thread {tid} ({}): wchan {} syscall {}\n",
                read("comm"),
                read("wchan"),
                read("syscall")
            );
            for line in read("stack").lines().take(12) {
                out += &format!("      {line}\n");
            }
        }
    }
    out
}
