//! The one way every list endpoint pages.
//!
//! A list is newest first. `limit` (1 to 100, default 50; anything else is 400
//! `invalid_limit`) sets the page's size; `cursor`, the previous page's `next_cursor`, asks for
//! the page after it. Every list answers [`Paginated`]:
//! `{"data": [...], "has_more": bool, "next_cursor": string|null}`.
//!
//! A cursor is opaque: the position of the last row of a page — `(created_at, id)`, or the
//! attempt id for the attempt log — and the list it belongs to (which kind, and whose: the
//! organization, project, survey or subscription that owns it), sealed under the deployment's
//! key. So a cursor cannot be forged or edited, nor passed to another list — another
//! subscription's deliveries, another organization's projects: any such cursor is
//! 400 `invalid_cursor`, as is one sealed under a key since dropped (start again from the first
//! page). Paging by a unique key means rows that share a timestamp (a batch's deliveries all
//! do) are each listed exactly once.

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use beckon_domain::timestamp;
use beckon_store::paging::{Keyed, Keyset, Page, PageRequest};
use beckon_webhooks::sealed::SealingKeys;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most items a page holds.
pub const MAX_LIMIT: i64 = 100;

/// The paging parameters of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`, for the page after it; absent for the first page.
    pub cursor: Option<String>,
}

/// The lists a cursor may belong to. A cursor names its list, so one taken from another list
/// is refused rather than read as a position in this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Projects,
    Surveys,
    WebhookSubscriptions,
    Deliveries,
    Attempts,
    MessageAttempts,
    Responses,
    Triggers,
    Tokens,
    Segments,
}

impl List {
    const ALL: [Self; 10] = [
        Self::Projects,
        Self::Surveys,
        Self::WebhookSubscriptions,
        Self::Deliveries,
        Self::Attempts,
        Self::MessageAttempts,
        Self::Responses,
        Self::Triggers,
        Self::Tokens,
        Self::Segments,
    ];

    /// Its tag inside a cursor; never reused for another list.
    fn tag(self) -> u8 {
        match self {
            Self::Projects => 1,
            Self::Surveys => 2,
            Self::WebhookSubscriptions => 3,
            Self::Deliveries => 4,
            Self::Attempts => 5,
            Self::MessageAttempts => 6,
            Self::Responses => 7,
            Self::Triggers => 8,
            Self::Tokens => 9,
            Self::Segments => 10,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.tag() == tag)
    }
}

/// Where a page ends: the key of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Keyset(Keyset),
    Serial(i64),
}

/// The layout of a cursor's plaintext, so one made by an older gateway is refused rather
/// than misread.
const VERSION: u8 = 2;
const KEYSET: u8 = 1;
const SERIAL: u8 = 2;

/// A position in a list, as handed to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    list: List,
    /// Whose list: the id of the organization, project, survey or subscription it lists.
    owner: Uuid,
    position: Position,
}

impl Cursor {
    fn encode(self, keys: &SealingKeys) -> String {
        let mut plain = vec![VERSION, self.list.tag()];
        plain.extend_from_slice(self.owner.as_bytes());
        match self.position {
            Position::Keyset(k) => {
                plain.push(KEYSET);
                let micros = (k.created_at.unix_timestamp_nanos() / 1000) as i64;
                plain.extend_from_slice(&micros.to_be_bytes());
                plain.extend_from_slice(k.id.as_bytes());
            }
            Position::Serial(id) => {
                plain.push(SERIAL);
                plain.extend_from_slice(&id.to_be_bytes());
            }
        }
        URL_SAFE_NO_PAD.encode(keys.seal(&plain))
    }

    /// The cursor `raw`, or `None` for anything the gateway did not make: not base64, not
    /// sealed under a configured key, or not a position it would write.
    fn decode(raw: &str, keys: &SealingKeys) -> Option<Self> {
        let sealed = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let plain = keys.open(&sealed).ok()?;
        let (&[version, tag], rest) = plain.split_first_chunk::<2>()?;
        if version != VERSION {
            return None;
        }
        let list = List::from_tag(tag)?;
        let (owner, rest) = rest.split_first_chunk::<16>()?;
        let owner = Uuid::from_bytes(*owner);
        let (&[kind], rest) = rest.split_first_chunk::<1>()?;
        let position = match (kind, rest.len()) {
            (KEYSET, 24) => {
                let (micros, id) = rest.split_first_chunk::<8>()?;
                let created_at = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(i64::from_be_bytes(*micros)) * 1000,
                )
                .ok()
                .filter(|t| (timestamp::EARLIEST..=timestamp::LATEST).contains(t))?;
                Position::Keyset(Keyset {
                    created_at,
                    id: Uuid::from_slice(id).ok()?,
                })
            }
            (SERIAL, 8) => Position::Serial(i64::from_be_bytes(rest.try_into().ok()?)),
            _ => return None,
        };
        Some(Self {
            list,
            owner,
            position,
        })
    }
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "cursor is not a next_cursor this list gave out (or the key it was sealed under is gone); start again without it",
    )
}

