//! `beckon token create | list | revoke`.

use crate::output::{Failure, Report, cell};
use anyhow::Context as _;
use beckon_domain::scope::Scope;
use beckon_store::paging::PageRequest;
use beckon_store::tenancy;
use serde::Serialize;
use std::io::{self, Write};
use time::OffsetDateTime;
use uuid::Uuid;

/// A bearer secret printed the one time it exists in plaintext.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A new token and its secret.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    pub token_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// The token's secret, shown this once.
    pub token: Secret,
    pub scopes: Vec<Scope>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl Report for CreatedToken {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "token_id    {}", self.token_id)?;
        writeln!(out, "org_id      {}", self.org_id)?;
        writeln!(out, "name        {}", self.name)?;
        writeln!(out, "scopes      {}", scopes(&self.scopes))?;
        writeln!(out, "expires_at  {}", cell(self.expires_at))?;
        writeln!(out, "token       {}", self.token.0)
    }
}

fn scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates a token for `org`, which must exist.
pub async fn create(
    conn: &mut beckon_store::Conn,
    org: Uuid,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<OffsetDateTime>,
) -> anyhow::Result<CreatedToken> {
    tenancy::get_organization(conn, org)
        .await
        .context("Failed to look the organization up")?
        .ok_or_else(|| Failure::not_found(format!("No organization {org}")))?;
    let (token, plaintext) = tenancy::create_token(conn, org, name, scopes, expires_at, None)
        .await
        .context("Failed to create the token")?;
    Ok(CreatedToken {
        token_id: token.id,
        org_id: org,
        name: token.name,
        token: Secret(plaintext.expose().to_owned()),
        scopes: token.scopes,
        expires_at: token.expires_at,
    })
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// An organization's tokens, newest first.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct TokenList(pub Vec<TokenRow>);

impl Report for TokenList {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<36}  {:<16}  {:<16}  {:<28}  {:<28}  revoked_at",
            "id", "name", "scopes", "created_at", "expires_at"
        )?;
        for t in &self.0 {
            writeln!(
                out,
                "{:<36}  {:<16}  {:<16}  {:<28}  {:<28}  {}",
                t.id.to_string(),
                t.name,
                scopes(&t.scopes),
                cell(Some(t.created_at)),
                cell(t.expires_at),
                cell(t.revoked_at)
            )?;
        }
        Ok(())
    }
}

/// Every token of `org`, newest first, revoked and expired ones too.
pub async fn list(conn: &mut beckon_store::Conn, org: Uuid) -> anyhow::Result<TokenList> {
    let mut tokens = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let listed = tenancy::list_tokens(conn, org, &page)
            .await
            .context("Failed to list the tokens")?;
        page.after = listed.next_keyset();
        tokens.extend(listed.items.into_iter().map(|t| TokenRow {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }));
        if page.after.is_none() {
            return Ok(TokenList(tokens));
        }
    }
}

/// A revoked token.
#[derive(Debug, Serialize)]
pub struct RevokedToken {
    pub token_id: Uuid,
    pub org_id: Uuid,
}

impl Report for RevokedToken {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "token {} revoked", self.token_id)
    }
}

/// Revokes a live token of `org`, and every token made with it.
pub async fn revoke(
    conn: &mut beckon_store::Conn,
    org: Uuid,
    id: Uuid,
) -> anyhow::Result<RevokedToken> {
    let revoked = tenancy::revoke_token(conn, org, id)
        .await
        .context("Failed to revoke the token")?;
    if !revoked {
        return Err(Failure::not_found(format!(
            "No live token {id} in organization {org}"
        )));
    }
    Ok(RevokedToken {
        token_id: id,
        org_id: org,
    })
}
