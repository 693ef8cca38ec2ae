//! `beckon org create | list`.

use crate::commands::token::Secret;
use crate::output::{Report, cell};
use anyhow::Context as _;
use beckon_domain::scope::Scope;
use beckon_store::paging::PageRequest;
use beckon_store::tenancy;
use serde::Serialize;
use std::io::{self, Write};
use time::OffsetDateTime;
use uuid::Uuid;

/// Organizations read per query while listing.
pub const PAGE_SIZE: i64 = 100;

/// A new organization and its first token.
#[derive(Debug, Serialize)]
pub struct CreatedOrg {
    pub org_id: Uuid,
    pub name: String,
    pub token_id: Uuid,
    /// The token's secret, shown this once.
    pub token: Secret,
}

impl Report for CreatedOrg {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "org_id    {}", self.org_id)?;
        writeln!(out, "name      {}", self.name)?;
        writeln!(out, "token_id  {}", self.token_id)?;
        writeln!(out, "token     {}", self.token.0)
    }
}

/// Creates an organization and its first, admin token.
pub async fn create(conn: &mut beckon_store::Conn, name: &str) -> anyhow::Result<CreatedOrg> {
    let org = tenancy::create_organization(conn, name)
        .await
        .context("Failed to create the organization")?;
    let (token, plaintext) =
        tenancy::create_token(conn, org.id, "initial", &[Scope::Admin], None, None)
            .await
            .context("Failed to create the token")?;
    Ok(CreatedOrg {
        org_id: org.id,
        name: org.name,
        token_id: token.id,
        token: Secret(plaintext.expose().to_owned()),
    })
}

/// An organization, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct OrgRow {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Every organization, newest first.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct OrgList(pub Vec<OrgRow>);

impl Report for OrgList {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{:<36}  {:<28}  name", "id", "created_at")?;
        for o in &self.0 {
            writeln!(
                out,
                "{:<36}  {:<28}  {}",
                o.id.to_string(),
                cell(Some(o.created_at)),
                o.name
            )?;
        }
        Ok(())
    }
}

/// Every organization, newest first, read `page_size` at a time until none is left.
pub async fn list(conn: &mut beckon_store::Conn, page_size: i64) -> anyhow::Result<OrgList> {
    let mut orgs = Vec::new();
    let mut page = PageRequest::first(page_size);
    loop {
        let listed = tenancy::list_organizations(conn, &page)
            .await
            .context("Failed to list the organizations")?;
        page.after = listed.next_keyset();
        orgs.extend(listed.items.into_iter().map(|o| OrgRow {
            id: o.id,
            name: o.name,
            created_at: o.created_at,
        }));
        if page.after.is_none() {
            return Ok(OrgList(orgs));
        }
    }
}
