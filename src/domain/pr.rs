//! Where a pull request selfheal opened stands: what the forge answers, the
//! store keeps, the thread is told and `/selfheal history` shows.

/// A pull request's state on the forge. Merged and closed are final:
/// selfheal stops asking once it has seen either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrState {
    /// Still waiting for review.
    Open,
    /// A person merged it; `by` is their forge login, when the forge says.
    Merged { by: Option<String> },
    /// Closed without merging.
    Closed,
}

impl PrState {
    /// The text the store keeps (`open`, `merged`, `closed`); who merged is
    /// kept beside it.
    pub fn as_str(&self) -> &'static str {
        match self {
            PrState::Open => "open",
            PrState::Merged { .. } => "merged",
            PrState::Closed => "closed",
        }
    }

    /// The state a stored text names, with who merged; None for a text this
    /// version does not know.
    pub fn parse(state: &str, merged_by: Option<String>) -> Option<PrState> {
        Some(match state {
            "open" => PrState::Open,
            "merged" => PrState::Merged { by: merged_by },
            "closed" => PrState::Closed,
            _ => return None,
        })
    }

    /// Merged or closed: nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        !matches!(self, PrState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_stored_text() {
        let cases = [
            (PrState::Open, None),
            (
                PrState::Merged {
                    by: Some("octocat".into()),
                },
                Some("octocat"),
            ),
            (PrState::Merged { by: None }, None),
            (PrState::Closed, None),
        ];
        for (state, by) in cases {
            let back = PrState::parse(state.as_str(), by.map(str::to_string));
            assert_eq!(back.as_ref(), Some(&state));
        }
        assert_eq!(PrState::parse("reopened", None), None);
        assert!(!PrState::Open.is_final() && PrState::Closed.is_final());
    }
}
