//! The pod's capacity model as pure arithmetic: how running tasks share the CPU, when a queued task may start, and a
//! forecast of when queued work will start and finish.
//!
//! Tasks share the CPU max-min fairly (processor sharing with caps): no task gets more than it asks for, and the
//! capacity left is split evenly among the rest, so an overloaded pod stretches every task instead of finishing early.

/// Above this fraction of a core, two shares are the same (avoids float dust in the comparisons).
const EPSILON: f64 = 1e-9;

/// The limits a task must fit to start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPU capacity of the pod, in cores.
    pub capacity_cores: f64,
    /// Running tasks may ask for up to this multiple of the capacity; past it, work waits in the queue.
    pub overcommit: f64,
    pub max_tasks: u32,
    pub budget_bytes: u64,
}

/// What a running or queued task needs: its CPU demand (cores), CPU work left (core-seconds) and memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub cores: f64,
    pub work: f64,
    pub memory_bytes: u64,
    /// Its memory stays held after it finishes (`retain=true`), until a cleanup.
    pub retains: bool,
}

/// What a `/process` task asks of its pod: intensity N is N/10 of a core (at most a whole one) for its duration.
pub fn task_demand(cpu_intensity: u8, seconds: f64, memory_bytes: u64) -> Demand {
    let cores = f64::from(cpu_intensity.min(10)) / 10.0;
    Demand { cores, work: cores * seconds, memory_bytes, retains: false }
}

/// The share level of max-min fairness: each task runs at `min(its demand, level)`. Infinite when all demands fit.
pub fn share_level(demands: impl IntoIterator<Item = f64>, capacity_cores: f64) -> f64 {
    let mut sorted: Vec<f64> = demands.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let mut left = capacity_cores.max(0.0);
    let count = sorted.len();
    for (index, &demand) in sorted.iter().enumerate() {
        let sharing = (count - index) as f64;
        if demand * sharing > left + EPSILON {
            return left / sharing;
        }
        left -= demand;
    }
    f64::INFINITY
}

/// The rate one task runs at under `level`.
pub fn rate(demand_cores: f64, level: f64) -> f64 {
    demand_cores.min(level)
}

/// The start rule: a free slot, the memory fits the budget, and the CPU asked for stays within `overcommit` times the
/// capacity (a pod with nothing running always starts its next task, whatever it asks for).
pub fn can_start(limits: &Limits, running: u32, demand_cores: f64, reserved_bytes: u64, task: &Demand) -> bool {
    running < limits.max_tasks
        && reserved_bytes.saturating_add(task.memory_bytes) <= limits.budget_bytes
        && (running == 0 || demand_cores + task.cores <= limits.overcommit * limits.capacity_cores + EPSILON)
}

/// When a queued task starts and finishes, in seconds from now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    pub start_in: f64,
    pub finish_in: f64,
}

