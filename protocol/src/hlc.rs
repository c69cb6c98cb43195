//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a counter in the low 16.
//!
//! Timestamps from one clock strictly increase even when the wall clock stalls or steps back,
//! and a clock that observes a remote timestamp moves past it, so causally later writes win
//! last-writer-wins merges.

/// A hybrid logical clock timestamp. Ordered as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(pub u64);

impl Hlc {
    /// Bits of the logical counter.
    pub const COUNTER_BITS: u32 = 16;

    /// The timestamp for a wall-clock time and counter.
    pub fn new(millis: u64, counter: u16) -> Self {
        Self((millis << Self::COUNTER_BITS) | u64::from(counter))
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0 >> Self::COUNTER_BITS
    }

    /// The logical counter.
    pub fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

/// A clock that hands out strictly increasing [`Hlc`] timestamps.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A timestamp later than every one handed out or observed, given the wall time now.
    pub fn tick(&mut self, wall_millis: u64) -> Hlc {
        let wall = Hlc::new(wall_millis, 0);
        self.last = if wall > self.last {
            wall
        } else {
            Hlc(self.last.0 + 1)
        };
        self.last
    }

    /// Moves the clock past a timestamp seen from another writer.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_increase_when_the_wall_clock_steps_back() {
        let mut clock = HlcClock::default();
        let a = clock.tick(1_000);
        let b = clock.tick(900);
        let c = clock.tick(1_000);
        assert!(a < b && b < c);
        assert_eq!(a.millis(), 1_000);
        assert_eq!(b.counter(), 1);
        clock.observe(Hlc::new(5_000, 7));
        assert!(clock.tick(1_000) > Hlc::new(5_000, 7));
    }
}
