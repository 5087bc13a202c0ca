//! A doorbell that a device's host-side thread rings when it finished work
//! the guest waits for (a disk request), so that the thread that owns the
//! device's queues completes it at once: at its next turn while the guest
//! runs (one atomic swap per turn), or woken from an idle sleep.
//!
//! The order of [`Doorbell::ring`] (the bell first, then one less work item
//! outstanding) means an idle loop that finds the bell silent and nothing
//! outstanding can sleep on other events without missing a completion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Doorbell(Arc<Inner>);

#[derive(Default)]
struct Inner {
    rung: AtomicBool,
    outstanding: AtomicUsize,
    lock: Mutex<()>,
    bell: Condvar,
}

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell::default()
    }

    /// A device handed one piece of work to a host thread, which rings when
    /// it is done.
    pub fn expect(&self) {
        self.0.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// One piece of expected work is done (or, unexpected, something the
    /// waiter should look at now).
    pub fn ring(&self) {
        self.0.rung.store(true, Ordering::Release);
        // Taken so a waiter between its check and its sleep cannot miss the bell.
        drop(self.0.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.0.bell.notify_all();
        let _ = self
            .0
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether it rang since the last call; silences it.
    pub fn answer(&self) -> bool {
        self.0.rung.load(Ordering::Acquire) && self.0.rung.swap(false, Ordering::AcqRel)
    }

    /// Whether it rang and was not answered yet.
    pub fn rang(&self) -> bool {
        self.0.rung.load(Ordering::Acquire)
    }

    /// Whether work it will ring for is still outstanding.
    pub fn expecting(&self) -> bool {
        self.0.outstanding.load(Ordering::Acquire) > 0
    }

    /// Sleeps until it rings or `timeout` passes; at once when it rang and
    /// was not answered. Does not silence it.
    pub fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.rang() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            guard = match self.0.bell.wait_timeout(guard, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_from_another_thread_ends_the_wait_and_is_answered_once() {
        let bell = Doorbell::new();
        bell.expect();
        assert!(bell.expecting() && !bell.rang());
        let ringer = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                bell.ring();
            })
        };
        let start = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "woken by the ring"
        );
        ringer.join().unwrap();
        assert!(!bell.expecting());
        assert!(bell.answer());
        assert!(!bell.answer(), "answered once");
        assert!(!bell.rang());
    }

    #[test]
    fn a_silent_bell_waits_out_its_timeout() {
        let bell = Doorbell::new();
        let start = Instant::now();
        bell.wait(Duration::from_millis(30));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(!bell.answer());
    }

    #[test]
    fn a_bell_that_already_rang_does_not_wait() {
        let bell = Doorbell::new();
        bell.expect();
        bell.ring();
        let start = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(30));
        // More rings than expectations leave nothing outstanding, not a wrap.
        bell.ring();
        assert!(!bell.expecting());
    }
}
