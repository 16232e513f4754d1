//! The one wall clock of the program. The core crate takes the time as an argument; this is
//! where the runtimes read it (durations are measured with `std::time::Instant`).

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix time in whole seconds.
pub fn now_secs() -> u64 {
    now_ms() / 1_000
}
