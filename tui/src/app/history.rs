//! Values over time for the sparklines: a bounded window, newest last.

use std::collections::VecDeque;

/// Samples kept: two minutes at one a second, wider than any sparkline at 80 columns.
pub const KEEP: usize = 120;

/// A window of samples; `None` is a moment without a value (no searches in that second).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    values: VecDeque<Option<f64>>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`KEEP`].
    pub fn push(&mut self, value: Option<f64>) {
        if self.values.len() == KEEP {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    /// The newest sample that has a value.
    pub fn last(&self) -> Option<f64> {
        self.values.iter().rev().find_map(|v| *v)
    }

    /// The largest value in the window.
    pub fn max(&self) -> Option<f64> {
        self.values.iter().flatten().copied().reduce(f64::max)
    }

    /// The newest `n` samples, oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = Option<f64>> + '_ {
        self.values
            .iter()
            .skip(self.values.len().saturating_sub(n))
            .copied()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_window() {
        let mut h = History::default();
        for i in 0..(KEEP + 10) {
            h.push(Some(i as f64));
        }
        h.push(None);
        assert_eq!(h.len(), KEEP);
        assert_eq!(h.last(), Some((KEEP + 9) as f64));
        assert_eq!(h.max(), Some((KEEP + 9) as f64));
        let tail: Vec<_> = h.tail(2).collect();
        assert_eq!(tail, vec![Some((KEEP + 9) as f64), None]);
    }
}
