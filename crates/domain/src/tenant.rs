//! Whose an event is: the organization and the project, by id and name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An organization or a project, by id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

/// The organization and the project an event belongs to, named as they were when it
/// occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tenant {
    pub organization: Named,
    pub project: Named,
}
