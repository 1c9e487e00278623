//! The event lifecycle as a pure state machine: no I/O, no clock.
//!
//! ```text
//! Registered ──(quorum: succeeded)──▶ PendingAccount ──(receipt)──▶ Completed
//!      │
//!      └──(quorum: failed, or expired unincluded)──▶ Cancelled
//! ```
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
    /// The transfer failed on chain, or can never be included. Final.
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
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 4] = [
        Reason::Succeeded,
        Reason::Failed,
        Reason::Expired,
        Reason::Receipt,
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
        (State::Registered, Reason::Failed | Reason::Expired) => Ok(State::Cancelled),
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
}
