//! The `shmq` command (being written).
fn main() {}
