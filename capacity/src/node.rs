//! One node's cores shared by its pods as the kernel's CFS shares them between cgroups: each pod capped at what it
//! wants (at most its CPU limit), the cores split by weight (`cpu.shares`, proportional to the CPU request) among the
//! rest. The node's other pods are one claim that uses what they request.

/// What one pod asks of the node: the cores its threads could use now (at most its limit) and its CFS weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    pub wants: f64,
    pub weight: f64,
}

/// CFS over cgroups: each claim gets at most what it wants, and the cores are split by weight among the rest
/// (weighted max-min: the level `l` at which `sum(min(wants, l * weight)) == cores`). Everyone gets what they want when
/// it all fits.
pub fn cfs_shares(cores: f64, claims: &[Claim]) -> Vec<f64> {
    let wanted: f64 = claims.iter().map(|c| c.wants).sum();
    if wanted <= cores {
        return claims.iter().map(|c| c.wants).collect();
    }
    // Claims satisfied in order of wants per weight; the rest share what is left by weight.
    let mut order: Vec<usize> = (0..claims.len()).collect();
    let per_weight = |c: &Claim| if c.weight > 0.0 { c.wants / c.weight } else { f64::INFINITY };
    order.sort_by(|&a, &b| per_weight(&claims[a]).total_cmp(&per_weight(&claims[b])));
    let (mut left, mut weight_left) = (cores, claims.iter().map(|c| c.weight).sum::<f64>());
    let mut level = f64::INFINITY;
    for &i in &order {
        let claim = &claims[i];
        if weight_left <= 0.0 {
            break;
        }
        let fair = left / weight_left;
        if per_weight(claim) > fair {
            level = fair;
            break;
        }
        left -= claim.wants;
        weight_left -= claim.weight;
    }
    claims.iter().map(|c| c.wants.min(level * c.weight)).collect()
}

/// One pod on the node: the cores it wants now, its CPU request and limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnNode {
    pub demand: f64,
    pub request: f64,
    pub limit: f64,
}

/// Each pod's share of a node of `cores` whose other pods use `others`: what CFS gives it, or, for a pod that wants
/// nothing now, what it would get the moment it does (its limit, at most the node).
pub fn pod_shares(cores: f64, others: f64, pods: &[OnNode]) -> Vec<f64> {
    // A container without a request still has the kernel's minimum weight (2 of 1024 shares per core).
    let weight = |request: f64| request.max(2.0 / 1024.0);
    let mut claims = vec![Claim { wants: others, weight: weight(others) }];
    claims.extend(pods.iter().map(|p| Claim { wants: p.demand.min(p.limit), weight: weight(p.request) }));
    let shares = cfs_shares(cores, &claims);
    pods.iter().zip(&shares[1..]).map(|(pod, &share)| if share > 0.0 { share } else { pod.limit.min(cores) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(wants: f64, weight: f64) -> Claim {
        Claim { wants, weight }
    }

    /// Cases in the shape of the kernel's CFS between cgroups of `cpu.shares` proportional to the request.
    #[test]
    fn the_node_shares_its_cores_by_weight_up_to_what_each_wants() {
        let cases: &[(&str, f64, Vec<Claim>, Vec<f64>)] = &[
            ("everything fits", 4.0, vec![claim(1.0, 0.1), claim(0.5, 0.1), claim(1.2, 1.2)], vec![1.0, 0.5, 1.2]),
            ("equal weights split evenly", 2.0, vec![claim(1.0, 0.1); 4], vec![0.5; 4]),
            (
                "the small asker keeps what it wants",
                2.0,
                vec![claim(0.2, 0.1), claim(1.0, 0.1), claim(1.0, 0.1)],
                vec![0.2, 0.9, 0.9],
            ),
            ("by weight", 3.0, vec![claim(3.0, 2.0), claim(3.0, 1.0)], vec![2.0, 1.0]),
            (
                "weight left over goes on",
                4.0,
                vec![claim(0.5, 2.0), claim(4.0, 1.0), claim(4.0, 1.0)],
                vec![0.5, 1.75, 1.75],
            ),
            ("nobody wants anything", 4.0, vec![claim(0.0, 0.1), claim(0.0, 1.0)], vec![0.0, 0.0]),
        ];
        for (name, cores, claims, expected) in cases {
            let shares = cfs_shares(*cores, claims);
            let close = shares.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9);
            assert!(close, "{name}: {shares:?}, expected {expected:?}");
            let given: f64 = shares.iter().sum();
            assert!(given <= cores + 1e-9, "{name}: {given} cores given of {cores}");
        }
    }

    #[test]
    fn an_idle_pod_is_told_its_limit_and_busy_ones_split_what_the_others_leave() {
        let pod = |demand: f64| OnNode { demand, request: 1.0, limit: 1.0 };
        // 4 cores, 1.62 requested by the node's other pods: they and three busy replicas (each capped at its 1-core
        // limit) all want a core per unit of weight, so all get 4 / 4.62 of it; the idle one hears its limit.
        let shares = pod_shares(4.0, 1.62, &[pod(2.0), pod(2.0), pod(2.0), pod(0.0)]);
        let expected = [4.0 / 4.62, 4.0 / 4.62, 4.0 / 4.62, 1.0];
        assert!(shares.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9), "{shares:?}");
    }
}
