//! The clearly-better rule: when a misspelt name may be replaced by its nearest
//! known name. Pure.
//!
//! Distance is the Damerau–Levenshtein distance (optimal-string-alignment
//! variant: insertions, deletions, substitutions and adjacent transpositions
//! cost 1), compared case-insensitively. The best candidate is accepted only when
//!
//! * its distance is at most `max(2, len / 3)`, where `len` is the length of the
//!   misspelt name in characters (so short names tolerate 2 edits, `stg_order`
//!   tolerates 3), and
//! * the runner-up is at least 2 edits further away, or there is no runner-up.
//!
//! Anything else is ambiguous (two candidates are about as close) or too far
//! (nothing is close), and the doctor edits nothing.

/// One candidate name and its distance from the misspelt one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    pub name: String,
    pub distance: usize,
}

/// What the rule concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The best candidate is clearly right.
    Clear,
    /// The best two are too close to pick one by name alone.
    Ambiguous,
    /// Even the best candidate is too far to be a typo.
    TooFar,
    /// There was nothing to choose from.
    NoCandidates,
}

/// The candidates ranked nearest first, and the verdict on the nearest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub ranked: Vec<Scored>,
    pub verdict: Verdict,
}

impl Choice {
    /// The best candidate when the rule accepts it.
    pub fn clear(&self) -> Option<&Scored> {
        (self.verdict == Verdict::Clear).then(|| &self.ranked[0])
    }

    /// The nearest candidate, accepted or not.
    pub fn best(&self) -> Option<&Scored> {
        self.ranked.first()
    }

    /// The second nearest candidate.
    pub fn runner_up(&self) -> Option<&Scored> {
        self.ranked.get(1)
    }
}

/// The most edits a name of `len` characters may be away from its fix.
pub fn max_distance(len: usize) -> usize {
    (len / 3).max(2)
}

/// Applies the clearly-better rule to `target` against `candidates`
/// (duplicates are ignored; ties are ranked by name for stable reports).
pub fn choose<'a>(target: &str, candidates: impl IntoIterator<Item = &'a str>) -> Choice {
    let mut ranked: Vec<Scored> = vec![];
    for c in candidates {
        if !ranked.iter().any(|s| s.name == c) {
            ranked.push(Scored {
                name: c.to_string(),
                distance: distance(target, c),
            });
        }
    }
    ranked.sort_by(|a, b| {
        a.distance
            .cmp(&b.distance)
            .then_with(|| a.name.cmp(&b.name))
    });
    let verdict = match ranked.as_slice() {
        [] => Verdict::NoCandidates,
        [best, ..] if best.distance > max_distance(target.chars().count()) => Verdict::TooFar,
        [best, next, ..] if next.distance < best.distance + 2 => Verdict::Ambiguous,
        _ => Verdict::Clear,
    };
    Choice { ranked, verdict }
}

/// Case-insensitive Damerau–Levenshtein distance (optimal string alignment).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// `a` (3), `b` (4) — the candidates for a report.
pub fn describe(ranked: &[Scored], max: usize) -> String {
    let shown: Vec<String> = ranked
        .iter()
        .take(max)
        .map(|s| format!("`{}` ({})", s.name, s.distance))
        .collect();
    if shown.is_empty() {
        "none".into()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_single_edits_and_transpositions() {
        for (a, b, d) in [
            ("stg_order", "stg_orders", 1),
            ("stg_order", "raw_orders", 4),
            ("int_orders", "stg_orders", 3),
            ("int_orders", "raw_orders", 3),
            ("int_orders", "orders", 4),
            ("ordr_date", "order_date", 1),
            ("ORDR_DATE", "order_date", 1),
            ("cetns", "cents", 1),
            ("", "abc", 3),
        ] {
            assert_eq!(distance(a, b), d, "{a} vs {b}");
        }
    }

    #[test]
    fn only_a_clearly_better_candidate_is_accepted() {
        let check = |target: &str, cands: &[&str], verdict: Verdict, best: &str| {
            let c = choose(target, cands.iter().copied());
            assert_eq!(c.verdict, verdict, "{target} in {cands:?}: {c:?}");
            assert_eq!(c.best().map(|s| s.name.as_str()).unwrap_or(""), best);
        };
        let nodes = [
            "stg_customers",
            "stg_orders",
            "stg_payments",
            "customers",
            "raw_customers",
            "raw_orders",
            "raw_payments",
        ];
        check("stg_order", &nodes, Verdict::Clear, "stg_orders");
        check("int_orders", &nodes, Verdict::Ambiguous, "raw_orders");
        check("zzz", &nodes, Verdict::TooFar, "customers");
        check("x", &[], Verdict::NoCandidates, "");
        // A runner-up only one edit worse is too close.
        check("ordr", &["order", "ordre2"], Verdict::Ambiguous, "order");
        check("ordr", &["order", "ord_x_y"], Verdict::Clear, "order");
    }
}
