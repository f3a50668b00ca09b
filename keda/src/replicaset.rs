//! Which pods a ReplicaSet deletes first when the Deployment scales down (Kubernetes `pkg/controller/
//! controller_utils.go`, `ActivePodsWithRanks.Less`, `LogarithmicScaleDown` on): the rules that can tell the
//! harness's pods apart, which all run on one node with no deletion cost and no restarts.

use std::cmp::Ordering;

/// One pod as the ReplicaSet ranks it; times in the cluster's seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub index: usize,
    /// Bound to a node (no `spec.nodeName` while the scheduler finds no room: Pending).
    pub assigned: bool,
    /// Its container has started (phase Running rather than Pending).
    pub running: bool,
    /// How long it has been ready; `None` while it is not.
    pub ready_for: Option<f64>,
    /// How long ago it was created.
    pub age: f64,
    /// Its UID: breaks ties between times of the same logarithmic rank, a pseudorandom order.
    pub uid: u64,
}

/// `logarithmicRankDiff`'s rank of a duration: floor(log2) of its nanoseconds, -1 for none.
fn rank(seconds: f64) -> i64 {
    let nanos = seconds * 1e9;
    if nanos > 0.0 {
        nanos.log2() as i64
    } else {
        -1
    }
}

/// The shorter time first by logarithmic rank; the same rank by UID.
fn by_rank(x: f64, y: f64, a: u64, b: u64) -> Ordering {
    rank(x).cmp(&rank(y)).then(a.cmp(&b))
}

/// The pod to delete first sorts first.
fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    // 1. Unassigned < assigned; 2. PodPending < PodRunning (false sorts first).
    let phase = a.assigned.cmp(&b.assigned).then(a.running.cmp(&b.running));
    if phase != Ordering::Equal {
        return phase;
    }
    match (a.ready_for, b.ready_for) {
        // 3. Not ready < ready.
        (None, Some(_)) => return Ordering::Less,
        (Some(_), None) => return Ordering::Greater,
        // 6. Ready for less time < more.
        (Some(x), Some(y)) if x != y => return by_rank(x, y, a.uid, b.uid),
        _ => {}
    }
    // 8. Newer < older.
    if a.age != b.age {
        return by_rank(a.age, b.age, a.uid, b.uid);
    }
    Ordering::Equal
}

/// The pods' indexes in the order the ReplicaSet deletes them.
pub fn deletion_order(mut pods: Vec<Candidate>) -> Vec<usize> {
    pods.sort_by(compare);
    pods.into_iter().map(|c| c.index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(index: usize, ready_for: Option<f64>, age: f64, uid: u64) -> Candidate {
        Candidate { index, assigned: true, running: true, ready_for, age, uid }
    }

    fn waiting(index: usize, assigned: bool, age: f64) -> Candidate {
        Candidate { index, assigned, running: false, ready_for: None, age, uid: 0 }
    }

    /// controller_utils.go `ActivePodsWithRanks.Less`, rule by rule. The harness used to stop the highest slot
    /// index, which the first two cases contradict.
    #[test]
    fn active_pods_with_ranks_less_deletes_unready_then_most_recently_ready() {
        let cases: Vec<(&str, Vec<Candidate>, Vec<usize>)> = vec![
            (
                "not ready first, whatever its slot",
                vec![pod(3, None, 40.0, 1), pod(5, Some(100.0), 120.0, 2)],
                vec![3, 5],
            ),
            (
                "ready for less time first (10, 300 and 1000 s: log2 ranks 33, 38 and 39)",
                vec![pod(5, Some(10.0), 2000.0, 1), pod(2, Some(1000.0), 1100.0, 2), pod(7, Some(300.0), 700.0, 3)],
                vec![5, 7, 2],
            ),
            (
                "the same logarithmic rank (100 and 110 s: both 36): by UID",
                vec![pod(1, Some(100.0), 300.0, 9), pod(2, Some(110.0), 300.0, 4)],
                vec![2, 1],
            ),
            (
                "ready at the same time: the newer first",
                vec![pod(1, Some(50.0), 1000.0, 1), pod(2, Some(50.0), 60.0, 2)],
                vec![2, 1],
            ),
            ("both unready: the newer first", vec![pod(0, None, 500.0, 1), pod(4, None, 5.0, 2)], vec![4, 0]),
            (
                "1. unassigned (Pending, no node had room) first, even older than an unready one",
                vec![pod(1, None, 5.0, 1), waiting(2, false, 400.0), pod(3, Some(60.0), 90.0, 2)],
                vec![2, 1, 3],
            ),
            (
                "2. a bound pod whose container has not started (phase Pending) before a running one",
                vec![pod(1, None, 5.0, 1), waiting(4, true, 30.0), waiting(6, false, 1.0)],
                vec![6, 4, 1],
            ),
        ];
        for (case, pods, expected) in cases {
            assert_eq!(deletion_order(pods), expected, "{case}");
        }
        assert_eq!((rank(100.0), rank(110.0), rank(0.0)), (36, 36, -1));
        // 600 and 1000 s share rank 39: within a rank the order is the UIDs', not the times'.
        assert_eq!(deletion_order(vec![pod(1, Some(600.0), 900.0, 7), pod(2, Some(1000.0), 1000.0, 3)]), [2, 1]);
    }
}
