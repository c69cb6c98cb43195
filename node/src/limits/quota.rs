//! Quotas: how many points and vector bytes a collection, or the collections a token
//! created, may hold. A write that would pass one is refused whole before anything of it is
//! logged; the message names the quota and the config key that raises it.

/// What a collection, or a token's collections, hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live points.
    pub points: u64,
    /// Vector bytes: points × dimension × bytes per component.
    pub bytes: u64,
}

impl Usage {
    /// `self` plus `other`.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            points: self.points.saturating_add(other.points),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// The most a holder may hold (0: unlimited), and the config keys that say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most live points.
    pub max_points: u64,
    /// Most vector bytes.
    pub max_bytes: u64,
    /// The key that raises `max_points`.
    pub points_key: &'static str,
    /// The key that raises `max_bytes`.
    pub bytes_key: &'static str,
    /// Where the keys are set: `in the daemon's config`, or with a command.
    pub set_where: &'static str,
}

impl Quota {
    /// Whether neither limit is on.
    pub fn is_unlimited(&self) -> bool {
        self.max_points == 0 && self.max_bytes == 0
    }

    /// Refuses `adding` to `holder`'s `now` when the sum passes a limit: the message says
    /// which, by how much, and how to raise it. A write that adds nothing to a measure (an
    /// overwrite of the same size) is never refused on it, even over a lowered quota.
    pub fn check(&self, holder: &str, now: Usage, adding: Usage) -> Result<(), String> {
        let after = now.plus(adding);
        for (what, max, have, add, total, key) in [
            (
                "points",
                self.max_points,
                now.points,
                adding.points,
                after.points,
                self.points_key,
            ),
            (
                "vector bytes",
                self.max_bytes,
                now.bytes,
                adding.bytes,
                after.bytes,
                self.bytes_key,
            ),
        ] {
            if max > 0 && add > 0 && total > max {
                return Err(format!(
                    "{holder} holds {have} {what} and this write adds {add}, over its quota of \
                     {max} ({key}); nothing of it was stored: write fewer, delete some, or raise \
                     {key} {}",
                    self.set_where
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a quota lowered below what is held, a write that adds nothing (an overwrite of
    /// the same size) passes; one that adds a point does not.
    #[test]
    fn a_write_adding_nothing_passes_over_a_lowered_quota() {
        let quota = Quota {
            max_points: 0,
            max_bytes: 14,
            points_key: "limits.collection_max_points",
            bytes_key: "limits.collection_max_bytes",
            set_where: "in the daemon's config",
        };
        let now = Usage {
            points: 48,
            bytes: 576,
        };
        quota
            .check("collection \"a\"", now, Usage::default())
            .unwrap();
        let grown = Usage {
            points: 1,
            bytes: 12,
        };
        assert!(quota.check("collection \"a\"", now, grown).is_err());
    }

    #[test]
    fn a_write_up_to_the_quota_passes_and_one_past_it_names_the_key() {
        let quota = Quota {
            max_points: 10,
            max_bytes: 0,
            points_key: "limits.collection_max_points",
            bytes_key: "limits.collection_max_bytes",
            set_where: "in the daemon's config",
        };
        let now = Usage {
            points: 8,
            bytes: 800,
        };
        quota
            .check(
                "collection \"a\"",
                now,
                Usage {
                    points: 2,
                    bytes: 1 << 40,
                },
            )
            .unwrap();
        let refused = quota
            .check(
                "collection \"a\"",
                now,
                Usage {
                    points: 3,
                    bytes: 0,
                },
            )
            .unwrap_err();
        assert!(
            refused.contains("limits.collection_max_points"),
            "{refused}"
        );
        assert!(
            refused.contains("collection \"a\" holds 8 points"),
            "{refused}"
        );
        let bytes = Quota {
            max_points: 0,
            max_bytes: 1000,
            ..quota
        };
        assert!(bytes
            .check(
                "t",
                now,
                Usage {
                    points: 5,
                    bytes: 201
                }
            )
            .unwrap_err()
            .contains("limits.collection_max_bytes"));
        assert!(!bytes.is_unlimited());
    }
}
