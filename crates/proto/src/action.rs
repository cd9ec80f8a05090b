//! What a policy decides for a connection, and what the endpoint then does.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The action a policy rule (or the policy's default) decides for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the connection through.
    Allow,
    /// Stop the connection (drop or reject, as the endpoint is configured).
    Block,
    /// Let the connection through and raise an alert.
    Alert,
    /// Let the connection through and mark its event as logged by a rule.
    Log,
}

impl Action {
    /// Every action, in the order the policy language documents them.
    pub const ALL: [Action; 4] = [Action::Allow, Action::Block, Action::Alert, Action::Log];

    /// The keyword used for this action in policy documents and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Alert => "alert",
            Action::Log => "log",
        }
    }

    /// Parses a policy keyword (`allow`, `block`, `alert`, `log`).
    pub fn from_keyword(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a policy's blocks are enforced or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Blocks stop the connection.
    #[default]
    Enforce,
    /// Blocks are recorded as "would block" and the connection is allowed.
    Monitor,
}

impl Mode {
    /// The keyword used for this mode in policy documents and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }

    /// What the endpoint does with a connection for which `action` was decided.
    pub fn verdict(self, action: Action) -> Verdict {
        match (self, action) {
            (Mode::Enforce, Action::Block) => Verdict::Block,
            _ => Verdict::Allow,
        }
    }
}

/// What the endpoint does with the connection's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Packets pass.
    Allow,
    /// Packets are dropped or rejected.
    Block,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_mode_never_blocks() {
        for action in Action::ALL {
            assert_eq!(Mode::Monitor.verdict(action), Verdict::Allow);
        }
        assert_eq!(Mode::Enforce.verdict(Action::Block), Verdict::Block);
        assert_eq!(Mode::Enforce.verdict(Action::Alert), Verdict::Allow);
    }

    #[test]
    fn keywords_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::from_keyword(action.as_str()), Some(action));
        }
        assert_eq!(Action::from_keyword("deny"), None);
    }
}
