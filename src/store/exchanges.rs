//! What llm agents sent their model and got back (both redacted), one row
//! per request, with its tokens and cost: `selfheal session show` and the
//! cost shown in `/selfheal history`.

use super::db::params;
use anyhow::Result;
use chrono::{DateTime, Utc};

use super::db::all;
use super::{now, Store};

/// One request an llm agent sent and what came back (both redacted).
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The agent's turn: replies received before this request.
    pub turn: u32,
    /// The request body, with only the messages new since the previous
    /// exchange (the earlier ones are in earlier rows).
    pub request: String,
    /// The HTTP status (200, or the final refusal); 0 when no answer came
    /// (the wall clock ran out, or every retry failed).
    pub status: u16,
    /// The response body, or the server's error message.
    pub response: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// USD, when the agent has prices.
    pub cost_usd: Option<f64>,
}

/// A stored [`Exchange`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeRow {
    pub at: DateTime<Utc>,
    pub exchange: Exchange,
}

impl Store {
    /// Stores one request of an llm agent and its answer.
    pub fn add_exchange(&self, session_id: i64, e: &Exchange) -> Result<()> {
        self.with_conn("recording a model exchange", |c| {
            c.execute(
                "INSERT INTO llm_exchanges(session_id, at, turn, request, status, response,
                                           prompt_tokens, completion_tokens, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    session_id,
                    now(),
                    e.turn,
                    e.request,
                    e.status,
                    e.response,
                    e.prompt_tokens.map(|n| n as i64),
                    e.completion_tokens.map(|n| n as i64),
                    e.cost_usd
                ],
            )
        })
        .map(drop)
    }

    /// A session's model exchanges, in order.
    pub fn exchanges(&self, session_id: i64) -> Result<Vec<ExchangeRow>> {
        self.with_conn("loading model exchanges", |c| {
            all(
                c,
                "SELECT at, turn, request, status, response, prompt_tokens, completion_tokens, cost_usd
                 FROM llm_exchanges WHERE session_id = ?1 ORDER BY id",
                params![session_id],
                |r| {
                    Ok(ExchangeRow {
                        at: r.get(0)?,
                        exchange: Exchange {
                            turn: r.get(1)?,
                            request: r.get(2)?,
                            status: r.get(3)?,
                            response: r.get(4)?,
                            prompt_tokens: r.get::<Option<i64>>(5)?.map(|n| n as u64),
                            completion_tokens: r.get::<Option<i64>>(6)?.map(|n| n as u64),
                            cost_usd: r.get(7)?,
                        },
                    })
                },
            )
        })
    }

    /// What a session's model calls cost in USD; None when none was priced.
    pub fn session_cost(&self, session_id: i64) -> Result<Option<f64>> {
        self.with_conn("summing a session's cost", |c| {
            c.query_row(
                "SELECT SUM(cost_usd) FROM llm_exchanges WHERE session_id = ?1",
                params![session_id],
                |r| r.get(0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;

    #[test]
    fn model_exchanges_are_kept_in_order_with_their_cost() {
        for store in crate::store::testing::stores() {
            let Claim::New(id) = store.claim_session("s", "1", "C", "1.0", "a").unwrap() else {
                panic!("a new session")
            };
            assert_eq!(store.session_cost(id).unwrap(), None);
            let e = |turn, cost| Exchange {
                turn,
                request: format!("{{\"turn\":{turn}}}"),
                status: 200,
                response: "{}".into(),
                prompt_tokens: Some(100),
                completion_tokens: None,
                cost_usd: cost,
            };
            store.add_exchange(id, &e(0, Some(0.25))).unwrap();
            store.add_exchange(id, &e(1, None)).unwrap();
            store.add_exchange(id, &e(2, Some(0.5))).unwrap();
            let rows = store.exchanges(id).unwrap();
            assert_eq!(
                rows.iter().map(|r| r.exchange.turn).collect::<Vec<_>>(),
                [0, 1, 2]
            );
            assert_eq!(rows[0].exchange, e(0, Some(0.25)));
            assert_eq!(store.session_cost(id).unwrap(), Some(0.75));
            assert!(store.exchanges(id + 1).unwrap().is_empty());
        }
    }
}
