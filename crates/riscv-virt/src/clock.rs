//! Guest time: the CLINT's `mtime`, in ticks of [`TIMEBASE_HZ`]. It
//! advances with host time while the machine runs and stands still while
//! it is paused, so a guest's timers neither fire early nor see a jump
//! after a pause, a snapshot or a migration; a restore sets it to the
//! value saved and it goes on from there.

use crate::TIMEBASE_HZ;
use std::time::Instant;

const NANOS_PER_TICK: u128 = 1_000_000_000 / TIMEBASE_HZ as u128;

#[derive(Debug)]
pub struct GuestClock {
    /// Guest time when it last started running (or stopped, when paused).
    ticks: u64,
    /// Host time it started running at; `None` while paused.
    running_since: Option<Instant>,
}

impl GuestClock {
    /// A clock at 0 that runs.
    pub fn new() -> GuestClock {
        GuestClock {
            ticks: 0,
            running_since: Some(Instant::now()),
        }
    }

    /// Guest time now.
    pub fn now(&self) -> u64 {
        let elapsed = self.running_since.map_or(0, |since| {
            (since.elapsed().as_nanos() / NANOS_PER_TICK) as u64
        });
        // mtime wraps, as the CLINT's 64-bit counter does.
        self.ticks.wrapping_add(elapsed)
    }

    /// Makes guest time `ticks` now (a guest's write to `mtime`, a restore).
    pub fn set(&mut self, ticks: u64) {
        self.ticks = ticks;
        if self.running_since.is_some() {
            self.running_since = Some(Instant::now());
        }
    }

    /// Stops guest time where it is.
    pub fn pause(&mut self) {
        self.ticks = self.now();
        self.running_since = None;
    }

    /// Lets guest time run on from where it stopped.
    pub fn resume(&mut self) {
        self.running_since.get_or_insert_with(Instant::now);
    }
}

impl Default for GuestClock {
    fn default() -> GuestClock {
        GuestClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn it_stands_still_while_paused_and_goes_on_after() {
        let mut clock = GuestClock::new();
        std::thread::sleep(Duration::from_millis(5));
        clock.pause();
        let paused_at = clock.now();
        assert!(paused_at >= 5 * TIMEBASE_HZ / 1000, "{paused_at}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), paused_at, "paused time does not move");
        clock.resume();
        std::thread::sleep(Duration::from_millis(5));
        let later = clock.now();
        assert!(later >= paused_at + 5 * TIMEBASE_HZ / 1000, "{later}");
        // The 20 ms paused did not count (allow for a slow host, not for them).
        assert!(later < paused_at + 20 * TIMEBASE_HZ / 1000, "{later}");
    }

    #[test]
    fn a_set_time_continues_and_wraps() {
        let mut clock = GuestClock::new();
        clock.pause();
        clock.set(u64::MAX - 10);
        assert_eq!(clock.now(), u64::MAX - 10);
        clock.resume();
        std::thread::sleep(Duration::from_millis(1));
        let now = clock.now();
        assert!(now < 1_000_000, "wrapped past zero: {now}");
    }
}
