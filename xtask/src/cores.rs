//! How near each other the machine's cores are at the moment: the time a cache line takes to
//! go from one core to another and back. Two threads of one process that hand data to each
//! other pay it for each line handed over; two processes that share nothing do not.
//!
//! On the bench's 2-vCPU VM this probe gave 43-60 ns most of the time and 370-570 ns for
//! stretches of seconds to minutes (the host ran the two vCPUs on cores without a shared
//! cache, as far as a guest can tell), and `dump --format resp --threads 2` of the mixed file
//! took 0.27-0.30 s in the first state and 0.33-0.37 s in the second, against 0.50-0.52 s on
//! one thread in both (`docs/bench.md`, the twenty-fourth session). The thread-count rows
//! report their ratios over all rounds and over the rounds the cores were near in.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Round trips timed in one try (about 2-8 ms here).
const ROUND_TRIPS: u64 = 20_000;

/// Round trips made before a try's clock starts: both threads are running by then.
const WARM_UP: u64 = 1_000;

/// The time one cache line takes to go from one thread to another and back, in ns: the
/// median of 5 tries, each of two threads that take turns writing one atomic counter. `None`
/// on a machine with one core, where the two would take turns on it instead.
pub(crate) fn round_trip_ns() -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return None;
    }
    let tries: Vec<f64> = (0..5).map(|_| one_try()).collect();
    Some(crate::bench::median(&tries))
}

/// One try of [`round_trip_ns`]: the other thread answers each odd value with the next even
/// one.
fn one_try() -> f64 {
    let line = AtomicU64::new(0);
    let total = WARM_UP + ROUND_TRIPS;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..total {
                wait_for(&line, 2 * i + 1);
                line.store(2 * i + 2, Ordering::Release);
            }
        });
        let mut start = Instant::now();
        for i in 0..total {
            if i == WARM_UP {
                start = Instant::now();
            }
            line.store(2 * i + 1, Ordering::Release);
            wait_for(&line, 2 * i + 2);
        }
        start.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64
    })
}

/// Spins until `line` holds `v`, letting another thread have the core now and then: where
/// both threads share one core (a busy machine), each round trip then takes a switch rather
/// than a whole time slice. (A round trip between two cores ends within a few hundred spins.)
fn wait_for(line: &AtomicU64, v: u64) {
    let mut spins = 0u32;
    while line.load(Ordering::Acquire) != v {
        spins += 1;
        if spins.is_multiple_of(4096) {
            std::thread::yield_now();
        } else {
            spin_loop();
        }
    }
}

/// Which rounds had their cores near: each round's round trips (those timed in it), against
/// the lowest of all of them. A round is near when none of its own is more than twice that.
pub(crate) fn near_rounds(trips: &[Vec<f64>]) -> Vec<bool> {
    let lowest = trips
        .iter()
        .flatten()
        .copied()
        .fold(f64::INFINITY, f64::min);
    trips
        .iter()
        .map(|round| !round.is_empty() && round.iter().all(|&t| t <= 2.0 * lowest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_near_when_each_of_its_round_trips_is_within_twice_the_lowest() {
        let trips = vec![
            vec![90.0, 95.0],
            vec![88.0, 390.0],
            vec![400.0, 380.0],
            vec![176.0, 150.0],
            vec![177.0, 90.0],
            vec![],
        ];
        assert_eq!(
            near_rounds(&trips),
            [true, false, false, true, false, false]
        );
        // one alone is near itself; none at all, nothing
        assert_eq!(near_rounds(&[vec![500.0]]), [true]);
        assert!(near_rounds(&[]).is_empty());
    }

    #[test]
    fn a_round_trip_takes_some_time_and_less_than_a_time_slice() {
        // (two cores are there wherever the tests run in parallel; one core gives none)
        let Some(ns) = round_trip_ns() else {
            assert_eq!(
                std::thread::available_parallelism().map_or(1, usize::from),
                1
            );
            return;
        };
        assert!(ns.is_finite() && ns > 1.0, "{ns} ns");
        // (tens to hundreds of ns; a busy machine may make each wait for a switch)
        assert!(ns < 50_000_000.0, "{ns} ns");
    }
}
