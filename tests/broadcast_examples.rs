//! Cross-process tests of broadcast channels (`shmq::broadcast`) between
//! unrelated processes by name: the example programs (`producer --broadcast`,
//! `consumer --broadcast [--lossy]`).
//!
//! Run: `cargo test --release --test broadcast_examples`; a longer stream with
//! `SHMQ_BROADCAST_COUNT=10000000` (default 20,000 messages).

use std::time::Duration;

use serde_json::json;
use shmq::inspect::EndpointState;
use shmq_testkit as kit;
use shmq_testkit::{Spawn, num};

/// Messages the example stream carries (`SHMQ_BROADCAST_COUNT`, default 20,000).
fn stream_count() -> u64 {
    std::env::var("SHMQ_BROADCAST_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Waits until `n` subscribers are attached to the broadcast channel `name`.
fn wait_subscribed(name: &str, n: usize) {
    kit::poll_until(Duration::from_secs(30), Duration::from_millis(2), || {
        let attached = shmq::inspect::inspect(name)
            .ok()
            .flatten()
            .and_then(|r| r.ring)
            .map_or(0, |ring| {
                ring.subscribers
                    .iter()
                    .filter(|s| s.end.state == EndpointState::Attached)
                    .count()
            });
        (attached >= n)
            .then_some(())
            .ok_or_else(|| format!("{name}: {attached} of {n} subscribers attached after 30 s"))
    })
}

/// One publisher, a lossless and a lossy subscriber, three unrelated
/// processes: the lossless one receives every message in order; the lossy one
/// (a small ring, so it may well be lapped) receives some and is told of the
/// rest, exactly: received + lagged = sent, and no gap it was not told of.
#[test]
fn the_example_programs_broadcast_to_a_lossless_and_a_lossy_subscriber() {
    let _serial = kit::serial();
    let (wd, names, name) = kit::start("broadcast_examples", "bcast");
    let n = stream_count();
    let count = n.to_string();
    let common = ["--name", &name, "--broadcast", "--capacity", "4096"];
    let mut lossless = Spawn::example("consumer")
        .args(common)
        .args(["--count", &count])
        .spawn(&wd);
    let mut lossy = Spawn::example("consumer")
        .args(common)
        .args(["--count", &count, "--lossy"])
        .spawn(&wd);
    // Subscribers join at the next message: both must be there before the first.
    wait_subscribed(&name, 2);
    let mut p = Spawn::example("producer")
        .args(common)
        .args(["--count", &count, "--size", "64"])
        .spawn(&wd);
    p.expect_success();
    assert_eq!(num(&p.last_json(), "sent"), n);

    lossless.expect_success();
    let cj = lossless.last_json();
    assert_eq!(num(&cj, "received"), n, "{cj}");
    assert_eq!(cj["verified"], true, "{cj}");
    assert_eq!(cj["lost"], 0, "{cj}");
    assert_eq!(cj["lagged"], 0, "{cj}");
    assert_eq!(cj["duplicated"], 0, "{cj}");
    assert_eq!(cj["reason"], "complete", "{cj}");
    assert_eq!(cj["per_producer"], json!({ "0": n }), "{cj}");

    lossy.expect_success();
    let lj = lossy.last_json();
    assert_eq!(num(&lj, "received") + num(&lj, "lagged"), n, "{lj}");
    assert_eq!(lj["verified"], true, "{lj}");
    assert_eq!(lj["lost"], 0, "{lj}");
    assert_eq!(lj["duplicated"], 0, "{lj}");
    assert_eq!(lj["reason"], "complete", "{lj}");
    eprintln!(
        "lossy subscriber: received {}, lagged {}",
        num(&lj, "received"),
        num(&lj, "lagged")
    );
    names.assert_clean();
}

/// `--lossy` is for broadcast subscribers only: refused, in words, otherwise.
#[test]
fn the_example_consumer_refuses_lossy_without_broadcast() {
    let (wd, names, name) = kit::start("lossy_needs_broadcast", "lossy");
    let mut c = Spawn::example("consumer")
        .args(["--name", &name, "--count", "1", "--lossy"])
        .spawn(&wd);
    c.expect_exit(1);
    assert!(c.log().contains("--lossy needs --broadcast"), "{}", c.log());
    names.assert_clean();
}
