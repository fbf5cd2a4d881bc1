//! Test inputs shared by the unit tests of several modules (compiled only for `cargo test`).

/// `n` pseudo-random [lon, lat] pairs, uniform on the sphere, from a small deterministic
/// generator (so the tests need no dependency).
pub(crate) fn random_points(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut v = Vec::with_capacity(2 * n + 10); // room for the edge points
    for _ in 0..n {
        v.push(360.0 * next() - 180.0);
        v.push((2.0 * next() - 1.0).asin().to_degrees());
    }
    v
}

/// [`random_points`] followed by the places where SH code breaks: both poles, the antimeridian
/// from both sides and the equator (5 more points).
pub(crate) fn random_and_edge_points(n: usize, seed: u64) -> Vec<f64> {
    let mut v = random_points(n, seed);
    v.extend_from_slice(&[0.0, 90.0, 10.0, -90.0, 180.0, 0.0, -180.0, 12.5, 0.0, 0.0]);
    v
}
