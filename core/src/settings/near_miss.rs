//! Warnings for keys that look like a known key misspelled.

use super::*;

/// Character counts of a lower-case key: letters, digits, and one bucket for the rest.
type Histogram = [u8; 37];

fn histogram(s: &str) -> Histogram {
    let mut h = [0u8; 37];
    for b in s.bytes() {
        let i = match b {
            b'a'..=b'z' => (b - b'a') as usize,
            b'0'..=b'9' => 26 + (b - b'0') as usize,
            _ => 36,
        };
        h[i] = h[i].saturating_add(1);
    }
    h
}

/// Each edit changes the counts by at most 2, so this is at most twice the edit distance.
fn histogram_distance(a: &Histogram, b: &Histogram) -> usize {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as usize).sum()
}

/// Misspellings too far from the right key for an edit distance to catch.
pub(super) const CONFUSIONS: &[(&str, &str)] = &[
    ("mksis.logging.emailfrom", keys::EMAIL_FROM),
    ("mksis.smtp.ssl", keys::SSL_ENABLED),
    ("mksis.logging.email.server", keys::SERVER_HOSTNAME),
];

/// Unknown keys that are a near miss of a known one, and unknown `mailgate.*` keys.
pub(super) fn near_miss_warnings(
    props: &Properties,
    known: &[&str],
    confusions: &[(&str, &str)],
) -> Vec<Warning> {
    const MAX_DISTANCE: usize = 3;
    let known_lower: Vec<(String, Histogram, &str)> = known
        .iter()
        .map(|k| {
            let lower = k.to_ascii_lowercase();
            let shape = histogram(&lower);
            (lower, shape, *k)
        })
        .collect();
    let mut out = Vec::new();
    for key in props.keys() {
        if known.contains(&key) || keys::VENDOR_EMAIL_KEYS.contains(&key) {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let shape = histogram(&lower);
        let best = confusions
            .iter()
            .find(|(wrong, _)| *wrong == lower)
            .map(|(_, right)| (0, *right))
            .or_else(|| {
                known_lower
                    .iter()
                    // Cheap lower bounds first: most of a real file's keys
                    // never reach the quadratic edit distance.
                    .filter(|(l, h, _)| {
                        l.len().abs_diff(lower.len()) <= MAX_DISTANCE
                            && histogram_distance(h, &shape) <= 2 * MAX_DISTANCE
                    })
                    .map(|(l, _, k)| (strsim::levenshtein(&lower, l), *k))
                    .min()
            });
        let origin = props
            .get(key)
            .map(|e| e.origin.to_string())
            .unwrap_or_default();
        match best {
            // Small relative to the key: one edit per ten characters, so
            // `mksis.logging.email.to` is not taken for `...email.from`.
            Some((d, k)) if d <= MAX_DISTANCE && d * 10 <= key.len() => out.push(Warning(format!(
                "unknown property `{}` at {origin}; did you mean `{k}`?",
                cut_short(&key.escape_debug().to_string(), SHOWN_CHARS)
            ))),
            _ if key.starts_with("mailgate.") => out.push(Warning(format!(
                "unknown property `{}` at {origin} is ignored",
                cut_short(&key.escape_debug().to_string(), SHOWN_CHARS)
            ))),
            _ => {}
        }
    }
    out
}
