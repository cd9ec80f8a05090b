//! Roles and what each may do. Checked in the services, not only in the web layer.

use std::fmt;
use std::str::FromStr;

/// A role held by a user or an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including users and tokens.
    Admin,
    /// Reads everything and changes policies.
    Editor,
    /// Reads events and alerts and works on alerts.
    Analyst,
    /// Reads.
    Viewer,
    /// Reads, including the audit log and the stored settings.
    Auditor,
    /// Only asks for decisions (the decision API).
    Decision,
}

/// Something a role may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// List policies and their versions.
    ReadPolicies,
    /// Create policies and new policy versions.
    WritePolicies,
    /// Read the audit log.
    ReadAudit,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Read the settings stored in the database (`GET /api/v1/settings`).
    ReadSettings,
    /// Change the settings stored in the database.
    ManageSettings,
    /// List agents, groups and enrollment tokens.
    ReadAgents,
    /// Create enrollment tokens and groups, assign policies to groups, revoke and move agents.
    ManageAgents,
    /// Read connection events (lists, exports, and replaying them in a simulation).
    ReadEvents,
    /// List and read alerts.
    ReadAlerts,
    /// Acknowledge, resolve and assign alerts.
    WorkAlerts,
    /// List users and their roles.
    ReadUsers,
    /// Create users.
    ManageUsers,
}

/// Who is acting, and with which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// As recorded in the audit log: `user:NAME`, `token:NAME` or `system`.
    pub actor: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// `Ok` when this principal's role may do `permission`, else the refusal to return.
    pub fn require(&self, permission: Permission) -> Result<(), crate::Error> {
        if self.role.may(permission) {
            Ok(())
        } else {
            Err(crate::Error::Forbidden(permission))
        }
    }
}

impl Role {
    /// The name used in storage and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Decision => "decision",
        }
    }

    /// Whether this role may do `permission`.
    pub fn may(self, permission: Permission) -> bool {
        match permission {
            Permission::ReadPolicies => !matches!(self, Role::Decision),
            Permission::WritePolicies => matches!(self, Role::Admin | Role::Editor),
            Permission::ReadAudit => matches!(self, Role::Admin | Role::Auditor),
            Permission::ManageTokens => matches!(self, Role::Admin),
            // Like the audit log: what the server is set to do is for those who run it and
            // those who check it.
            Permission::ReadSettings => matches!(self, Role::Admin | Role::Auditor),
            Permission::ManageSettings => matches!(self, Role::Admin),
            Permission::ReadAgents => !matches!(self, Role::Decision),
            Permission::ManageAgents => matches!(self, Role::Admin | Role::Editor),
            // Every reading role; the auditor reads everything, events included.
            Permission::ReadEvents => !matches!(self, Role::Decision),
            Permission::ReadAlerts => !matches!(self, Role::Decision),
            Permission::WorkAlerts => matches!(self, Role::Admin | Role::Analyst),
            // Who holds which role is for those who run the server and those who check it.
            Permission::ReadUsers => matches!(self, Role::Admin | Role::Auditor),
            Permission::ManageUsers => matches!(self, Role::Admin),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::ReadPolicies => "read policies",
            Permission::WritePolicies => "create policy versions",
            Permission::ReadAudit => "read the audit log",
            Permission::ManageTokens => "manage API tokens",
            Permission::ReadSettings => "read the server's settings",
            Permission::ManageSettings => "change the server's settings",
            Permission::ReadAgents => "read agents, groups and enrollment tokens",
            Permission::ManageAgents => "manage agents, groups and enrollment tokens",
            Permission::ReadEvents => "read connection events",
            Permission::ReadAlerts => "read alerts",
            Permission::WorkAlerts => "acknowledge, resolve or assign alerts",
            Permission::ReadUsers => "list users",
            Permission::ManageUsers => "create users",
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the known roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, editor, analyst, viewer, auditor or decision)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Ok(match s {
            "admin" => Role::Admin,
            "editor" => Role::Editor,
            "analyst" => Role::Analyst,
            "viewer" => Role::Viewer,
            "auditor" => Role::Auditor,
            "decision" => Role::Decision,
            other => return Err(UnknownRole(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_and_editor_write_policies() {
        let writers: Vec<Role> = [
            Role::Admin,
            Role::Editor,
            Role::Analyst,
            Role::Viewer,
            Role::Auditor,
            Role::Decision,
        ]
        .into_iter()
        .filter(|r| r.may(Permission::WritePolicies))
        .collect();
        assert_eq!(writers, [Role::Admin, Role::Editor]);
        assert!(Role::Viewer.may(Permission::ReadPolicies));
        assert!(!Role::Decision.may(Permission::ReadPolicies));
    }

    #[test]
    fn every_reading_role_reads_events() {
        for role in [
            Role::Admin,
            Role::Editor,
            Role::Analyst,
            Role::Viewer,
            Role::Auditor,
        ] {
            assert!(role.may(Permission::ReadEvents), "{role}");
        }
        assert!(!Role::Decision.may(Permission::ReadEvents));
    }

    #[test]
    fn names_round_trip() {
        for role in [Role::Admin, Role::Viewer, Role::Decision] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
