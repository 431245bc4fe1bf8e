//! Priority within a quota group: which drain gets the group's quota first when it
//! returns (docs/rate-limits.md, "Priority within a group").
//!
//! A drain's rank is, in this order: being in burst (a drain in burst goes before every
//! drain that is not, whatever the priorities), its `priority` (higher first), then its
//! name (alphabetical) as a stable tiebreak. Only the first two make a drain yield: two
//! drains of equal burst state and priority share the group as they always did, and the
//! name only orders them where an order must be chosen (the plan of `supervise`). The
//! claim (`db::items`) applies the same rule in SQL.

use std::cmp::Ordering;

/// Where a drain stands in its quota group at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank<'a> {
    pub is_bursting: bool,
    pub priority: i32,
    pub name: &'a str,
}

impl Rank<'_> {
    /// This drain goes first and the other yields to it: in burst and the other not, or
    /// the same burst state and a higher priority. Never by name alone.
    pub fn outranks(&self, other: &Rank) -> bool {
        (self.is_bursting, self.priority) > (other.is_bursting, other.priority)
    }

    /// Why this drain goes before `other`, for a decision's reason.
    pub fn describe_over(&self, other: &Rank) -> String {
        if self.is_bursting && !other.is_bursting {
            format!("drain {} is in burst", self.name)
        } else {
            format!("drain {} has priority {} (this drain {})", self.name, self.priority, other.priority)
        }
    }
}

impl Ord for Rank<'_> {
    /// Greater goes first: burst, then priority, then the name that sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.is_bursting, self.priority)
            .cmp(&(other.is_bursting, other.priority))
            .then_with(|| other.name.cmp(self.name))
    }
}

impl PartialOrd for Rank<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(name: &str, is_bursting: bool, priority: i32) -> Rank<'_> {
        Rank { is_bursting, priority, name }
    }

    #[test]
    fn burst_beats_priority_which_beats_the_name() {
        let cases = [
            // (first, second, first goes first, first outranks second)
            (rank("b", true, 0), rank("a", false, 100), true, true),
            (rank("b", false, 5), rank("a", false, 0), true, true),
            (rank("b", true, 5), rank("a", true, 0), true, true),
            (rank("a", false, -3), rank("b", false, -4), true, true),
            // Equal burst state and priority: the name orders, but nobody yields.
            (rank("a", false, 0), rank("b", false, 0), true, false),
            (rank("a", true, 2), rank("b", true, 2), true, false),
            (rank("b", false, 0), rank("a", false, 0), false, false),
            (rank("a", false, 0), rank("b", true, 0), false, false),
        ];
        for (first, second, goes_first, outranks) in cases {
            assert_eq!(first > second, goes_first, "{first:?} vs {second:?}");
            assert_eq!(first.outranks(&second), outranks, "{first:?} vs {second:?}");
            assert!(!(second.outranks(&first) && first.outranks(&second)));
        }
    }

    #[test]
    fn sorting_by_rank_is_total_and_stable() {
        let mut ranks = [rank("c", false, 0), rank("a", false, 0), rank("z", true, -5), rank("b", false, 7)];
        ranks.sort_by(|x, y| y.cmp(x));
        let names: Vec<&str> = ranks.iter().map(|r| r.name).collect();
        assert_eq!(names, ["z", "b", "a", "c"]);
    }

    #[test]
    fn the_reason_says_why() {
        assert_eq!(rank("hi", true, 0).describe_over(&rank("lo", false, 9)), "drain hi is in burst");
        assert_eq!(
            rank("hi", false, 5).describe_over(&rank("lo", false, 0)),
            "drain hi has priority 5 (this drain 0)"
        );
    }
}
