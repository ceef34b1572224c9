//! Reading model files the way dbt and the warehouse do, to place a fault
//! where it bites, and misspelling a name so that it has one right answer.
//! Pure.

use crate::doctor::choose;

/// `text` with everything but plain SQL code blanked out (Jinja, SQL
/// comments, string literals), byte for byte, newlines kept: offsets into
/// the mask are offsets into the file.
pub fn sql_code(text: &str) -> String {
    mask(text, |region| region == Region::Sql)
}

/// `text` with everything but the inside of Jinja expressions and statements
/// (`{{ }}`, `{% %}`) blanked out. Jinja inside SQL comments counts: dbt
/// renders it before the warehouse sees the comment.
pub fn jinja_code(text: &str) -> String {
    mask(text, |region| region == Region::Jinja)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Sql,
    Jinja,
    /// Delimiters, comments and string literals.
    Other,
}

fn mask(text: &str, keep: impl Fn(Region) -> bool) -> String {
    let len = text.len();
    let mut region = vec![Region::Sql; len];
    let set = |region: &mut Vec<Region>, from: usize, to: usize, r: Region| {
        for slot in &mut region[from..to.min(len)] {
            *slot = r;
        }
    };
    // The end (exclusive) of the first `pat` at or after `from`, or the end of the text.
    let after =
        |from: usize, pat: &str| text[from..].find(pat).map_or(len, |p| from + p + pat.len());
    let mut in_line_comment = false;
    let mut i = 0;
    while i < len {
        let rest = &text[i..];
        if rest.starts_with("{#") {
            let end = after(i + 2, "#}");
            set(&mut region, i, end, Region::Other);
            i = end;
        } else if rest.starts_with("{{") || rest.starts_with("{%") {
            // Jinja is rendered wherever it stands, even inside a SQL comment.
            let end = after(i + 2, if rest.starts_with("{{") { "}}" } else { "%}" });
            set(&mut region, i, end, Region::Jinja);
            set(&mut region, i, i + 2, Region::Other);
            set(
                &mut region,
                end.saturating_sub(2).max(i + 2),
                end,
                Region::Other,
            );
            i = end;
        } else if in_line_comment {
            in_line_comment = !rest.starts_with('\n');
            region[i] = Region::Other;
            i += rest.chars().next().map_or(1, char::len_utf8);
        } else if rest.starts_with("--") {
            in_line_comment = true;
            set(&mut region, i, i + 2, Region::Other);
            i += 2;
        } else if rest.starts_with("/*") {
            let end = after(i + 2, "*/");
            set(&mut region, i, end, Region::Other);
            i = end;
        } else if rest.starts_with('\'') {
            // A string literal; '' is an escaped quote inside it.
            let mut j = i + 1;
            loop {
                match text[j..].find('\'') {
                    Some(p) if text[j + p + 1..].starts_with('\'') => j += p + 2,
                    Some(p) => break j += p + 1,
                    None => break j = len,
                }
            }
            set(&mut region, i, j, Region::Other);
            i = j;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    text.char_indices()
        .map(|(at, c)| {
            if c == '\n' || keep(region[at]) {
                c.to_string()
            } else {
                " ".repeat(c.len_utf8())
            }
        })
        .collect()
}

/// An identifier and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    pub at: usize,
    pub text: &'a str,
}

/// The identifiers of `masked` (`[A-Za-z_][A-Za-z0-9_]*`), in order.
pub fn words(masked: &str) -> Vec<Word<'_>> {
    let bytes = masked.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            // Part of a number like 1e5, or of a longer token: a word starts clean.
            if start == 0 || !(bytes[start - 1].is_ascii_digit()) {
                out.push(Word {
                    at: start,
                    text: &masked[start..i],
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `name` with two adjacent inner letters swapped, such that the result is
/// no real name and `name` is clearly the nearest real name to it (the
/// doctor's clearly-better rule, which any careful fixer would share).
/// `known` are the names the result must not be confused with.
pub fn misspell<'a>(
    name: &str,
    known: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<String> {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < 4 {
        return None;
    }
    // Inner pairs, from the middle outwards: the most natural slip of the fingers.
    let mid = chars.len() / 2;
    let mut pairs: Vec<usize> = (1..chars.len() - 2).collect();
    pairs.sort_by_key(|&i| (i as isize - mid as isize + 1).abs());
    for i in pairs {
        let (a, b) = (chars[i], chars[i + 1]);
        if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() || a.eq_ignore_ascii_case(&b) {
            continue;
        }
        let mut swapped = chars.clone();
        swapped.swap(i, i + 1);
        let candidate: String = swapped.into_iter().collect();
        let mut names: Vec<&str> = known.clone().into_iter().collect();
        names.push(name);
        let choice = choose::choose(&candidate, names);
        if choice
            .clear()
            .is_some_and(|s| s.name == name && s.distance > 0)
        {
            return Some(candidate);
        }
    }
    None
}

/// The 1-based line of byte offset `at`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// `text` with `len` bytes at `at` replaced by `with`.
pub fn splice(text: &str, at: usize, len: usize, with: &str) -> String {
    format!("{}{}{}", &text[..at], with, &text[at + len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_offsets_and_hide_what_they_should() {
        let text =
            "select a, 'b' as c -- {{ ref('x') }} note\n{# gone #}from {{ ref('t') }} /* d */\n";
        let sql = sql_code(text);
        assert_eq!(sql.len(), text.len());
        assert_eq!(
            sql.split_whitespace().collect::<Vec<_>>(),
            ["select", "a,", "as", "c", "from"]
        );
        let jinja = jinja_code(text);
        assert_eq!(jinja.len(), text.len());
        assert_eq!(
            jinja.split_whitespace().collect::<Vec<_>>(),
            ["ref('x')", "ref('t')"]
        );
    }

    #[test]
    fn quotes_inside_strings_and_jinja_in_strings_are_not_code() {
        let text = "select 'it''s {{ x }}' as y, z from t";
        assert_eq!(
            sql_code(text).split_whitespace().collect::<Vec<_>>(),
            ["select", "as", "y,", "z", "from", "t"]
        );
    }

    #[test]
    fn words_are_identifiers() {
        let found: Vec<&str> = words("sum(o.amount) as total_1, 2e5")
            .iter()
            .map(|w| w.text)
            .collect();
        assert_eq!(found, ["sum", "o", "amount", "as", "total_1"]);
    }

    #[test]
    fn misspellings_swap_inner_letters_and_stay_unambiguous() {
        let nodes = [
            "stg_orders",
            "stg_customers",
            "stg_payments",
            "raw_orders",
            "orders",
            "customers",
        ];
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("stg_orders", &nodes, Some("stg_roders")),
            ("orders", &nodes, Some("oredrs")),
            ("order_date", &["order_id", "status"], Some("ordre_date")),
            // Too short to have two inner letters worth swapping.
            ("id", &[], None),
            ("abc", &[], None),
            // Every swap lands too near another real name.
            ("abcd", &["acbd", "abdc", "bacd"], None),
            // Equal neighbours are never swapped.
            ("alll", &[], None),
        ];
        for (name, known, want) in cases {
            assert_eq!(
                misspell(name, known.iter().copied()).as_deref(),
                *want,
                "{name}"
            );
        }
    }
}