impl PageQuery {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            )),
        }
    }

    fn position(
        &self,
        keys: &SealingKeys,
        list: List,
        owner: Uuid,
    ) -> Result<Option<Position>, ApiError> {
        self.cursor
            .as_deref()
            .map(|raw| {
                Cursor::decode(raw, keys)
                    .filter(|c| c.list == list && c.owner == owner)
                    .map(|c| c.position)
                    .ok_or_else(invalid_cursor)
            })
            .transpose()
    }

    /// The page asked for of `owner`'s `list`, which is ordered by `(created_at, id)`.
    pub fn keyset(
        &self,
        keys: &SealingKeys,
        list: List,
        owner: Uuid,
    ) -> Result<PageRequest<Keyset>, ApiError> {
        let limit = self.limit()?;
        let after = match self.position(keys, list, owner)? {
            None => None,
            Some(Position::Keyset(k)) => Some(k),
            Some(Position::Serial(_)) => return Err(invalid_cursor()),
        };
        Ok(PageRequest { after, limit })
    }

    /// The page asked for of `owner`'s `list`, which is ordered by a serial id.
    pub fn serial(
        &self,
        keys: &SealingKeys,
        list: List,
        owner: Uuid,
    ) -> Result<PageRequest<i64>, ApiError> {
        let limit = self.limit()?;
        let after = match self.position(keys, list, owner)? {
            None => None,
            Some(Position::Serial(id)) => Some(id),
            Some(Position::Keyset(_)) => return Err(invalid_cursor()),
        };
        Ok(PageRequest { after, limit })
    }
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paginated<T> {
    /// Newest first.
    pub data: Vec<T>,
    /// Whether more items follow this page.
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl<T> Paginated<T> {
    /// The answer for `page` of `owner`'s `list`, ordered by `(created_at, id)`: `view` gives
    /// what is shown of a row.
    pub fn keyset<R: Keyed>(
        page: Page<R>,
        keys: &SealingKeys,
        (list, owner): (List, Uuid),
        view: impl FnMut(R) -> T,
    ) -> Self {
        let next = page.next_keyset().map(Position::Keyset);
        Self::new(page, keys, (list, owner), next, view)
    }

    /// The answer for `page` of `owner`'s `list`, ordered by a serial id: `key` gives a row's.
    pub fn serial<R>(
        page: Page<R>,
        keys: &SealingKeys,
        (list, owner): (List, Uuid),
        key: impl Fn(&R) -> i64,
        view: impl FnMut(R) -> T,
    ) -> Self {
        let next = page.next_after(key).map(Position::Serial);
        Self::new(page, keys, (list, owner), next, view)
    }

    fn new<R>(
        page: Page<R>,
        keys: &SealingKeys,
        (list, owner): (List, Uuid),
        next: Option<Position>,
        view: impl FnMut(R) -> T,
    ) -> Self {
        Self {
            has_more: page.has_more,
            next_cursor: next.map(|position| {
                Cursor {
                    list,
                    owner,
                    position,
                }
                .encode(keys)
            }),
            data: page.items.into_iter().map(view).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The organization, project or subscription whose list the tests page.
    const OWNER: Uuid = Uuid::from_u128(7);

    fn keys() -> SealingKeys {
        SealingKeys::from_base64_list("dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMzJieXQ=")
            .expect("a valid key")
    }

    fn query(limit: Option<i64>, cursor: Option<String>) -> PageQuery {
        PageQuery { limit, cursor }
    }

    fn keyset() -> Keyset {
        Keyset {
            created_at: timestamp::parse_utc("2026-12-01T09:30:00.123456Z").expect("valid"),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_cursor_comes_back_as_the_position_it_was_made_from() {
        let keys = keys();
        let k = keyset();
        let raw = Cursor {
            list: List::Deliveries,
            owner: OWNER,
            position: Position::Keyset(k),
        }
        .encode(&keys);
        let page = query(Some(2), Some(raw))
            .keyset(&keys, List::Deliveries, OWNER)
            .expect("valid");
        assert_eq!(page.after, Some(k));
        assert_eq!(page.limit, 2);
        let raw = Cursor {
            list: List::Attempts,
            owner: OWNER,
            position: Position::Serial(41),
        }
        .encode(&keys);
        let page = query(None, Some(raw))
            .serial(&keys, List::Attempts, OWNER)
            .expect("valid");
        assert_eq!((page.after, page.limit), (Some(41), DEFAULT_LIMIT));
    }

    #[test]
    fn garbage_edited_foreign_and_misplaced_cursors_are_invalid() {
        let keys = keys();
        let good = Cursor {
            list: List::Projects,
            owner: OWNER,
            position: Position::Keyset(keyset()),
        }
        .encode(&keys);
        let mut edited = good.clone().into_bytes();
        let middle = edited.len() / 2;
        edited[middle] = if edited[middle] == b'A' { b'B' } else { b'A' };
        let other_keys =
            SealingKeys::from_base64_list("b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI=")
                .expect("a valid key");
        let foreign = Cursor {
            list: List::Projects,
            owner: OWNER,
            position: Position::Keyset(keyset()),
        }
        .encode(&other_keys);
        for raw in [
            "garbage".to_owned(),
            String::new(),
            "%%%".to_owned(),
            String::from_utf8(edited).expect("ascii"),
            foreign,
            URL_SAFE_NO_PAD.encode(keys.seal(b"\x01\x01\x01short")),
        ] {
            let err = query(None, Some(raw.clone()))
                .keyset(&keys, List::Projects, OWNER)
                .expect_err(&raw);
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_cursor"));
        }
        // Another kind of list's cursor, the same kind's of another owner (another
        // organization's projects), and a serial cursor where a keyset one belongs.
        let err = query(None, Some(good.clone()))
            .keyset(&keys, List::Surveys, OWNER)
            .expect_err("another list");
        assert_eq!(err.code, "invalid_cursor");
        let err = query(None, Some(good))
            .keyset(&keys, List::Projects, Uuid::from_u128(8))
            .expect_err("another owner's list");
        assert_eq!(err.code, "invalid_cursor");
        let serial = Cursor {
            list: List::Projects,
            owner: OWNER,
            position: Position::Serial(1),
        }
        .encode(&keys);
        let err = query(None, Some(serial))
            .keyset(&keys, List::Projects, OWNER)
            .expect_err("a serial cursor");
        assert_eq!(err.code, "invalid_cursor");
    }

    #[test]
    fn a_sealed_position_outside_the_accepted_years_is_invalid_not_a_panic() {
        let keys = keys();
        for micros in [i64::MAX, i64::MIN, -1] {
            let mut plain = vec![VERSION, List::Projects.tag()];
            plain.extend_from_slice(OWNER.as_bytes());
            plain.push(KEYSET);
            plain.extend_from_slice(&micros.to_be_bytes());
            plain.extend_from_slice(Uuid::nil().as_bytes());
            let raw = URL_SAFE_NO_PAD.encode(keys.seal(&plain));
            let err = query(None, Some(raw))
                .keyset(&keys, List::Projects, OWNER)
                .expect_err("out of range");
            assert_eq!(err.code, "invalid_cursor");
        }
    }

    #[test]
    fn limit_is_1_to_100_and_50_by_default() {
        let keys = keys();
        let limit = |l| {
            query(l, None)
                .keyset(&keys, List::Projects, OWNER)
                .map(|p| p.limit)
        };
        assert_eq!(limit(None).ok(), Some(50));
        assert_eq!(limit(Some(1)).ok(), Some(1));
        assert_eq!(limit(Some(100)).ok(), Some(100));
        for bad in [0, -1, 101, i64::MAX] {
            assert_eq!(
                limit(Some(bad)).map_err(|e| e.code).err(),
                Some("invalid_limit")
            );
        }
    }

    #[test]
    fn a_next_cursor_is_given_only_when_more_follow() {
        let keys = keys();
        let rows = vec![keyset(), keyset()];
        let last = rows[1];
        let more = Paginated::keyset(
            Page {
                items: rows.clone(),
                has_more: true,
            },
            &keys,
            (List::Triggers, OWNER),
            |k| k.id,
        );
        assert!(more.has_more);
        let next = query(None, more.next_cursor)
            .keyset(&keys, List::Triggers, OWNER)
            .expect("valid");
        assert_eq!(next.after, Some(last));
        let done = Paginated::keyset(
            Page {
                items: rows,
                has_more: false,
            },
            &keys,
            (List::Triggers, OWNER),
            |k| k.id,
        );
        assert_eq!((done.has_more, done.next_cursor), (false, None));
    }
}
