//! The event lifecycle as a pure state machine: no I/O, no clock.
//!
//! ```text
//! Registered ──(quorum: succeeded)──▶ PendingAccount ──(receipt)──▶ Completed
//!      │
//!      └──(quorum: failed, expired unincluded, or not committed)──▶ Cancelled
//! ```
//!
//! "Not committed": the transfer finalized, but its `reference` does not
//! commit to the event and its payment
//! ([`settlement_commitment`](crate::event::settlement_commitment)), so it
//! settles nothing of this event's and nothing is paid.
//!
//! The event system writes every state through [`next_state`], so a move
//! that is not drawn above can never reach its database; the audit checks
//! histories with [`is_legal`].

use serde::{Deserialize, Serialize};

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// Registered before submission; the on-chain outcome is not known yet.
    Registered,
    /// The transfer succeeded on chain (confirmed by a quorum); the fiat
    /// payment is owed.
    PendingAccount,
    /// The bridge receipted the payment. Final.
    Completed,
    /// The transfer failed on chain, can never be included, or does not
    /// commit to the event. Final.
    Cancelled,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [
        State::Registered,
        State::PendingAccount,
        State::Completed,
        State::Cancelled,
    ];

    /// Whether no move leaves this state.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Cancelled)
    }

    /// The name used in the API and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Registered => "Registered",
            State::PendingAccount => "PendingAccount",
            State::Completed => "Completed",
            State::Cancelled => "Cancelled",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an event moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// A quorum saw the transfer finalized and successful.
    Succeeded,
    /// A quorum saw the transfer finalized with a failed outcome.
    Failed,
    /// A quorum has finalized past `valid_until` without including it.
    Expired,
    /// The bridge's signed receipt for the payment.
    Receipt,
    /// A quorum saw the transfer finalized and successful, but it does not
    /// commit to the event (wire name `notCommitted`): someone else's
    /// transfer, or one committing to another event or instruction.
    NotCommitted,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 5] = [
        Reason::Succeeded,
        Reason::Failed,
        Reason::Expired,
        Reason::Receipt,
        Reason::NotCommitted,
    ];
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal move: {from} cannot move on {reason:?}")]
pub struct IllegalMove {
    /// The current state.
    pub from: State,
    /// The requested cause.
    pub reason: Reason,
}

/// The state `reason` moves `from` to, or why it may not.
pub fn next_state(from: State, reason: Reason) -> Result<State, IllegalMove> {
    match (from, reason) {
        (State::Registered, Reason::Succeeded) => Ok(State::PendingAccount),
        (State::Registered, Reason::Failed | Reason::Expired | Reason::NotCommitted) => {
            Ok(State::Cancelled)
        }
        (State::PendingAccount, Reason::Receipt) => Ok(State::Completed),
        _ => Err(IllegalMove { from, reason }),
    }
}

/// Whether `from → to` is one of the drawn arrows (whatever the reason).
pub fn is_legal(from: State, to: State) -> bool {
    Reason::ALL
        .into_iter()
        .any(|reason| next_state(from, reason) == Ok(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reason_pair() {
        let legal = [
            (State::Registered, Reason::Succeeded, State::PendingAccount),
            (State::Registered, Reason::Failed, State::Cancelled),
            (State::Registered, Reason::Expired, State::Cancelled),
            (State::Registered, Reason::NotCommitted, State::Cancelled),
            (State::PendingAccount, Reason::Receipt, State::Completed),
        ];
        for from in State::ALL {
            for reason in Reason::ALL {
                let expected = legal
                    .iter()
                    .find(|(f, r, _)| *f == from && *r == reason)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(next_state(from, reason), Ok(to)),
                    None => assert_eq!(
                        next_state(from, reason),
                        Err(IllegalMove { from, reason }),
                        "{from} on {reason:?} must be refused"
                    ),
                }
            }
        }
    }

    #[test]
    fn every_state_pair() {
        let legal = [
            (State::Registered, State::PendingAccount),
            (State::Registered, State::Cancelled),
            (State::PendingAccount, State::Completed),
        ];
        for from in State::ALL {
            for to in State::ALL {
                assert_eq!(
                    is_legal(from, to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in State::ALL.into_iter().filter(|s| s.is_final()) {
            for reason in Reason::ALL {
                assert!(next_state(from, reason).is_err());
            }
        }
        assert!(!State::Registered.is_final());
        assert!(!State::PendingAccount.is_final());
    }

    #[test]
    fn reasons_keep_their_wire_names() {
        let names: Vec<String> = Reason::ALL
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "\"succeeded\"",
                "\"failed\"",
                "\"expired\"",
                "\"receipt\"",
                "\"notCommitted\""
            ]
        );
    }
}
