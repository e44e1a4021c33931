//! The idle connections of one upstream, for either HTTP/1.1 client: most recently used last
//! (taken first), none kept past `upstream.pool_idle_timeout`, at most
//! `upstream.pool_max_idle_per_host`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Idle connections of type `C`, each with when it went idle.
pub struct IdleConns<C> {
    timeout: Duration,
    max: usize,
    idle: Mutex<VecDeque<(Box<C>, Instant)>>,
}

impl<C> IdleConns<C> {
    pub fn new(timeout: Duration, max: usize) -> Self {
        IdleConns {
            timeout,
            max,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(Box<C>, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The most recently used connection that is not too old and that `usable` accepts; the
    /// ones passed over are dropped (outside the lock).
    pub fn checkout(&self, usable: impl Fn(&C) -> bool) -> Option<Box<C>> {
        let now = Instant::now();
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.lock();
            loop {
                match idle.pop_back() {
                    None => break None,
                    Some((conn, since)) if now.duration_since(since) >= self.timeout => {
                        // The newest is too old, so all are.
                        stale.push(conn);
                        stale.extend(idle.drain(..).map(|(c, _)| c));
                    }
                    Some((conn, _)) if !usable(&conn) => stale.push(conn),
                    Some((conn, _)) => break Some(conn),
                }
            }
        };
        drop(stale);
        found
    }

    /// Keeps `conn` for another request (the oldest goes when the pool is full).
    pub fn checkin(&self, conn: Box<C>) {
        if self.max == 0 {
            return;
        }
        let evicted = {
            let mut idle = self.lock();
            let evicted = (idle.len() >= self.max).then(|| idle.pop_front());
            idle.push_back((conn, Instant::now()));
            evicted
        };
        drop(evicted);
    }

    /// Drops the connections past the idle timeout and those `alive` says are over.
    pub fn reap(&self, mut alive: impl FnMut(&mut C) -> bool) {
        let now = Instant::now();
        let dropped: Vec<_> = {
            let mut idle = self.lock();
            let keep = idle
                .iter()
                .position(|(_, since)| now.duration_since(*since) < self.timeout)
                .unwrap_or(idle.len());
            let mut dropped: Vec<_> = idle.drain(..keep).collect();
            let mut i = 0;
            while i < idle.len() {
                if alive(&mut idle[i].0) {
                    i += 1;
                } else if let Some(over) = idle.remove(i) {
                    dropped.push(over);
                }
            }
            dropped
        };
        drop(dropped);
    }
}
