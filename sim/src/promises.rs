//! The load-generator README's trajectory tables, read: the single statement of what each profile does to the
//! development overlay on a node, which the closed loop and the simulator both hold runs to.

/// The README, from the workspace root.
pub const README: &str = "kubernetes-manifests/components/load-generator/README.md";

/// The README's tables: the development overlay on an 8-core and on a 4-core node, and development-memory's.
pub const SHARED: &str = "## Expected trajectories (development overlay, 8-core node)";
pub const SHARED_ON_4: &str = "## Expected trajectories (development overlay, 4-core node)";
pub const MEMORY: &str = "## With each pod's own backlog (development-memory, 8-core node)";

/// The allocatable cores of the node a table's heading names ("..., 4-core node)").
pub fn node_cores(heading: &str) -> u32 {
    let before = heading.split("-core node").next().expect("a heading");
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no N-core node in {heading}"))
}

/// One row of the README's trajectory table.
#[derive(Debug, PartialEq)]
pub struct Promise {
    pub profile: String,
    pub peak_low: u32,
    pub peak_high: u32,
    /// HPA seconds from the first request by which replicas reach `peak_low`.
    pub low_by: f64,
    pub drivers: Vec<String>,
    /// HPA seconds from the end of the load.
    pub back_at_min_by: f64,
    pub time_scale: f64,
    /// Most seconds an async task may take from acceptance to finish at the 95th percentile; None for sync profiles.
    pub sojourn_p95_by: Option<f64>,
    /// When the peak is the ScaledObject's maximum: how long the first stretch there lasts, and when it ends after
    /// the load's end (HPA seconds, each a range). None for a profile that should stay below it.
    pub at_maximum: Option<AtMaximum>,
}

#[derive(Debug, PartialEq)]
pub struct AtMaximum {
    pub held: (f64, f64),
    pub leaves_after_load: (f64, f64),
}

/// A table cell's range of times ("2 to 5 min", "-1 to 3 min") in seconds.
fn range(cell: &str) -> (f64, f64) {
    let (low, rest) = cell.split_once(" to ").unwrap_or_else(|| panic!("LOW to HIGH UNIT: {cell}"));
    let (high, unit) = rest.split_once(' ').unwrap_or_else(|| panic!("a range with its unit: {cell}"));
    (seconds(&format!("{low} {unit}")), seconds(&format!("{high} {unit}")))
}

/// "held 2 to 5 min, leaves 5 to 8 min after the load", or "n/a".
fn at_maximum(cell: &str) -> Option<AtMaximum> {
    if cell == "n/a" {
        return None;
    }
    let (held, leaves) = cell.split_once(", leaves ").unwrap_or_else(|| panic!("held ..., leaves ...: {cell}"));
    let held = held.strip_prefix("held ").unwrap_or_else(|| panic!("held ...: {cell}"));
    let leaves = leaves.strip_suffix(" after the load").unwrap_or_else(|| panic!("... after the load: {cell}"));
    Some(AtMaximum { held: range(held), leaves_after_load: range(leaves) })
}

/// A table cell's time ("8 min", "645 s") in seconds.
fn seconds(cell: &str) -> f64 {
    let (number, unit) = cell.split_once(' ').unwrap_or_else(|| panic!("a time with its unit: {cell}"));
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("{cell}"));
    match unit {
        "min" => number * 60.0,
        "s" => number,
        _ => panic!("{cell}: min or s"),
    }
}

/// The trajectory table under `heading` of the load-generator README (`readme`, its text): the single statement of
/// what each profile does.
pub fn promises(readme: &str, heading: &str) -> Vec<Promise> {
    let rows: Vec<Vec<String>> = readme
        .lines()
        .skip_while(|l| *l != heading)
        .skip_while(|l| !l.starts_with("| profile |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect())
        .collect();
    rows.iter()
        .map(|cells| {
            let (low, high) = cells[2].split_once('-').unwrap_or((&cells[2], &cells[2]));
            Promise {
                profile: cells[0].clone(),
                peak_low: low.trim().parse().expect("peak low"),
                peak_high: high.trim().parse().expect("peak high"),
                low_by: seconds(&cells[3]),
                drivers: cells[4].split(" or ").map(|d| d.trim().to_owned()).collect(),
                back_at_min_by: seconds(&cells[5]),
                time_scale: cells[6].parse().expect("time scale"),
                sojourn_p95_by: cells[7].strip_suffix(" s").map(|n| n.parse().expect("sojourn seconds")),
                at_maximum: at_maximum(&cells[8]),
            }
        })
        .collect()
}
