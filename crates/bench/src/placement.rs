//! The placement probe: on which kind of CPU pair a row ran.
//!
//! On a virtual machine the two vCPUs the harness pins to are not always the same
//! distance apart: the hypervisor moves them, and the cost of a cache-line
//! transfer between them flips (on the 2-vCPU machine this was written on, a bare
//! spin round trip moved between about 140 and 480 ns within seconds). A ratio
//! between a row measured "close" and one measured "far" says more about the
//! hypervisor than about the transports. So before each measurement the harness
//! runs a short bare spin ping-pong (the `floor-spin` echo, [`PROBE_ROUND_TRIPS`]
//! round trips after a short warm-up) and labels the measurement by the median
//! round trip: [`Placement::Close`] below the threshold (`--probe-ns`, default
//! [`DEFAULT_THRESHOLD_NS`]), [`Placement::Far`] at or above it. Ratios are then
//! taken only between rows of the same placement.
//!
//! Without pinning, or with fewer than two CPUs, nothing is probed (a spin
//! ping-pong on one CPU measures the scheduler) and the label is
//! [`Placement::Unprobed`].

use std::fmt;
use std::time::Instant;

use crate::echo::{Echo, Transport};

/// Result of the harness's fallible steps.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Default threshold between close and far, in ns of bare spin round trip
/// (between the two modes seen on the 2-vCPU machine, about 140 and 480 ns).
pub const DEFAULT_THRESHOLD_NS: u64 = 300;

/// Timed round trips of one probe.
pub const PROBE_ROUND_TRIPS: u64 = 2000;

/// Untimed round trips before a probe's timed ones.
const PROBE_WARMUP: u64 = 200;

/// Where the two processes of a measurement ran, as the probe saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placement {
    /// The bare spin round trip was below the threshold.
    Close,
    /// The bare spin round trip was at or above the threshold.
    Far,
    /// Not probed (not pinned, one CPU, or `--no-probe`).
    Unprobed,
}

impl Placement {
    /// Every placement, in table order.
    pub const ALL: [Placement; 3] = [Placement::Close, Placement::Far, Placement::Unprobed];

    /// The label in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Close => "close",
            Placement::Far => "far",
            Placement::Unprobed => "unprobed",
        }
    }

    /// The label for a round trip of `median_ns` against `threshold_ns`.
    pub fn of(median_ns: u64, threshold_ns: u64) -> Placement {
        if median_ns < threshold_ns {
            Placement::Close
        } else {
            Placement::Far
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The presentation flags both harnesses share: the internal goals, and how
/// to probe each row's placement.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Also print the project's internal goals (ratios it aims at) below the
    /// table.
    #[arg(long)]
    pub goals: bool,
    /// The placement probe's threshold: a bare spin round trip (median, ns) from
    /// which the two CPUs count as far apart.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD_NS)]
    pub probe_ns: u64,
    /// Do not run the placement probe before each measurement.
    #[arg(long)]
    pub no_probe: bool,
}

impl ReportArgs {
    /// The probe these flags ask for.
    pub fn probe(&self) -> Probe {
        Probe::new(self.probe_ns, !self.no_probe)
    }
}

/// How to probe: the threshold, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Median bare spin round trip (ns) from which a placement is far.
    pub threshold_ns: u64,
    /// Whether to probe at all.
    pub enabled: bool,
}

impl Probe {
    /// A probe with `threshold_ns`, or none when `enabled` is false.
    pub fn new(threshold_ns: u64, enabled: bool) -> Probe {
        Probe {
            threshold_ns,
            enabled,
        }
    }

    /// The line below a table that says how its placements were found, or
    /// nothing when there was no probe (`pinned`: the rows ran on two CPUs).
    pub fn footnote(&self, pinned: bool) -> String {
        if !(self.enabled && pinned) {
            return String::new();
        }
        format!(
            "# placement: before each measurement, {PROBE_ROUND_TRIPS} bare spin round trips \
             between the two CPUs; close if their median is below {} ns (--probe-ns), far \
             otherwise\n",
            self.threshold_ns
        )
    }

    /// Probes the CPU pair the harness pins to (when `pin` and there are two
    /// CPUs): the placement and the probe's median round trip in ns (0 when not
    /// probed).
    ///
    /// # Errors
    /// The probe's echo failed.
    pub fn run(&self, pin: bool) -> Result<(Placement, u64)> {
        if !self.enabled || !pin || crate::process::cpu_pair().is_none() {
            return Ok((Placement::Unprobed, 0));
        }
        let mut echo = Echo::spawn(Transport::FloorSpin, 8, true)?;
        for _ in 0..PROBE_WARMUP {
            echo.round_trip()?;
        }
        let mut ns = Vec::with_capacity(PROBE_ROUND_TRIPS as usize);
        for _ in 0..PROBE_ROUND_TRIPS {
            let t0 = Instant::now();
            echo.round_trip()?;
            ns.push(t0.elapsed().as_nanos() as u64);
        }
        let pinned = echo.pinned();
        echo.finish()?;
        if !pinned {
            return Ok((Placement::Unprobed, 0));
        }
        ns.sort_unstable();
        let median = ns[ns.len() / 2];
        Ok((Placement::of(median, self.threshold_ns), median))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_splits() {
        assert_eq!(Placement::of(140, 300), Placement::Close);
        assert_eq!(Placement::of(300, 300), Placement::Far);
        assert_eq!(Placement::of(480, 300), Placement::Far);
        assert_eq!(Placement::Unprobed.to_string(), "unprobed");
    }

    #[test]
    fn disabled_probe_does_not_run() {
        let p = Probe::new(300, false);
        assert_eq!(p.run(true).unwrap(), (Placement::Unprobed, 0));
        assert_eq!(
            Probe::new(300, true).run(false).unwrap().0,
            Placement::Unprobed
        );
    }
}