/// Plays the schedule forward (FIFO starts, fair sharing, memory released at the end unless the task retains it) until
/// queued task `target` finishes. `retained_bytes` stays held throughout. `None` if the target could never start: it
/// does not fit, or what runs and waits before it retains too much (only a cleanup, which nothing forecasts, frees it).
pub fn forecast(
    limits: &Limits,
    mut retained_bytes: u64,
    running: &[Demand],
    queued: &[Demand],
    target: usize,
) -> Option<Forecast> {
    let mut active: Vec<(usize, Demand)> = running.iter().map(|&d| (usize::MAX, d)).collect();
    let mut next = 0;
    let mut now = 0.0;
    let mut start_in = None;
    loop {
        while next <= target && next < queued.len() {
            let reserved = retained_bytes + active.iter().map(|(_, d)| d.memory_bytes).sum::<u64>();
            let cores: f64 = active.iter().map(|(_, d)| d.cores).sum();
            if !can_start(limits, active.len() as u32, cores, reserved, &queued[next]) {
                break;
            }
            if next == target {
                start_in = Some(now);
            }
            active.push((next, queued[next]));
            next += 1;
        }
        if active.is_empty() {
            return None;
        }
        let level = share_level(active.iter().map(|(_, d)| d.cores), limits.capacity_cores);
        let step = active.iter().map(|(_, d)| d.work / rate(d.cores, level).max(EPSILON)).fold(f64::INFINITY, f64::min);
        now += step;
        let mut target_done = false;
        active.retain_mut(|(index, demand)| {
            demand.work -= step * rate(demand.cores, level);
            let done = demand.work <= EPSILON;
            target_done |= done && *index == target;
            if done && demand.retains {
                retained_bytes += demand.memory_bytes;
            }
            !done
        });
        if target_done {
            return start_in.map(|start_in| Forecast { start_in, finish_in: now });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn limits(capacity_cores: f64, max_tasks: u32, budget_mib: u64) -> Limits {
        Limits { capacity_cores, overcommit: 2.0, max_tasks, budget_bytes: budget_mib * MIB }
    }

    fn task(cores: f64, seconds: f64, memory_mib: u64) -> Demand {
        Demand { cores, work: cores * seconds, memory_bytes: memory_mib * MIB, retains: false }
    }

    #[test]
    fn share_level_is_max_min_fair() {
        // (demands, capacity, expected level)
        let cases: &[(&[f64], f64, f64)] = &[
            (&[], 1.0, f64::INFINITY),
            (&[0.5], 1.0, f64::INFINITY),
            (&[0.5, 0.5], 1.0, f64::INFINITY),
            (&[1.0, 1.0], 1.0, 0.5),
            (&[0.2, 1.0, 1.0], 1.0, 0.4),
            (&[0.9, 0.9, 0.9], 2.0, 2.0 / 3.0),
            (&[0.1, 0.1, 1.0], 1.0, 0.8),
            (&[1.0], 0.5, 0.5),
        ];
        for &(demands, capacity, expected) in cases {
            let level = share_level(demands.iter().copied(), capacity);
            assert!(
                (level == expected) || (level - expected).abs() < 1e-9,
                "{demands:?} on {capacity} cores: level {level}, expected {expected}"
            );
            let used: f64 = demands.iter().map(|&d| rate(d, level)).sum();
            assert!(used <= capacity + 1e-9, "{demands:?}: {used} cores used of {capacity}");
        }
    }

    #[test]
    fn start_rule_checks_slots_memory_and_overcommit() {
        let l = limits(1.0, 3, 384);
        let heavy = task(0.9, 20.0, 150);
        // (running, cores asked, reserved MiB, can start)
        let cases = [
            (0, 0.0, 0, true),
            (1, 0.9, 150, true),
            (2, 1.8, 300, false), // 450 MiB > 384
            (2, 1.0, 100, true),  // 1.9 cores <= 2 x 1
            (2, 1.2, 100, false), // 2.1 cores > 2 x 1
            (3, 0.3, 0, false),   // no slot
            (0, 0.0, 300, false), // retained memory leaves no room
        ];
        for (running, cores, reserved_mib, expected) in cases {
            assert_eq!(
                can_start(&l, running, cores, reserved_mib * MIB, &heavy),
                expected,
                "running {running}, {cores} cores, {reserved_mib} MiB"
            );
        }
        // A task asking for more than the whole pod still runs alone.
        assert!(can_start(&limits(0.5, 3, 384), 0, 0.0, 0, &task(1.0, 1.0, 0)));
    }

    #[test]
    fn forecast_plays_fair_sharing_forward() {
        // Two full-core tasks on one core: each runs at half speed, so the queued one starts when a slot frees.
        let l = limits(1.0, 2, 1024);
        let running = [task(1.0, 4.0, 0), task(1.0, 4.0, 0)];
        let queued = [task(1.0, 4.0, 0)];
        let f = forecast(&l, 0, &running, &queued, 0).expect("fits");
        assert!((f.start_in - 8.0).abs() < 1e-6, "{f:?}");
        assert!((f.finish_in - 12.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn forecast_waits_for_memory_and_fifo_order() {
        // heavy on one pod: 384 MiB holds two 150 MiB tasks; 0.9 + 0.9 cores on 1 core stretches each to 36 s.
        let l = limits(1.0, 64, 384);
        let heavy = task(0.9, 20.0, 150);
        let running = [heavy, heavy];
        let queued = [heavy, heavy, heavy];
        let first = forecast(&l, 0, &running, &queued, 0).expect("fits");
        assert!((first.start_in - 36.0).abs() < 1e-6, "{first:?}");
        let third = forecast(&l, 0, &running, &queued, 2).expect("fits");
        assert!((third.start_in - 72.0).abs() < 1e-6, "{third:?}");
        assert!((third.finish_in - 92.0).abs() < 1e-6, "alone at last, it runs at its own pace: {third:?}");
    }

    #[test]
    fn forecast_is_none_when_the_task_never_fits() {
        let l = limits(1.0, 4, 100);
        assert_eq!(forecast(&l, 0, &[], &[task(0.5, 1.0, 200)], 0), None);
        assert_eq!(forecast(&l, 60 * MIB, &[], &[task(0.5, 1.0, 50)], 0), None);
    }

    #[test]
    fn forecast_keeps_what_a_retaining_task_holds_after_it_finishes() {
        // One slot, 100 MiB: a 60 MiB task that retains leaves 40 MiB for ever after, running or queued ahead.
        let l = limits(1.0, 1, 100);
        let keeper = Demand { retains: true, ..task(0.1, 2.0, 60) };
        let after = task(0.1, 1.0, 60);
        let small = task(0.1, 1.0, 30);
        // (running, queued, target, starts at)
        type Case<'a> = (&'a [Demand], &'a [Demand], usize, Option<f64>);
        let cases: [Case; 5] = [
            (&[keeper], &[after], 0, None),
            (&[], &[keeper, after], 1, None),
            (&[keeper], &[small], 0, Some(2.0)),
            (&[], &[keeper, small, after], 1, Some(2.0)),
            (&[task(0.1, 2.0, 60)], &[after], 0, Some(2.0)),
        ];
        for (running, queued, target, starts_at) in cases {
            let got = forecast(&l, 0, running, queued, target).map(|f| f.start_in);
            assert!(
                match (got, starts_at) {
                    (Some(got), Some(expected)) => (got - expected).abs() < 1e-6,
                    (got, expected) => got.is_none() && expected.is_none(),
                },
                "running {running:?}, queued {queued:?}, target {target}: starts {got:?}, expected {starts_at:?}"
            );
        }
    }
}
